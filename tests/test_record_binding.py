"""An identity record describes one row version: a record that outlived its row (the identity
triggers were off while slon restarted onto the same PID) must never make the live slon's lock
look stale."""

from __future__ import annotations

from psycopg import sql

from conftest import requires_pid_control
from slonybed.slony import DUPLICATE_LOCK

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
    assert any(f"kept lock of cluster \"_bed\" node 1 conncnt 0 pid {pid}" in n for n in notices), notices
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
