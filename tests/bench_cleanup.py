"""`make bench`: the latency of cleanupnodelock(), Slony's stock version against ours.

A benchmark, not a test: it prints numbers and fails only when a measurement would be meaningless.

Method
    One real PostgreSQL 15 server with a one-node Slony cluster "bench". For each case, K client
    connections named like slon's ('slon.remoteWorkerThread_<n>') insert the lock rows themselves,
    with their own pg_backend_pid(), so every row is live for both implementations: kill(pid, 0)
    succeeds for stock, and for ours the identity trigger has recorded (pid, backend_start). A call
    therefore deletes nothing, and every timed call does the same work.

    The fix is installed before the rows are made, so that the trigger records their identities.
    Each case is then measured as a sandwich on the same rows and backends: ours, stock (after
    uninstall, which leaves the rows alone), ours again (after reinstall, with the holders taking
    their rows again so that the trigger records them). Drift during the run shows as a difference between the two "ours" runs.

    Latency is what slon sees: `select "_bench".cleanupnodelock()` from one more autocommit
    connection, timed on the client with perf_counter_ns, after a warm-up that also absorbs the
    one-off PL/Python compile. Each phase then runs the same call from pgbench for a few seconds:
    a C libpq client like slon itself, whose average is steadier than the Python loop's. After
    each phase the row count must be unchanged, or the run stops.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from slonybed import SlonyBed
from slonybed.postgres import PG_BIN, PostgresServer

CLUSTER = "bench"
SCHEMA = f"_{CLUSTER}"
NODE = 1
WARMUP_CALLS = 20
PGBENCH_SECONDS = 3
# The two "ours" runs of a case differing by more than this means the machine was busy meanwhile.
DRIFT_WARNING = 0.25
CALL = sql.SQL("select {}.cleanupnodelock()").format(sql.Identifier(SCHEMA))


@dataclass(frozen=True)
class Case:
    name: str
    backends: int
    rows: int
    calls: int


# max_connections is 100: 90 holders + the control and timing connections + psql for
# (un)install leave a few slots spare.
CASES = (
    Case("a", backends=10, rows=5, calls=300),
    Case("b", backends=90, rows=1000, calls=100),
    # Between (a) and (b), to show how cost grows with the number of rows.
    Case("c", backends=90, rows=250, calls=100),
    Case("d", backends=90, rows=500, calls=100),
)


class InvalidMeasurement(RuntimeError):
    """The rows or the installed function were not what the measurement assumed."""


@dataclass
class Phase:
    """One timed run of one implementation."""

    implementation: str
    latencies_ns: list[int]
    notices: list[str] = field(default_factory=list)
    # pgbench's average latency: a C libpq client, as slon is, with less client noise than Python.
    pgbench_us: float = 0.0

    @property
    def median_us(self) -> float:
        return statistics.median(self.latencies_ns) / 1000

    @property
    def p90_us(self) -> float:
        return statistics.quantiles(self.latencies_ns, n=10)[-1] / 1000


@dataclass
class CaseResult:
    case: Case
    phases: list[Phase]

    def runs(self, implementation: str) -> list[Phase]:
        return [p for p in self.phases if p.implementation == implementation]

    def median_us(self, implementation: str) -> float:
        return statistics.mean(p.median_us for p in self.runs(implementation))

    def pgbench_us(self, implementation: str) -> float:
        return statistics.mean(p.pgbench_us for p in self.runs(implementation))


# -- the rows and their holders -------------------------------------------------------------------

def rows_per_backend(case: Case) -> list[int]:
    """case.rows spread as evenly as possible over case.backends (some may hold none)."""
    base, extra = divmod(case.rows, case.backends)
    return [base + (1 if i < extra else 0) for i in range(case.backends)]


def open_holders(server: PostgresServer, case: Case) -> list[psycopg.Connection]:
    """Connect case.backends slon-like clients and have each insert its share of lock rows.

    The backend inserts with its own PID, as registerNodeConnection() does, because only then does
    the identity trigger record the row; a row naming some other PID would be judged differently.
    """
    holders: list[psycopg.Connection] = []
    try:
        for i, count in enumerate(rows_per_backend(case)):
            remote = i + 2
            conn = server.connect(application_name=f"slon.remoteWorkerThread_{remote}")
            holders.append(conn)
            take_locks(conn, remote, count)
    except BaseException:
        close_all(holders)
        raise
    return holders


def take_locks(conn: psycopg.Connection, remote: int, count: int) -> None:
    """Have the holder (re)insert its lock rows itself, so that the identity trigger records them."""
    conn.execute(sql.SQL("delete from {}.sl_nodelock where nl_backendpid = pg_catalog.pg_backend_pid()")
                 .format(sql.Identifier(SCHEMA)))
    if count:
        conn.execute(
            sql.SQL("insert into {}.sl_nodelock (nl_nodeid, nl_backendpid) "
                    "select %s, pg_catalog.pg_backend_pid() from generate_series(1, %s)")
            .format(sql.Identifier(SCHEMA)),
            (remote, count),
        )


def close_all(conns: list[psycopg.Connection]) -> None:
    for conn in conns:
        conn.close()


def scalar(ctl: psycopg.Connection, query: sql.Composable | str) -> object:
    row = ctl.execute(query).fetchone()
    assert row is not None
    return row[0]


def lock_count(ctl: psycopg.Connection) -> int:
    return int(scalar(ctl, sql.SQL("select count(*) from {}.sl_nodelock").format(sql.Identifier(SCHEMA))))


def identity_count(ctl: psycopg.Connection) -> int:
    return int(scalar(ctl, sql.SQL(
        "select count(*) from slony_nodelock.lock_identity where cluster_schema = {}"
    ).format(sql.Literal(SCHEMA))))


def installed_language(ctl: psycopg.Connection) -> str:
    """plpgsql for Slony's function, plpython3u for ours: proof of which one is being timed."""
    return str(scalar(ctl, sql.SQL(
        "select l.lanname from pg_proc p join pg_language l on l.oid = p.prolang "
        "where p.oid = {}::regprocedure"
    ).format(sql.Literal(f"{SCHEMA}.cleanupnodelock()"))))


