"""Concurrency scenarios on a replicating bed with the kit installed: slons of one node started at
once, cleanupNodelock() hammered from several sessions while slons come and go, and install.sql
run twice at once. make soak runs them long; tests/test_concurrency.py runs them short.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from .bed import INSTALL_SQL, SlonyBed
from .slony import DUPLICATE_LOCK

SETTLE = 30


@dataclass
class StartRace:
    trials: int = 0
    # Trials where the number of slons still running once the others had given up was not one.
    not_exactly_one: int = 0
    # Slons that exited for another reason than the duplicate key.
    other_exits: list[str] = field(default_factory=list)


def slons_at_once(bed: SlonyBed, trials: int, count: int = 4) -> StartRace:
    """Stop node 1's slon, start count slons for it at once, and see how many stay; trials times."""
    cluster = bed.cluster
    race = StartRace()
    for _ in range(trials):
        race.trials += 1
        bed.slons[1].stop()
        cluster.wait_lock_holder_gone(1)
        slons = [cluster.start_slon(1) for _ in range(count)]
        deadline = time.monotonic() + SETTLE
        running = slons
        while time.monotonic() < deadline:
            running = [s for s in slons if s.alive()]
            if len(running) <= 1 and (not running or cluster.lock_held_by(running[0]) is not None):
                break
            time.sleep(0.1)
        # A loser exits within a second or two of its cleanup; give any late one the time to go.
        time.sleep(1)
        running = [s for s in slons if s.alive()]
        if len(running) != 1:
            race.not_exactly_one += 1
        race.other_exits += [s.log[-500:] for s in slons if not s.alive() and DUPLICATE_LOCK not in s.log]
        for s in running[1:]:
            s.stop()
        bed.slons[1] = running[0] if running else cluster.start_slon(1)
    cluster.wait_slon_holds_lock(bed.slons[1])
    return race


@dataclass
class Storm:
    seconds: float = 0
    cleanups: int = 0
    slon_restarts: int = 0
    errors: list[str] = field(default_factory=list)
    # Times a running slon's own lock row was found missing (checked continuously).
    live_locks_missing: int = 0
    checks: int = 0


def cleanup_storm(bed: SlonyBed, seconds: float, sessions: int = 3) -> Storm:
    """sessions connections per node call cleanupNodelock() in a loop while the slons of both
    nodes are stopped and started over and over; a watcher checks all the while that every slon
    that holds its lock still has its row."""
    cluster = bed.cluster
    storm = Storm()
    stop = threading.Event()
    # node -> PID of the lock row of the slon running there, while it runs undisturbed.
    holding: dict[int, int] = {}
    guard = threading.Lock()
    cleanup = sql.SQL("select {}.cleanupnodelock()").format(sql.Identifier(cluster.schema))

    def hammer(node_id: int) -> None:
        # lock_timeout: a deadlock or a stuck lock shows as an error here instead of a hang.
        with cluster.node(node_id).connect(options="-c lock_timeout=10s -c deadlock_timeout=100ms") as conn:
            while not stop.is_set():
                try:
                    conn.execute(cleanup)
                    with guard:
                        storm.cleanups += 1
                except psycopg.Error as exc:
                    with guard:
                        storm.errors.append(f"node {node_id}: {exc.diag.sqlstate} {exc}".strip())

    def watch() -> None:
        while not stop.is_set():
            with guard:
                expected = dict(holding)
            for node_id, pid in expected.items():
                rows = cluster.node(node_id).query(
                    sql.SQL("select 1 from {}.sl_nodelock where nl_nodeid = %s and nl_conncnt = 0 and nl_backendpid = %s")
                    .format(sql.Identifier(cluster.schema)), (node_id, pid))
                with guard:
                    if holding.get(node_id) == pid:
                        storm.checks += 1
                        storm.live_locks_missing += not rows
            time.sleep(0.05)

    threads = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in cluster.nodes for _ in range(sessions)]
    threads.append(threading.Thread(target=watch, daemon=True))
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        node = 1
        while time.monotonic() - started < seconds:
            with guard:
                holding.pop(node, None)
            bed.slons[node].stop()
            cluster.wait_lock_holder_gone(node)
            slon = bed.start_slon(node)
            pid = cluster.wait_slon_holds_lock(slon)
            with guard:
                holding[node] = pid
            storm.slon_restarts += 1
            node = 3 - node
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    storm.seconds = time.monotonic() - started
    cluster.assert_replicates(1, 2)
    return storm


@dataclass
class TwoInstalls:
    exit_codes: tuple[int, int]
    outputs: tuple[str, str]
    verify: list[tuple]
    # Whether one of the two was seen waiting for the other's install lock.
    waited: bool


def install_twice_at_once(bed: SlonyBed, timeout: float = 180) -> TwoInstalls:
    """Run sql/install.sql on node 1 from two psql sessions at once. The test holds the lock both
    need first, on the cluster's sl_nodelock, until both are seen waiting for it (the scripts
    retry NOWAIT, sleeping between tries), so that they are let go together (and it shows that
    they do wait: without the lock they would finish on their own)."""
    server = bed.node(1)
    argv = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", server.conninfo(application_name="twice"),
            "-f", str(INSTALL_SQL)]
    runs: list[subprocess.Popen] = []
    waited = False
    try:
        with server.connect() as gate:
            with gate.transaction():
                gate.execute(f'lock table "_{bed.cluster_name}".sl_nodelock in share row exclusive mode')
                runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                        for _ in range(2)]
                deadline = time.monotonic() + 60
                seen: set[int] = set()
                while not waited and time.monotonic() < deadline and all(r.poll() is None for r in runs):
                    seen |= {pid for (pid,) in server.query(
                        "select pid from pg_catalog.pg_stat_activity where application_name = 'twice'"
                        " and wait_event = 'PgSleep'")}
                    waited = len(seen) == 2
                    time.sleep(0.01)
        outputs = tuple(r.communicate(timeout=timeout)[0] for r in runs)
    finally:
        for r in runs:
            if r.poll() is None:
                r.kill()
                r.wait(timeout=10)
    return TwoInstalls(tuple(r.returncode for r in runs), outputs,
                       server.query("select patched, failover_patched, problems from slony_nodelock.verify()"),
                       waited)
