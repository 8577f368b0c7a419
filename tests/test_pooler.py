"""A slon restarted behind a session-mode pooler (issue 18): the pooler hands the new slon's
local_listen the very server backend its dead predecessor took the lock with.

Node 1's slon reaches its own node through a real pgbouncer in session mode (server_reset_query
DISCARD ALL); the paths in sl_path, which node 2's slon uses, stay direct. slon is killed (-9, its
whole session) between two of its local_listen's transactions, so that pgbouncer pools that
server connection instead of closing it, and then started again through pgbouncer.

Which pooled connection a client gets is pgbouncer's choice (last in, first out among the idle
ones), and the dead slon left one per thread: local_listen's, local_sync's, and so on. To make the
scenario the one the issue describes every time, the tests end the other pooled connections
before the restart (PgBouncer.keep_only), and the pool's size is 1 (see slonybed/pgbouncer.py): slon's
start-up connection gets the predecessor's backend, and its local_listen, which connects as
start-up leaves, waits for that one connection and gets it too. slon runs with -d 1, so its log
names the backend PID of each connection it makes.

A site's pool is bigger, and nothing ends its connections: there the restarted slon's local_listen
gets whichever pooled backend pgbouncer hands it, now and then the predecessor's, mostly another
one, while the predecessor's backend P sits idle in the pool, its name reset by DISCARD ALL, or
serves another of the pool's clients. The third test restarts slon behind such a pool (20
connections, none ended) several times and takes what comes, then once more while another
pooled client holds P.

With the kit, the restarted slon's cleanup runs on the very backend recorded as the row's taker:
the session that took the lock has ended, the row is stale, and slon runs. When the cleanup runs
on another backend, P still has the PID and start time recorded for the row, but no longer the
name it took the lock as (slon.local_listen): the row is stale too. Stock Slony's cleanup sees the
PID alive and keeps the row: slon dies on the duplicate key, at every retry, for as long as the
pooler keeps that server connection.
"""

from __future__ import annotations

import os
import re
import signal
import time
from contextlib import ExitStack

import psycopg
from psycopg import sql

from notices import PATCHED_BED, removal
from slonybed.pgbouncer import PgBouncer, start_pgbouncer
from slonybed.processes import session_states
from slonybed.slony import DUPLICATE_LOCK, Slon

ALREADY_RUNNING = "Do you already have a slon running against this node?"


def build_pooled(bed, with_kit: bool, **pool) -> PgBouncer:
    """The replicating two-node cluster with node 1's slon behind pgbouncer (pool: its settings,
    see PgBouncer.start); with_kit: install.sql run on both nodes before any slon starts, so that
    the trigger records every lock taken."""
    pooler = start_pgbouncer(bed, 1, **pool)
    bed.cluster.build()
    if with_kit:
        for n in (1, 2):
            assert PATCHED_BED in bed.install_fix(n)
    bed.slons[1] = start_pooled_slon(bed, pooler)
    bed.start_slon(2)
    bed.cluster.subscribe()
    bed.cluster.assert_replicates(1, 2)
    return pooler


def start_pooled_slon(bed, pooler: PgBouncer) -> Slon:
    return bed.cluster.start_slon_via(1, pooler.conninfo(), "-d", "1")


def pooled_backends(pooler: PgBouncer, slon: Slon) -> list[tuple[str, int]]:
    """(connection, backend PID) for each connection slon -d 1 logged through the pooler, in
    order; the connection as slon's log names it (local_listen, local_sync, remoteWorkerThread_2)."""
    marker = f' "{pooler.conninfo()}": backend pid = '
    return [(head.rsplit(" ", 1)[-1], int(pid))
            for head, pid in (line.split(marker, 1) for line in slon.log.splitlines() if marker in line)]


def local_listen_backends(pooler: PgBouncer, slon: Slon) -> list[int]:
    """The backend PIDs slon -d 1 logged for its local_listen connections through the pooler."""
    return [pid for name, pid in pooled_backends(pooler, slon) if name == "local_listen"]


def own_lock(bed) -> tuple[int, str] | None:
    """(nl_backendpid, xmin) of node 1's own lock row: xmin names the row version, so it tells a
    lock taken anew by the same backend from the one taken before."""
    rows = bed.node(1).query(
        sql.SQL("select nl_backendpid, xmin::text from {}.sl_nodelock where nl_nodeid = 1 and nl_conncnt = 0")
        .format(sql.Identifier(bed.cluster.schema)))
    return rows[0] if rows else None