def expect(condition: bool, why: str) -> None:
    if not condition:
        raise InvalidMeasurement(why)


# -- timing ---------------------------------------------------------------------------------------

def time_calls(server: PostgresServer, implementation: str, calls: int) -> Phase:
    """Client-side latency of `calls` cleanupnodelock() calls on a fresh connection, after warm-up.

    A fresh connection per phase, so that no phase inherits another's compiled function or plans.
    prepare=False sends the statement as text every time, as slon does.
    """
    notices: list[str] = []
    latencies: list[int] = []
    with server.connect(application_name="bench.timer") as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        for _ in range(WARMUP_CALLS):
            conn.execute(CALL, prepare=False).fetchone()
        for _ in range(calls):
            start = time.perf_counter_ns()
            conn.execute(CALL, prepare=False).fetchone()
            latencies.append(time.perf_counter_ns() - start)
    return Phase(implementation, latencies, notices)


def pgbench_latency(server: PostgresServer) -> float:
    """Average latency in microseconds of the same call from pgbench, one client, PGBENCH_SECONDS."""
    script = server.home / "bench-cleanup.sql"
    script.write_text(CALL.as_string(None) + ";\n")
    result = subprocess.run(
        [str(PG_BIN / "pgbench"), "-n", "-c", "1", "-T", str(PGBENCH_SECONDS), "-f", str(script),
         "-d", server.conninfo(application_name="bench.pgbench")],
        capture_output=True, text=True, timeout=PGBENCH_SECONDS + 60)
    found = re.search(r"latency average = ([0-9.]+) ms", result.stdout)
    expect(result.returncode == 0 and found is not None, f"pgbench failed:\n{result.stdout}{result.stderr}")
    return float(found.group(1)) * 1000


def measure(server: PostgresServer, ctl: psycopg.Connection, case: Case, implementation: str) -> Phase:
    language = {"stock": "plpgsql", "ours": "plpython3u"}[implementation]
    expect(installed_language(ctl) == language,
           f"case {case.name}: expected {implementation} ({language}) installed, found {installed_language(ctl)}")
    if implementation == "ours":
        # Rows without a recorded identity would take ours down the slower, noisier fallback path.
        expect(identity_count(ctl) == case.rows,
               f"case {case.name}: {identity_count(ctl)} identities recorded for {case.rows} rows")
    phase = time_calls(server, implementation, case.calls)
    phase.pgbench_us = pgbench_latency(server)
    left = lock_count(ctl)
    expect(left == case.rows,
           f"case {case.name}, {implementation}: {case.rows} lock rows before, {left} after; "
           f"the calls deleted live rows, so they did not all do the same work")
    return phase


