"""PID reuse on the real bed without ns_last_pid: after a power cut, the old slon backend's PID in
node 1's lock row belongs to some other live process. Forcing a chosen process onto that PID
needs root and CAP_SYS_ADMIN (see test_fix_scenarios.py); here the row is pointed at a process
that is alive anyway, which is what cleanupNodelock() sees either way. Stock Slony keeps each of
these rows, since kill(pid, 0) succeeds, and slon then refuses to start; so every test here fails
with the fix removed, and runs wherever the bed does."""

from __future__ import annotations

from psycopg import sql

from slonybed.slony import DUPLICATE_LOCK
from notices import removal

CLEANUP = sql.SQL("select {}.cleanupnodelock()").format(sql.Identifier("_bed"))
CLEANUP_EVENT = sql.SQL("select {}.cleanupEvent(%s::interval)").format(sql.Identifier("_bed"))


def notices_of(server, statement, params: tuple = ()) -> list[str]:
    seen: list[str] = []
    with server.connect() as caller:
        caller.add_notice_handler(lambda d: seen.append(d.message_primary))
        caller.execute(statement, params)
    return seen


def removal_of(notices: list[str], pid: int, node: int = 1, conncnt: int = 0) -> str:
    prefix = removal("_bed", node, conncnt, pid)
    suffix = "; it no longer stands in slon's way, nothing to do"
    [reason] = [n[len(prefix):].removesuffix(suffix) for n in notices if n.startswith(prefix)] or [None]
    assert reason is not None, notices
    return reason


def after_power_cut(bed) -> int:
    """Node 1's host loses power; node 2's slon comes back, node 1's is left for the test."""
    return bed.reboot_host_of(1)


def slon_1_starts(bed, stale: int) -> None:
    slon = bed.start_slon(1)
    assert bed.cluster.wait_slon_holds_lock(slon) != stale
    assert DUPLICATE_LOCK not in slon.log
    bed.cluster.assert_replicates(1, 2)


def test_a_lock_whose_pid_is_now_the_checkpointer_is_removed_and_slon_starts(fixed_bed):
    after_power_cut(fixed_bed)
    checkpointer = fixed_bed.node(1).pid_of("checkpointer")
    fixed_bed.cluster.point_lock_at(1, checkpointer)

    notices = notices_of(fixed_bed.node(1), CLEANUP)

    assert removal_of(notices, checkpointer) == f"pid {checkpointer} is this server's checkpointer, not a client backend"
    assert fixed_bed.cluster.own_lock_pid(1) is None
    slon_1_starts(fixed_bed, checkpointer)


def test_a_lock_whose_pid_is_now_a_client_backend_of_another_database_is_removed(fixed_bed):
    after_power_cut(fixed_bed)
    # Even slon's own name does not make a backend of another database the holder.
    with fixed_bed.node(1).connect(dbname="postgres", application_name="slon.local_listen") as elsewhere:
        pid = elsewhere.info.backend_pid
        fixed_bed.cluster.point_lock_at(1, pid)

        notices = notices_of(fixed_bed.node(1), CLEANUP)

        assert removal_of(notices, pid) == f'pid {pid} is a client backend of database "postgres", not of this one'
        assert fixed_bed.cluster.own_lock_pid(1) is None
        slon_1_starts(fixed_bed, pid)


def test_a_recorded_lock_whose_holder_started_at_another_time_is_removed(fixed_bed):
    after_power_cut(fixed_bed)
    node = fixed_bed.node(1)
    node.query(sql.SQL("delete from {}.sl_nodelock where nl_nodeid = 1 and nl_conncnt = 0")
               .format(sql.Identifier("_bed")))
    with node.connect(application_name="slon.local_listen") as holder:
        pid = holder.info.backend_pid
        holder.execute(sql.SQL("insert into {}.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())")
                       .format(sql.Identifier("_bed")))
        # The record is what tells the holder from an impostor: while it matches, the row stays.
        # (The power cut left other nodes' rows, whose removals are said too: none may be this one.)
        assert not [n for n in notices_of(node, CLEANUP) if "(node 1, conncnt 0, " in n]
        assert fixed_bed.cluster.own_lock_pid(1) == pid
        # The lock was taken by an earlier backend on the same PID: what a reboot's reuse leaves,
        # with the PID, the name and the database all the same.
        node.query("update slony_nodelock.lock_identity set backend_start = backend_start - interval '1 minute'"
                   " where cluster_schema = '_bed' and nl_nodeid = 1 and nl_conncnt = 0")

        notices = notices_of(node, CLEANUP)

        assert removal_of(notices, pid).startswith(f"pid {pid} is a client backend started ")
        assert ", after the lock was taken by one started " in removal_of(notices, pid)
        assert fixed_bed.cluster.own_lock_pid(1) is None
        slon_1_starts(fixed_bed, pid)