def wait_new_lock(bed, slon: Slon, before: tuple[int, str], timeout: float = 30) -> int:
    """Wait until node 1's lock row is a new row version taken while slon runs; its PID. (The bed's
    wait_slon_holds_lock looks for a backend started after slon: a pooled one was not.)"""
    deadline = time.monotonic() + timeout
    while (now := own_lock(bed)) in (None, before):
        assert slon.alive(), f"slon for node 1 exited:\n{slon.log}"
        assert time.monotonic() < deadline, f"slon for node 1 took no new lock in {timeout}s:\n{slon.log}"
        time.sleep(0.1)
    assert slon.alive(), f"slon for node 1 exited:\n{slon.log}"
    return now[0]


def kill_between_transactions(bed, slon: Slon, pid: int, timeout: float = 60) -> None:
    """kill -9 slon's whole session at a moment its local_listen backend (pid) is idle outside a
    transaction, as a crash between two of local_listen's polls leaves it: pgbouncer closes a
    server connection whose client left it inside a transaction rather than pool it. The session
    is stopped first (SIGSTOP) and killed only once the backend stays idle while it is stopped."""
    node, session = bed.node(1), slon.process.pid
    deadline = time.monotonic() + timeout
    while True:
        os.killpg(session, signal.SIGSTOP)
        stopped_by = time.monotonic() + 10
        while set(session_states(session).values()) != {"T"}:
            assert time.monotonic() < stopped_by, f"slon's session {session} did not stop"
            time.sleep(0.02)
        # Twice, apart: a statement already on its way through the pooler would show in between.
        seen = []
        for _ in range(2):
            time.sleep(0.1)
            seen.append(node.query("select state, state_change from pg_catalog.pg_stat_activity where pid = %s",
                                   (pid,)))
        if seen[0] == seen[1] and seen[0] and seen[0][0][0] == "idle":
            break
        assert time.monotonic() < deadline, f"local_listen's backend {pid} never idle while slon was stopped: {seen}"
        os.killpg(session, signal.SIGCONT)
        time.sleep(0.2)
    slon.kill()
    assert not slon.alive()


def restart_on_predecessors_backend(bed, pooler: PgBouncer) -> tuple[int, tuple[int, str]]:
    """Run node 1's slon behind the pooler until it holds its lock, kill it, and leave the pool
    holding only the backend it took the lock with; (that PID, the lock row as it was left)."""
    first = bed.slons[1]
    pid = bed.cluster.wait_slon_holds_lock(first)
    assert local_listen_backends(pooler, first) == [pid], first.log
    kill_between_transactions(bed, first, pid)
    pooled = pooler.wait_pooled()
    assert pid in pooled, f"pgbouncer did not pool local_listen's backend {pid}: {pooled}\n{pooler.log_text()}"
    pooler.keep_only(pid)
    left = own_lock(bed)
    assert left is not None and left[0] == pid
    return pid, left


def test_kit_lets_a_slon_restarted_behind_a_session_pooler_take_its_lock_on_the_same_backend(bed):
    pooler = build_pooled(bed, with_kit=True)
    pid, left = restart_on_predecessors_backend(bed, pooler)

    slon = bed.slons[1] = start_pooled_slon(bed, pooler)

    taken = wait_new_lock(bed, slon, left)
    held = own_lock(bed)
    # The pooled scenario: the new lock's backend is the one the dead slon took its lock with.
    assert taken == pid, f"the new lock is backend {taken}'s, not the predecessor's {pid}:\n{slon.log}"
    assert local_listen_backends(pooler, slon) == [pid], slon.log
    assert bed.node(1).query("select application_name from pg_catalog.pg_stat_activity where pid = %s",
                             (pid,)) == [("slon.local_listen",)]
    slon.wait_log(removal(bed.cluster.schema, 1, 0, pid))
    assert DUPLICATE_LOCK not in slon.log
    bed.cluster.assert_replicates(1, 2)

    # A second slon for the node, behind the same pooler, is still refused: its cleanup runs on
    # another backend, and the row's taker is alive and is the running slon's local_listen.
    second = start_pooled_slon(bed, pooler)
    assert second.wait_exit(timeout=30) is not None, "a second slon for node 1 ran beside the first"
    assert DUPLICATE_LOCK in second.log and ALREADY_RUNNING in second.log, second.log
    assert pid not in local_listen_backends(pooler, second), second.log
    assert slon.alive()
    assert own_lock(bed) == held
    bed.cluster.assert_replicates(1, 2)
    assert slon.alive() and DUPLICATE_LOCK not in slon.log


