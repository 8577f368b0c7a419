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
    # Starts of node 1's slon that did not end with slon running and holding its lock: refused on
    # the duplicate key, exited otherwise, or stuck; what happened is kept in failures.
    failed_starts: int = 0
    double_slons: int = 0
    # Cycles in which a lock row held by a running slon's connection (any node's, any conncnt)
    # disappeared while a second slon's cleanup ran, or the first slon died.
    live_locks_removed: int = 0
    rows_lost: int = 0
    # Who actually held the stale PID each cycle ("claim failed" when another process kept it).
    holders: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


CLAIM_FAILED = "nobody (the claim failed)"


def draws(seed: int, cycles: int) -> list[str]:
    """The holder of each cycle: the same for stock and the kit, and the same again for a seed."""
    rng = random.Random(seed)
    return [rng.choice(HOLDERS) for _ in range(cycles)]


def soak(bed: SlonyBed, holders: list[str], kit: bool, log=print) -> Tally:
    """Build the bed's two-node cluster, install the kit if asked (while the slons run), and run
    one cycle per holder. Returns the tally, also when a cycle broke the bed (the failure is in
    it); asserts nothing about it."""
    assert bed.cluster is not None
    started = time.monotonic()
    tally = Tally()
    bed.node(1).query(sql.SQL("create database {}").format(sql.Identifier(OTHER_DB)))
    bed.build_replicating()
    if kit:
        bed.install_fix(1)
    try:
        for n, holder in enumerate(holders, start=1):
            placed = _cycle(bed, holder, tally, n)
            tally.holders[placed] += 1
            log(f"  cycle {n}: {placed}; failed starts {tally.failed_starts}, double slons "
                f"{tally.double_slons}, live locks removed {tally.live_locks_removed}")
    except Exception as broken:  # the bed cannot go on; the table says so
        tally.failures.append(f"cycle {tally.cycles} broke the run: {str(broken)[:2000]}")
        log(f"  cycle {tally.cycles} broke the run: {str(broken)[:300]}")
    tally.rows_lost = _rows_lost(bed)
    tally.seconds = time.monotonic() - started
    return tally


def _cycle(bed: SlonyBed, holder: str, tally: Tally, n: int) -> str:
    """One power cut, holder, slon start and second slon; returns who actually held the stale
    PID. Rows go in before the cut and after the start without waiting: rows_lost counts, at the
    end, what the subscriber never got."""
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
            placed = CLAIM_FAILED

    tally.cycles += 1
    _insert(bed, f"cycle {n}, before the power cut")
    stale = bed.reboot_host_of(1, reuse_pid=reuse if holder in claims else None)
    slon = bed.start_slon(1)
    outcome = _outcome(cluster, slon)
    if outcome != "runs":
        tally.failed_starts += 1
        tally.failures.append(f"cycle {n} ({placed}): {outcome}")
        slon.stop()
        # What an operator does after reading the bug report: delete the stale row, start again.
        bed.node(1).query(sql.SQL("delete from {}.sl_nodelock where nl_nodeid = 1 and nl_conncnt = 0 "
                                  "and nl_backendpid = %s").format(sql.Identifier(cluster.schema)), (stale,))
        slon = bed.start_slon(1)
        again = _outcome(cluster, slon)
        assert again == "runs", f"slon did not start after the stale row was deleted: {again}"
    _insert(bed, f"cycle {n}, after slon started")
    # A second slon for node 1, as a supervisor's double start would make: its cleanup judges
    # every lock row of the node, and must keep each one a running slon's connection holds.
    live = _live_slon_rows(bed)
    second = cluster.start_slon(1)
    if _outcome(cluster, second, first=slon) == "runs":
        tally.double_slons += 1
    gone = live - set(cluster.node(1).query(
        sql.SQL("select nl_nodeid, nl_conncnt, nl_backendpid from {}.sl_nodelock").format(sql.Identifier(cluster.schema))))
    if gone or not slon.alive():
        tally.live_locks_removed += 1
        tally.failures.append(f"cycle {n}: live rows gone {sorted(gone)}, first slon alive: {slon.alive()}")
    second.stop()
    bed.release_holders()
    return placed


def _insert(bed: SlonyBed, note: str) -> None:
    bed.node(1).query(f"insert into {TABLE} (note) values (%s)", (note,))


def _live_slon_rows(bed: SlonyBed) -> set[tuple]:
    """Node 1's lock rows whose PID is a slon connection's backend right now."""
    return set(bed.node(1).query(sql.SQL(
        "select l.nl_nodeid, l.nl_conncnt, l.nl_backendpid from {}.sl_nodelock l "
        "join pg_catalog.pg_stat_activity a on a.pid = l.nl_backendpid "
        "where a.application_name like 'slon.%%'").format(sql.Identifier(bed.cluster.schema))))


def _outcome(cluster, slon: Slon, first: Slon | None = None) -> str:
    """'runs' once slon holds the node's own lock (for a second slon: once it holds it instead of
    first), else what ended it: refused on the duplicate key, exited otherwise, or stuck."""
    deadline = time.monotonic() + SLON_WAIT
    while time.monotonic() < deadline:
        if not slon.alive():
            if DUPLICATE_LOCK in slon.log:
                return "refused on the duplicate key"
            return "exited: " + " | ".join(line for line in slon.log.splitlines()[-5:])
        if cluster.lock_held_by(slon) is not None:
            return "runs"
        time.sleep(0.1)
    return f"stuck: neither ran nor exited in {SLON_WAIT}s"


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
    lines.append("  stale PID held by (stock/kit):")
    lines += [f"    {h}: {stock.holders[h]}/{kit.holders[h]}" for h in (*HOLDERS, CLAIM_FAILED)
              if stock.holders[h] or kit.holders[h]]
    for name, t in (("stock Slony", stock), ("slony-nodelock", kit)):
        # Stock's refusals are the bug itself; anything else is listed.
        shown = [f for f in t.failures if t is kit or "refused on the duplicate key" not in f]
        lines += [f"  {name}: {failure}" for failure in shown[:10]]
    return "\n".join(lines)