def live_registrations(bed) -> list[tuple[int, int, int]]:
    """node 2's rows on node 1 held by a live slon connection: registerNodeConnection() takes one
    for each connection node 2's slon keeps to node 1. Rows of connections it has since closed
    stay until a cleanup removes them."""
    node = bed.node(1)
    connected = {pid for (pid,) in node.query("select pid from pg_catalog.pg_stat_activity"
                                              " where application_name like 'slon.%'")}
    return [row for row in bed.cluster.lock_rows(1) if row[0] == 2 and row[2] in connected]


def test_the_other_nodes_registrations_survive_start_up_and_cleanup_event_while_stale_rows_go(fixed_bed):
    bed, node = fixed_bed, fixed_bed.node(1)
    # node 2's slon restarted after the install, so that the trigger saw each registration taken
    # (those older than the install are adopted: test_upgrade_from_release.py keeps those).
    bed.slons[2].stop()
    bed.cluster.wait_lock_holder_gone(2)
    bed.cluster.wait_slon_holds_lock(bed.start_slon(2))
    bed.cluster.assert_replicates(1, 2)
    registrations = live_registrations(bed)
    assert registrations and all(conncnt > 0 for _, conncnt, _ in registrations), bed.cluster.lock_rows(1)
    assert node.query("select count(*) from slony_nodelock.lock_identity where cluster_schema = '_bed'"
                      " and nl_nodeid = 2 and not adopted and pid = any(%s)",
                      ([pid for _, _, pid in registrations],)) == [(len(registrations),)]
    # A stale row beside them, naming a PID a reboot could have handed on: a registration of
    # node 2 (its nl_conncnt from Slony's sequence) whose backend is long gone.
    checkpointer = node.pid_of("checkpointer")
    table = sql.SQL("{}.sl_nodelock").format(sql.Identifier("_bed"))
    [(stale_conncnt,)] = node.query(sql.SQL("insert into {} (nl_nodeid, nl_backendpid) values (2, %s)"
                                            " returning nl_conncnt").format(table), (checkpointer,))

    # slon 1's start-up cleanup, with node 2's slon connected all along.
    bed.slons[1].stop()
    bed.cluster.wait_lock_holder_gone(1)
    slon = bed.start_slon(1)
    own = bed.cluster.wait_slon_holds_lock(slon)
    assert set(registrations) <= set(bed.cluster.lock_rows(1))
    assert (2, stale_conncnt, checkpointer) not in bed.cluster.lock_rows(1)
    slon.wait_log(f"conncnt {stale_conncnt}, pid {checkpointer}) of cluster \"bed\" (schema \"_bed\"): "
                  f"pid {checkpointer} is this server's checkpointer")

    # Slony's own cleanupEvent(), as slon's cleanup thread runs it, with another stale row: one of
    # a node that is gone.
    walwriter = node.pid_of("walwriter")
    node.query(sql.SQL("insert into {} values (9, 0, %s)").format(table), (walwriter,))

    notices = notices_of(node, CLEANUP_EVENT, ("10 minutes",))

    assert removal_of(notices, walwriter, node=9) == f"pid {walwriter} is this server's walwriter, not a client backend"
    rows = bed.cluster.lock_rows(1)
    assert (1, 0, own) in rows and set(registrations) <= set(rows), rows
    assert (9, 0, walwriter) not in rows, rows
    assert bed.slons[1].alive() and bed.slons[2].alive()
    bed.cluster.assert_replicates(1, 2)