def test_stock_slon_restarted_behind_a_session_pooler_is_refused_by_its_predecessors_backend(bed):
    pooler = build_pooled(bed, with_kit=False)
    pid, left = restart_on_predecessors_backend(bed, pooler)

    # Every retry gets the same backend back, and dies on the duplicate key.
    for attempt in (1, 2):
        slon = start_pooled_slon(bed, pooler)
        assert slon.wait_exit(timeout=30) is not None, f"stock slon kept running (attempt {attempt})"
        assert DUPLICATE_LOCK in slon.log, slon.log
        assert local_listen_backends(pooler, slon) == [pid], slon.log
        assert own_lock(bed) == left
        assert pooler.wait_pooled() == [pid]


def hold_pooled_backend(pooler: PgBouncer, pid: int, application_name: str, stack: ExitStack,
                        timeout: float = 15) -> psycopg.Connection:
    """A client of the pooler, named application_name, that pgbouncer has handed the pooled
    backend pid; it stays connected until stack closes. pgbouncer hands idle backends out last in,
    first out, so clients are connected, and kept, until one gets pid; the others then leave."""
    deadline = time.monotonic() + timeout
    clients = []
    try:
        while True:
            clients.append(psycopg.connect(pooler.conninfo(application_name=application_name),
                                           autocommit=True, connect_timeout=5))
            if clients[-1].execute("select pg_catalog.pg_backend_pid()").fetchone()[0] == pid:
                return stack.enter_context(clients.pop())
            assert time.monotonic() < deadline, f"pgbouncer handed out no backend {pid} in {timeout}s: {pooler.servers()}"
    finally:
        for client in clients:
            client.close()


def judged_name(reason: str, pid: int) -> str | None:
    """From the reason the kit gave for removing the dead slon's lock row: None when the cleanup
    ran on P (pid) itself, else the name P carried when it was judged."""
    if reason.startswith(f"pid {pid} is the backend running this cleanup; it took the lock in an earlier "):
        return None
    carried = re.match(rf'pid {pid} is the client backend that took the lock, but it now carries the name '
                       rf'"((?:[^"]|"")*)" where it took the lock as "slon.local_listen"', reason)
    assert carried, f"unexpected reason for removing the dead slon's lock row of backend {pid}: {reason}"
    return carried.group(1).replace('""', '"')


def restart_cycle(bed, pooler: PgBouncer, cycle: str, hold_as: str | None = None) -> bool:
    """Kill node 1's running slon (-9, between two of local_listen's transactions) and start it
    again behind the pooler; hold_as: a pooled client of that name holds the dead slon's
    local_listen backend P while the new slon starts. Assert that the new slon takes its lock,
    with the kit's reason for the old row, and replicates; print what happened to P. Whether the
    new local_listen got P."""
    schema, old = bed.cluster.schema, bed.slons[1]
    left = own_lock(bed)
    pid = left[0]
    assert local_listen_backends(pooler, old)[-1:] == [pid], old.log
    kill_between_transactions(bed, old, pid)
    pooled = pooler.wait_pooled()
    assert pid in pooled, f"pgbouncer did not pool local_listen's backend {pid}: {pooled}\n{pooler.log_text()}"
    with ExitStack() as holding:
        if hold_as is not None:
            hold_pooled_backend(pooler, pid, hold_as, holding)
            assert bed.node(1).query("select application_name from pg_catalog.pg_stat_activity where pid = %s",
                                     (pid,)) == [(hold_as,)]
        started = time.monotonic()
        slon = bed.slons[1] = start_pooled_slon(bed, pooler)
        taken = wait_new_lock(bed, slon, left)
        took = time.monotonic() - started
        notice = removal(schema, 1, 0, pid)
        line = next(line for line in slon.wait_log(notice).splitlines() if notice in line)
        name = judged_name(line.split(notice, 1)[1], pid)
        assert local_listen_backends(pooler, slon) == [taken], slon.log
        if name is None:
            assert taken == pid, slon.log
            case = f"local_listen got P {pid} back (the cleanup ran on P)"
        else:
            assert taken != pid, slon.log
            case = f"local_listen got backend {taken}, not P {pid}; P was judged carrying the name \"{name}\""
            case += " (idle in the pool, reset by DISCARD ALL)" if name == "" else " (another client's)"
            assert name == (hold_as or ""), slon.log
        assert bed.node(1).query("select application_name from pg_catalog.pg_stat_activity where pid = %s",
                                 (taken,)) == [("slon.local_listen",)]
        assert DUPLICATE_LOCK not in slon.log
        bed.cluster.assert_replicates(1, 2)
        if taken != pid:
            # Where P went once slon's other connections were made.
            now = [conn for conn, backend in pooled_backends(pooler, slon) if backend == pid]
            if now:
                case += f", then slon's {now[0]} connection's"
            else:
                case += ", then still the pooled client's" if hold_as else ", then still idle in the pool"
    print(f"cycle {cycle}: {case}; pooled backends {pooled}; lock taken {took:.2f}s after the restart")
    assert slon.alive(), slon.log
    return taken == pid


