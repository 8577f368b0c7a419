"""The reboot soak: power cut after power cut of node 1, the stale lock's PID handed each time to
a holder drawn at random, then slon started, a row replicated, and a second slon tried. The same
draws run against stock Slony and against the kit, and the tallies are set side by side.

`make soak` (tests/soak.py) runs the long version; tests/test_soak.py a short one in make test.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

from psycopg import sql

from .bed import SlonyBed
from .pidreuse import PidUnavailable
from .slony import DUPLICATE_LOCK, TABLE, Slon

# Who gets the stale PID after the reboot.
NOBODY = "nobody"
SLEEP = "a postgres-owned non-PostgreSQL process"
IMPOSTOR = "a client backend named slon.local_listen"
OTHER_DATABASE = "a client backend of another database"
AUXILIARY = "the autovacuum launcher (an auxiliary process)"
HOLDERS = (NOBODY, SLEEP, IMPOSTOR, OTHER_DATABASE, AUXILIARY)
OTHER_DB = "other_app"
SLON_WAIT = 30


@dataclass
class Tally:
    cycles: int = 0
    failed_starts: int = 0
    double_slons: int = 0
    live_locks_removed: int = 0
    rows_lost: int = 0
    # How often each holder was put on the stale PID (a claim may fail: then nobody holds it).
    holders: Counter = field(default_factory=Counter)
    seconds: float = 0.0


def draws(seed: int, cycles: int) -> list[str]:
    """The holder of each cycle: the same for stock and the kit, and the same again for a seed."""
    rng = random.Random(seed)
    return [rng.choice(HOLDERS) for _ in range(cycles)]


def soak(bed: SlonyBed, holders: list[str], kit: bool, log=print) -> Tally:
    """Build the bed's two-node cluster, install the kit if asked (while the slons run), and run
    one cycle per holder. Returns the tally; asserts nothing about it."""
    assert bed.cluster is not None
    started = time.monotonic()
    tally = Tally()
    bed.node(1).query(sql.SQL("create database {}").format(sql.Identifier(OTHER_DB)))
    bed.build_replicating()
    if kit:
        bed.install_fix(1)
    for n, holder in enumerate(holders, start=1):
        placed = _cycle(bed, holder, tally)
        tally.holders[placed] += 1
        log(f"  cycle {n}: {placed}; failed starts {tally.failed_starts}, double slons {tally.double_slons}, "
            f"live locks removed {tally.live_locks_removed}")
    tally.rows_lost = _rows_lost(bed)
    tally.seconds = time.monotonic() - started
    return tally


def _cycle(bed: SlonyBed, holder: str, tally: Tally) -> str:
    """One power cut, holder, slon start, replicated row and second slon; returns who actually
    held the stale PID."""
    cluster = bed.cluster
    placed = holder
    claims = {
        SLEEP: bed.put_sleep_on,
        IMPOSTOR: lambda pid: bed.put_backend_on(1, pid, application_name="slon.local_listen"),
        OTHER_DATABASE: lambda pid: bed.put_backend_on(1, pid, application_name="report", dbname=OTHER_DB),
        AUXILIARY: lambda pid: bed.put_autovacuum_launcher_on(1, pid),
    }

    def reuse(pid: int) -> None:
        nonlocal placed
        try:
            claims[holder](pid)
        except PidUnavailable:
            placed = NOBODY

    tally.cycles += 1
    stale = bed.reboot_host_of(1, reuse_pid=reuse if holder in claims else None)
    slon = bed.start_slon(1)
    if _outcome(cluster, slon) == "refused":
        tally.failed_starts += 1
        # What an operator does after reading the bug report: delete the stale row, start again.
        bed.node(1).query(sql.SQL("delete from {}.sl_nodelock where nl_nodeid = 1 and nl_conncnt = 0 "
                                  "and nl_backendpid = %s").format(sql.Identifier(cluster.schema)), (stale,))
        slon = bed.start_slon(1)
        assert _outcome(cluster, slon) == "runs", f"slon did not start after the stale row was deleted:\n{slon.log}"
    own = cluster.wait_slon_holds_lock(slon)
    cluster.assert_replicates(1, 2)
    # A second slon for node 1, as a supervisor's double start would make: it must be refused,
    # and the first one's lock must stay.
    second = cluster.start_slon(1)
    if _outcome(cluster, second, own_lock_taken_by_first=own) == "runs":
        tally.double_slons += 1
    if cluster.own_lock_pid(1) != own or not slon.alive():
        tally.live_locks_removed += 1
    second.stop()
    bed.release_holders()
    return placed


def _outcome(cluster, slon: Slon, own_lock_taken_by_first: int | None = None) -> str:
    """'runs' once slon holds the node's lock (a second slon: once it is still running after
    the first's lock was gone or its own start-up passed), 'refused' once it exited on the
    duplicate key."""
    deadline = time.monotonic() + SLON_WAIT
    while time.monotonic() < deadline:
        if not slon.alive():
            assert DUPLICATE_LOCK in slon.log, f"slon exited, but not on the duplicate key:\n{slon.log}"
            return "refused"
        pid = cluster.own_lock_pid(slon.node_id)
        if pid is not None and pid != own_lock_taken_by_first and cluster.node(slon.node_id).query(
                "select 1 from pg_catalog.pg_stat_activity where pid = %s and application_name = "
                "'slon.local_listen' and backend_start >= %s", (pid, slon.started_at)):
            return "runs"
        time.sleep(0.1)
    raise AssertionError(f"slon for node {slon.node_id} neither ran nor exited in {SLON_WAIT}s:\n{slon.log}")


def _rows_lost(bed: SlonyBed, timeout: float = 60) -> int:
    """Rows on the origin that the subscriber does not have once replication had time to catch up."""
    count = f"select pg_catalog.count(*) from {TABLE}"
    deadline = time.monotonic() + timeout
    while True:
        origin, subscriber = bed.node(1).query(count)[0][0], bed.node(2).query(count)[0][0]
        if origin == subscriber or time.monotonic() > deadline:
            return origin - subscriber
        time.sleep(0.5)


def table(seed: int, stock: Tally, kit: Tally) -> str:
    """The soak's summary: one row for stock Slony, one for the kit."""
    columns = ("cycles", "failed starts", "double slons", "live locks removed", "rows lost", "seconds")
    lines = [f"reboot soak, seed {seed} (replay: make soak SOAK_SEED={seed} SOAK_CYCLES={kit.cycles or stock.cycles})",
             "  %-15s" % "" + "".join("%20s" % c for c in columns)]
    for name, t in (("stock Slony", stock), ("slony-nodelock", kit)):
        values = (t.cycles, t.failed_starts, t.double_slons, t.live_locks_removed, t.rows_lost, round(t.seconds))
        lines.append("  %-15s" % name + "".join("%20d" % v for v in values))
    lines.append("  stale PID held by (stock/kit; a claim that lost its PID counts as nobody):")
    lines += [f"    {h}: {stock.holders[h]}/{kit.holders[h]}" for h in HOLDERS]
    return "\n".join(lines)
