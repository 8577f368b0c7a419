"""The reproduction scenarios again, with the fix installed: slon starts, and safety holds."""

from __future__ import annotations

import time

import pytest

from conftest import requires_pid_control
from slonybed.slony import DUPLICATE_LOCK
from notices import PATCHED_BED, removal


def _slon_recovers(bed, stale: int) -> None:
    slon = bed.start_slon(1)
    holder = bed.cluster.wait_slon_holds_lock(slon)
    assert holder != stale
    bed.cluster.assert_replicates(1, 2)
    assert slon.alive()
    slon.wait_log(removal("_bed", 1, 0, stale))


@requires_pid_control
def test_fix_lets_slon_start_when_a_non_postgres_process_reuses_the_stale_pid(fixed_bed):
    stale = fixed_bed.reboot_host_of(1, reuse_pid=fixed_bed.put_sleep_on)
    _slon_recovers(fixed_bed, stale)
    fixed_bed.slons[1].wait_log(f'pid {stale} is now "sleep" (user postgres, started ')


@requires_pid_control
def test_fix_lets_slon_start_when_an_impostor_named_slon_local_listen_reuses_the_stale_pid(fixed_bed):
    # Same PID, a client backend of this database, the very name slon uses: only the recorded
    # backend start time tells the impostor from the lock's holder.
    stale = fixed_bed.reboot_host_of(
        1, reuse_pid=lambda pid: fixed_bed.put_backend_on(1, pid, application_name="slon.local_listen")
    )
    assert fixed_bed.node(1).query(
        "select backend_type, application_name from pg_catalog.pg_stat_activity where pid = %s", (stale,)
    ) == [("client backend", "slon.local_listen")]
    _slon_recovers(fixed_bed, stale)
    fixed_bed.slons[1].wait_log("after the lock was taken by one started")


def test_fix_still_refuses_a_second_slon_and_the_first_keeps_replicating(fixed_bed):
    holder = fixed_bed.cluster.wait_slon_holds_lock(fixed_bed.slons[1])

    second = fixed_bed.cluster.start_slon(1)

    assert second.wait_exit(timeout=30) is not None, "a second slon for node 1 kept running"
    assert DUPLICATE_LOCK in second.log
    assert 'removed the stale lock row (node 1, conncnt 0,' not in second.log
    assert fixed_bed.slons[1].alive()
    assert fixed_bed.cluster.own_lock_pid(1) == holder
    fixed_bed.cluster.assert_replicates(1, 2)


def test_exactly_one_of_two_slons_started_together_runs_in_20_trials(bed):
    bed.cluster.build()
    assert PATCHED_BED in bed.install_fix(1)
    assert bed.node(1).query("select patched, problems from slony_nodelock.verify()") == [(True, None)]
    for trial in range(20):
        pair = [bed.cluster.start_slon(1), bed.cluster.start_slon(1)]
        deadline = time.monotonic() + 20
        while all(slon.process.popen.poll() is None for slon in pair) and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = [slon for slon in pair if slon.process.popen.poll() is not None]
        assert len(refused) == 1, f"trial {trial}: {len(refused)} of 2 slons exited"
        winner = next(slon for slon in pair if slon not in refused)
        assert DUPLICATE_LOCK in refused[0].log, refused[0].log
        # The other one runs: it holds the lock with its own backend and is still alive. The
        # refused one's leader has exited; its worker gets the same grace as any slon's.
        bed.cluster.wait_slon_holds_lock(winner)
        assert refused[0].wait_exit(timeout=5) is not None
        assert winner.alive() and not refused[0].alive()
        winner.stop()
        # The next trial must find the old lock stale, not still live on an exiting backend.
        bed.cluster.wait_lock_holder_gone(1)