def test_kit_lets_a_slon_restarted_behind_a_realistic_session_pool_take_its_lock_whichever_backend_it_gets(bed):
    pooler = build_pooled(bed, with_kit=True, pool_size=20)
    bed.cluster.wait_slon_holds_lock(bed.slons[1])

    # Three restarts as they come, and more (up to eight) until one puts local_listen on another
    # backend than P, the case the recorded name decides; the first test pins the case of P.
    on_p = [restart_cycle(bed, pooler, str(n)) for n in (1, 2, 3)]
    while all(on_p):
        assert len(on_p) < 8, "local_listen got its predecessor's backend at every restart"
        on_p.append(restart_cycle(bed, pooler, str(len(on_p) + 1)))
    # P in another client's hands, named as another of slon's connections, while slon starts.
    restart_cycle(bed, pooler, "held", hold_as="slon.local_sync")

    # A second slon for the node, behind the same pooler, is still refused: the row's taker is
    # alive, and is the running slon's local_listen, named so.
    slon, held = bed.slons[1], own_lock(bed)
    second = start_pooled_slon(bed, pooler)
    assert second.wait_exit(timeout=30) is not None, "a second slon for node 1 ran beside the first"
    assert DUPLICATE_LOCK in second.log and ALREADY_RUNNING in second.log, second.log
    assert held[0] not in local_listen_backends(pooler, second), second.log
    assert slon.alive()
    assert own_lock(bed) == held
    bed.cluster.assert_replicates(1, 2)
    assert slon.alive() and DUPLICATE_LOCK not in slon.log


# -- a pooled backend handed to another client that carries the same name -------------------------
# (a second hostile review.) Every remote slon names its listen connection to node 1
# slon.node_1_listen, and every cluster's slon names its own local_listen alike: a session pooler
# that hands a dead client's backend to such a client hands on a backend still carrying the name,
# PID and start time recorded for the dead client's lock row. The row the backend took later is
# the live one; the earlier one is stale.

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from slonybed import SlonyBed  # noqa: E402
from test_install import add_stock_like_cluster  # noqa: E402


@pytest.fixture
def lone_bed() -> Iterator[SlonyBed]:
    """One server, no Slony cluster built."""
    with SlonyBed(nodes=1) as b:
        yield b


def pooled_client(pooler: PgBouncer, application_name: str, statement: sql.Composable, stack: ExitStack,
                  params: tuple = (), expect_pid: int | None = None,
                  notices: list[str] | None = None) -> tuple[psycopg.Connection, int]:
    """A client of the pooler that names itself as slon does (store_application_name() runs SET
    application_name) and runs statement (notices: where its NOTICEs go); stack closes it.
    (client, its server backend's PID); expect_pid: the backend pgbouncer must have handed it."""
    client = stack.enter_context(psycopg.connect(pooler.conninfo(), autocommit=True, connect_timeout=5))
    client.execute("select pg_catalog.set_config('application_name', %s, false)", (application_name,))
    pid = client.execute("select pg_catalog.pg_backend_pid()").fetchone()[0]
    assert expect_pid in (None, pid), f"pgbouncer handed backend {pid}, not {expect_pid}: {pooler.servers()}"
    if notices is not None:
        client.add_notice_handler(lambda d: notices.append(d.message_primary))
    client.execute(statement, params)
    return client, pid


def leave_pooled(pooler: PgBouncer, client: psycopg.Connection, pid: int) -> None:
    """The client goes (its host died, say) and pgbouncer pools its backend, reset by DISCARD ALL;
    only that backend is left in the pool, so the next client gets it."""
    client.close()
    pooler.keep_only(pid)


def status_of(node, schema: str) -> list[tuple]:
    return node.query("select node, conncnt, pid, verdict, reason from slony_nodelock.status(%s) order by 1, 2",
                      (schema,))


