"""An identity record describes one row version: a record that outlived its row (the identity
triggers were off while slon restarted onto the same PID) must never make the live slon's lock
look stale."""

from __future__ import annotations

import time

from psycopg import sql

from conftest import requires_pid_control
from test_install import add_stock_like_cluster
from slonybed.slony import DUPLICATE_LOCK
from notices import kept, removal

RECORD = "select pid, backend_start from slony_nodelock.lock_identity where cluster_schema = '_bed' " \
         "and nl_nodeid = 1 and nl_conncnt = 0"
BACKEND_START = "select backend_start from pg_catalog.pg_stat_activity where pid = %s"


def cleanup_notices(server, times: int) -> list[str]:
    notices: list[str] = []
    with server.connect() as caller:
        caller.add_notice_handler(lambda d: notices.append(d.message_primary))
        for _ in range(times):
            caller.execute(sql.SQL("select {}.cleanupnodelock()").format(sql.Identifier("_bed")))
    return notices


@requires_pid_control
def test_a_record_left_while_triggers_were_off_never_removes_the_live_lock_on_its_pid(fixed_bed):
    bed, node = fixed_bed, fixed_bed.node(1)
    pid = bed.cluster.wait_slon_holds_lock(bed.slons[1])
    [(recorded_pid, first_start)] = node.query(RECORD)
    assert recorded_pid == pid

    # What pg_restore --disable-triggers, or a DBA's maintenance, leaves: the triggers off while
    # slon restarts, and its new local_listen backend on the same PID (as after a reboot).
    node.query('alter table "_bed".sl_nodelock disable trigger all')
    bed.slons[1].stop()
    slon = bed.start_slon_on_pid(1, pid)
    node.query('alter table "_bed".sl_nodelock enable trigger all')
    [(second_start,)] = node.query(BACKEND_START, (pid,))
    assert second_start > first_start
    assert node.query(RECORD) == [(pid, first_start)], "the first slon's record should have outlived its row"

    notices = cleanup_notices(node, times=5)
    node.query('select "_bed".cleanupEvent(%s::interval)', ("10 minutes",))

    assert bed.cluster.own_lock_pid(1) == pid, notices
    assert any(kept("_bed", 1, 0, pid) in n for n in notices), notices
    second = bed.cluster.start_slon(1)
    assert second.wait_exit(timeout=30) is not None, "a second slon for node 1 kept running"
    assert DUPLICATE_LOCK in second.log
    assert slon.alive()
    bed.cluster.assert_replicates(1, 2)

    # Running install.sql again drops the leftover record and records the live holder instead.
    bed.install_fix(1)
    assert node.query(RECORD) == [(pid, second_start)]
    assert cleanup_notices(node, times=1) == []
    assert bed.cluster.own_lock_pid(1) == pid


@requires_pid_control
def test_a_backend_recorded_for_another_clusters_lock_holds_no_unrecorded_one(fixed_bed):
    # Two clusters in one database. _bed's lock row was taken while its triggers were off, so it
    # has no record; after a reboot its PID belongs to cluster _two's local_listen, whose own row
    # is recorded. A backend takes one lock: _bed's row is stale.
    bed, node = fixed_bed, fixed_bed.node(1)
    add_stock_like_cluster(node, "_two")
    bed.install_fix(1)
    node.query('alter table "_bed".sl_nodelock disable trigger all')
    bed.slons[1].stop()
    bed.cluster.wait_lock_holder_gone(1)
    bed.cluster.wait_slon_holds_lock(bed.start_slon(1))
    node.query('alter table "_bed".sl_nodelock enable always trigger slony_nodelock_identity,'
               ' enable always trigger slony_nodelock_truncate')

    def local_listen_of_two(pid: int) -> None:
        holder = bed.put_backend_on(1, pid, application_name="slon.local_listen")
        holder.send('insert into "_two".sl_nodelock values (1, 0, pg_catalog.pg_backend_pid());')

    stale = bed.reboot_host_of(1, reuse_pid=local_listen_of_two)
    deadline = time.monotonic() + 10
    while node.query("select pid from slony_nodelock.lock_identity where cluster_schema = '_two'") != [(stale,)]:
        assert time.monotonic() < deadline, "_two's lock was not recorded"
        time.sleep(0.05)

    slon = bed.start_slon(1)

    assert bed.cluster.wait_slon_holds_lock(slon) != stale
    bed.cluster.assert_replicates(1, 2)
    assert (removal("_bed", 1, 0, stale) + f"pid {stale} is the client backend that took the lock row "
            '(node 1, conncnt 0) of cluster "two" (schema "_two")') in slon.log
    assert node.query('select nl_backendpid from "_two".sl_nodelock') == [(stale,)]