def run_case(bed: SlonyBed, ctl: psycopg.Connection, case: Case) -> CaseResult:
    """Make the rows with the fix installed, then time ours, stock, ours on them. Leaves the fix
    installed and the rows deleted."""
    server = bed.node(NODE)
    holders = open_holders(server, case)
    try:
        expect(lock_count(ctl) == case.rows, f"case {case.name}: rows were not all inserted")
        phases = [measure(server, ctl, case, "ours")]
        bed.uninstall_fix(NODE)
        phases.append(measure(server, ctl, case, "stock"))
        bed.install_fix(NODE)
        # The reinstall records no identity for these rows (install adopts only rows whose holder
        # carries a name slon gives a registering connection, and one lock per backend): the
        # holders take their locks again, as slon would on reconnecting, so both "ours" runs judge
        # recorded rows.
        for i, (conn, count) in enumerate(zip(holders, rows_per_backend(case))):
            take_locks(conn, i + 2, count)
        phases.append(measure(server, ctl, case, "ours"))
        # With the fix installed the delete trigger also clears the identities, ready for the next case.
        ctl.execute(sql.SQL("delete from {}.sl_nodelock").format(sql.Identifier(SCHEMA)))
    finally:
        close_all(holders)
    return CaseResult(case, phases)


# -- the report -----------------------------------------------------------------------------------

def print_report(version: str, results: list[CaseResult]) -> None:
    print(f"\nPostgreSQL {version}; Slony-I stock cleanupnodelock() (plpgsql + kill(pid, 0)) and "
          f"slony-nodelock's (PL/Python + pg_stat_activity),")
    print("measured in the same run on the same server, rows and backends (order: ours, stock, ours).")
    print("Client-observed latency of one `select cleanupnodelock()`, in microseconds.\n")

    header = f"{'case':<26} {'impl':<6} {'calls':>5} {'median':>9} {'p90':>9}"
    print(header)
    print("-" * len(header))
    for result in results:
        c = result.case
        label = f"({c.name}) {c.rows} rows, {c.backends} backends"
        for phase in result.phases:
            print(f"{label:<26} {phase.implementation:<6} {len(phase.latencies_ns):>5} "
                  f"{phase.median_us:>9.1f} {phase.p90_us:>9.1f}")
            label = ""

    print(f"\n{'case':<6} {'stock median':>13} {'ours median':>12} {'ours/stock':>11}")
    for result in results:
        stock, ours = result.median_us("stock"), result.median_us("ours")
        print(f"({result.case.name})   {stock:>13.1f} {ours:>12.1f} {ours / stock:>10.2f}x")
    print("(ours median = mean of the two ours runs' medians)")

    print(f"\npgbench, one libpq client for {PGBENCH_SECONDS} s per phase, as slon calls it (average latency, us):")
    print(f"{'case':<6} {'stock':>13} {'ours':>12} {'ours/stock':>11}")
    for result in results:
        stock, ours = result.pgbench_us("stock"), result.pgbench_us("ours")
        print(f"({result.case.name})   {stock:>13.1f} {ours:>12.1f} {ours / stock:>10.2f}x")
    for result in results:
        first, second = (p.median_us for p in result.runs("ours"))
        drift = abs(first - second) / min(first, second)
        if drift > DRIFT_WARNING:
            print(f"warning: case ({result.case.name})'s two ours runs differ by {drift:.0%}: "
                  f"the machine was busy during the run, so take its ratio with care")

    by_rows = sorted(results, key=lambda r: r.case.rows)
    print("\nCost per extra lock row, from each case to the next larger one (linear growth keeps it flat):")
    for smaller, larger in zip(by_rows, by_rows[1:]):
        extra_rows = larger.case.rows - smaller.case.rows
        costs = "  ".join(
            f"{implementation} {(larger.median_us(implementation) - smaller.median_us(implementation)) / extra_rows:5.2f}"
            for implementation in ("stock", "ours"))
        print(f"  ({smaller.case.name}) {smaller.case.rows:>4} -> ({larger.case.name}) {larger.case.rows:>4} rows: "
              f"{costs} us/row")

    notices = [(r.case.name, p.implementation, n) for r in results for p in r.phases for n in p.notices]
    if notices:
        print(f"\nNOTICEs raised during timing ({len(notices)}; expected none, as every row is live):")
        for name, implementation, text in sorted(set(notices))[:20]:
            print(f"  ({name}) {implementation}: {text}")
    else:
        print("\nNo NOTICEs during timing (every row was judged live, as intended).")


def main() -> int:
    started = time.monotonic()
    results: list[CaseResult] = []
    with SlonyBed(nodes=1, cluster=CLUSTER) as bed:
        bed.cluster.slonik(f"init cluster (id = {NODE}, comment = '{CLUSTER}');")
        bed.install_fix(NODE)
        with bed.node(NODE).connect(application_name="bench.control") as ctl:
            version = str(scalar(ctl, "show server_version"))
            try:
                for case in CASES:
                    print(f"case ({case.name}): {case.rows} lock rows held by {case.backends} backends ...",
                          flush=True)
                    results.append(run_case(bed, ctl, case))
            except InvalidMeasurement as exc:
                print(f"\nINVALID MEASUREMENT: {exc}", file=sys.stderr)
                return 1
    print_report(version, results)
    print(f"\ndone in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