def test_failover_spares_a_pooled_backend_handed_on_to_another_nodes_listen_of_the_same_name(lone_bed):
    bed, node = lone_bed, lone_bed.node(1)
    bed.cluster.build()
    assert PATCHED_BED in bed.install_fix(1)
    pooler = start_pgbouncer(bed, 1)
    schema = sql.Identifier(bed.cluster.schema)
    register = sql.SQL("select {}.registerNodeConnection(%s)").format(schema)

    with ExitStack() as stack:
        # Node 2's slon's listen connection to node 1 registers, as slon does, and its host dies.
        node2, pid = pooled_client(pooler, "slon.node_1_listen", register, stack, (2,))
        leave_pooled(pooler, node2, pid)
        # Node 3's slon opens its listen connection to node 1 and gets that backend.
        node3, _ = pooled_client(pooler, "slon.node_1_listen", register, stack, (3,), expect_pid=pid)
        [(c2,)] = node.query("select nl_conncnt from _bed.sl_nodelock where nl_nodeid = 2 and nl_backendpid = %s", (pid,))
        [(c3,)] = node.query("select nl_conncnt from _bed.sl_nodelock where nl_nodeid = 3 and nl_backendpid = %s", (pid,))
        before = status_of(node, "_bed")

        # slonik's failover of node 2 runs terminateNodeConnections(2) on node 1.
        notices: list[str] = []
        with node.connect() as slonik:
            slonik.add_notice_handler(lambda d: notices.append(d.message_primary))
            slonik.execute(sql.SQL("select {}.terminatenodeconnections(2)").format(schema))

        reason = (f"pid {pid} is the client backend that took the lock, but it took the lock row (node 3, conncnt {c3}) "
                  f'of cluster "bed" (schema "_bed") after it, and slon takes one lock per connection: the session '
                  "that took this one has ended (a session pooler such as pgbouncer handed its server connection on)")
        assert notices == [f"slony-nodelock: failover: did not signal the holder of the lock row (node 2, conncnt {c2}, "
                           f'pid {pid}) of cluster "bed" (schema "_bed"): {reason}'], notices
        assert node3.execute("select pg_catalog.pg_backend_pid()").fetchone() == (pid,)
        assert before[0] == (2, c2, pid, "stale", reason), before
        assert [row[:4] for row in before[1:]] == [(3, c3, pid, "live")], before
        assert [row[:4] for row in status_of(node, "_bed")] == [(3, c3, pid, "live")]


def test_a_clusters_dead_local_listen_handed_to_another_clusters_local_listen_is_stale(lone_bed):
    bed, node = lone_bed, lone_bed.node(1)
    for schema in ("_a", "_b"):
        add_stock_like_cluster(node, schema)
    output = bed.install_fix(1)
    assert 'patched cluster "a" (schema "_a")' in output and 'patched cluster "b" (schema "_b")' in output, output
    pooler = start_pgbouncer(bed, 1)

    def start_up(schema: str) -> sql.Composable:
        """slon's local_listen start-up statement for node 1 of the cluster."""
        return sql.SQL("select {0}.cleanupnodelock(); insert into {0}.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())"
                       ).format(sql.Identifier(schema))

    with ExitStack() as stack:
        # Slon a's local_listen takes its lock and dies between two polls; slon b's gets the backend.
        a, pid = pooled_client(pooler, "slon.local_listen", start_up("_a"), stack)
        leave_pooled(pooler, a, pid)
        b, _ = pooled_client(pooler, "slon.local_listen", start_up("_b"), stack, expect_pid=pid)
        reason = (f"pid {pid} is the client backend that took the lock, but it took the lock row (node 1, conncnt 0) "
                  'of cluster "b" (schema "_b") after it, and slon takes one lock per connection: the session '
                  "that took this one has ended (a session pooler such as pgbouncer handed its server connection on)")
        assert status_of(node, "_a") == [(1, 0, pid, "stale", reason)]
        assert [row[:4] for row in status_of(node, "_b")] == [(1, 0, pid, "live")]

        # Slon a starts again through the pooler: b holds the pool's backend, so it gets another
        # (from the reserve pool), and its start-up removes the stale row and takes the lock.
        notices: list[str] = []
        _, new = pooled_client(pooler, "slon.local_listen", start_up("_a"), stack, notices=notices)
        assert new != pid
        assert notices == [removal("_a", 1, 0, pid, reason)], notices
        assert [row[:4] for row in status_of(node, "_a")] == [(1, 0, new, "live")]
        assert b.execute("select pg_catalog.pg_backend_pid()").fetchone() == (pid,)
        assert [row[:4] for row in status_of(node, "_b")] == [(1, 0, pid, "live")]
