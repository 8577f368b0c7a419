"""The failure on stock Slony, reproduced with real servers, real slons and real PID reuse.

These stay in the suite for good: they prove the bed reproduces what operators see, and the fix's
tests run the very same scenarios with the fix installed.
"""

from __future__ import annotations

from pathlib import Path

from conftest import requires_pid_control
from slonybed.slony import DUPLICATE_LOCK


def _owner_and_command(pid: int) -> tuple[int, str]:
    proc = Path(f"/proc/{pid}")
    return proc.stat().st_uid, (proc / "comm").read_text().strip()


def test_stock_slon_dies_when_the_stale_pid_is_now_the_checkpointer(bed):
    # Without ns_last_pid: the row is pointed at a process that is alive anyway.
    bed.build_replicating()
    bed.reboot_host_of(1)
    checkpointer = bed.node(1).pid_of("checkpointer")
    bed.cluster.point_lock_at(1, checkpointer)

    slon = bed.start_slon(1)

    assert slon.wait_exit(timeout=30) is not None, "stock slon kept running"
    assert DUPLICATE_LOCK in slon.log
    assert bed.cluster.own_lock_pid(1) == checkpointer


@requires_pid_control
def test_stock_slon_dies_when_a_non_postgres_process_reuses_the_stale_pid(bed):
    bed.build_replicating()
    stale = bed.reboot_host_of(1, reuse_pid=bed.put_sleep_on)
    owner, command = _owner_and_command(stale)
    assert command == "sleep"
    assert owner == bed.node(1).datadir.stat().st_uid, "the holder must be the server's OS user"

    slon = bed.start_slon(1)

    assert slon.wait_exit(timeout=30) is not None, "stock slon kept running"
    assert DUPLICATE_LOCK in slon.log
    assert bed.cluster.own_lock_pid(1) == stale


@requires_pid_control
def test_stock_slon_dies_when_a_client_backend_reuses_the_stale_pid(bed):
    bed.build_replicating()
    stale = bed.reboot_host_of(
        1, reuse_pid=lambda pid: bed.put_backend_on(1, pid, application_name="nightly-report")
    )
    assert bed.node(1).query(
        "select backend_type, application_name from pg_catalog.pg_stat_activity where pid = %s",
        (stale,),
    ) == [("client backend", "nightly-report")]

    slon = bed.start_slon(1)

    assert slon.wait_exit(timeout=30) is not None, "stock slon kept running"
    assert DUPLICATE_LOCK in slon.log
    assert bed.cluster.own_lock_pid(1) == stale


def test_stock_slon_restarts_after_a_crash_when_the_stale_pid_is_free(bed):
    bed.build_replicating()
    stale = bed.reboot_host_of(1)
    assert not Path(f"/proc/{stale}").exists()

    slon = bed.start_slon(1)

    new_pid = bed.cluster.wait_slon_holds_lock(slon)
    assert new_pid != stale
    bed.cluster.assert_replicates(1, 2)
    assert slon.alive()


def test_stock_refuses_a_second_slon_for_a_node_and_the_first_keeps_replicating(bed):
    slons = bed.build_replicating()
    holder_pid = bed.cluster.wait_slon_holds_lock(slons[1])

    second = bed.cluster.start_slon(1)

    assert second.wait_exit(timeout=30) is not None, "a second slon for node 1 kept running"
    assert DUPLICATE_LOCK in second.log
    assert slons[1].alive()
    assert bed.cluster.own_lock_pid(1) == holder_pid
    bed.cluster.assert_replicates(1, 2)
