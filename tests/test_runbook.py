"""The README's runbook for a kept lock, run as written: the psql block between
<!-- runbook: manual delete --> and <!-- runbook: end manual delete -->, read from README.md at
test time, with only its two \\set lines pointed at the bed's cluster and node, run the way a DBA
runs it (psql -X -v ON_ERROR_STOP=1 -f) against the node's own database.

It must remove the node's own lock row that the kit keeps for lack of proof once no slon runs for
the node, so that slon starts again; and delete nothing while that node's slon runs, though the
kit then keeps the running slon's row for the very same reason ('unsure')."""

from __future__ import annotations

import re
import time

from psycopg import sql

from conftest import requires_pid_control
from slonybed.bed import REPO
from slonybed.slony import DUPLICATE_LOCK

README = REPO / "README.md"
START_MARK = "<!-- runbook: manual delete -->"
END_MARK = "<!-- runbook: end manual delete -->"
STATUS = ("select verdict, holder_application_name, holder_backend_type from slony_nodelock.status(%s)"
          " where node = %s and conncnt = 0")
# The names slon 2.2 gives the connections a node's slon makes to its own database (slon's
# sources: local_listen.c, sync_thread.c, cleanup_thread.c, monitor_thread.c, remote_worker.c).
OWN_DATABASE_CONNECTIONS = {"slon.local_listen", "slon.local_sync", "slon.local_cleanup",
                            "slon.local_monitor", "slon.remoteWorkerThread_2"}


def runbook_block() -> str:
    """The fenced sql code between the two markers, exactly as README.md has it now."""
    text = README.read_text()
    assert text.count(START_MARK) == 1 and text.count(END_MARK) == 1, "README.md lost its runbook markers"
    between = text[text.index(START_MARK) + len(START_MARK):text.index(END_MARK)]
    fenced = re.fullmatch(r"\s*```sql\n(.*?)```\s*", between, re.S)
    assert fenced is not None, f"the runbook block is not one fenced sql block:\n{between}"
    return fenced.group(1)


def runbook_for(cluster_schema: str, node_id: int) -> str:
    """The block with its two \\set lines set for this cluster and node, the only edit a DBA makes."""
    block = runbook_block()
    for variable, value in (("cluster_schema", cluster_schema), ("node", str(node_id))):
        block, count = re.subn(rf"^\\set {variable} \S+$", lambda _: f"\\set {variable} {value}", block, flags=re.M)
        assert count == 1, f"the runbook block has {count} '\\set {variable}' lines, not 1:\n{block}"
    return block


def slon_name_pattern() -> str:
    """The regular expression the block's DELETE uses for a node's own slon connections."""
    patterns = re.findall(r"application_name ~ '([^']*)'", runbook_block())
    assert len(patterns) == 1, f"the runbook block names {len(patterns)} patterns for slon's connections, not 1"
    return patterns[0]


def run_runbook(bed, node_id: int) -> tuple[int, str]:
    """Run the block with psql against node_id's database; (rows deleted, psql's output)."""
    script = bed.root / f"runbook-node{node_id}-{time.monotonic_ns()}.sql"
    script.write_text(runbook_for(bed.cluster.schema, node_id))
    result = bed.node(node_id).psql_file(script)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"psql failed ({result.returncode}):\n{output}"
    tags = re.findall(r"^DELETE (\d+)$", result.stdout, re.M)
    assert len(tags) == 1, f"expected one DELETE tag:\n{output}"
    return int(tags[0]), output


def verdict_of_own_lock(bed, node_id: int) -> tuple | None:
    rows = bed.node(node_id).query(STATUS, (bed.cluster.schema, node_id))
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def restart_slon_unrecorded(bed, node_id: int):
    """Restart node_id's slon while the kit's identity trigger on sl_nodelock is disabled, as a
    DBA's maintenance or pg_restore --disable-triggers leaves it, then enable it again as install
    sets it (ALWAYS): the new slon's lock row has no identity record. Returns the slon."""
    node, table = bed.node(node_id), sql.Identifier(bed.cluster.schema, "sl_nodelock")
    node.query(sql.SQL("alter table {} disable trigger slony_nodelock_identity").format(table))
    try:
        bed.slons[node_id].stop()
        wait_for(lambda: not any(name in OWN_DATABASE_CONNECTIONS for _, name in slon_connections(bed, node_id)),
                 f"the stopped slon {node_id}'s connections to its database to be gone", timeout=15)
        slon = bed.start_slon(node_id)
        bed.cluster.wait_slon_holds_lock(slon)
    finally:
        node.query(sql.SQL("alter table {} enable always trigger slony_nodelock_identity").format(table))
    assert node.query("select tgenabled from pg_catalog.pg_trigger where tgrelid = %s::pg_catalog.regclass"
                      " and tgname = 'slony_nodelock_identity'",
                      (f"{bed.cluster.schema}.sl_nodelock",)) == [("A",)]
    return slon


def slon_connections(bed, node_id: int, since=None) -> list[tuple[int, str]]:
    """(pid, application_name) of the slon.* connections to node_id's database, those started at
    or after since if given."""
    return bed.node(node_id).query(
        "select pid, application_name from pg_catalog.pg_stat_activity"
        " where datname = pg_catalog.current_database() and application_name like 'slon.%%'"
        " and (%s::timestamptz is null or backend_start >= %s::timestamptz) order by 2, 1", (since, since))


def wait_for(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)
    return value


def kept_notices(bed, node_id: int) -> list[str]:
    """The NOTICEs of one cleanupNodelock() call, as slon's start-up makes it."""
    seen: list[str] = []
    with bed.node(node_id).connect() as caller:
        caller.add_notice_handler(lambda d: seen.append(d.message_primary))
        caller.execute(sql.SQL("select {}.cleanupnodelock()").format(sql.Identifier(bed.cluster.schema)))
    return seen


@requires_pid_control
def test_runbook_delete_removes_a_kept_lock_once_no_slon_runs_for_the_node_and_slon_starts(fixed_bed):
    bed = fixed_bed
    restart_slon_unrecorded(bed, 1)
    early: list[tuple] = []

    def impostor_after_a_check(pid: int) -> None:
        # Right after the power cut, before anything holds the PID: the kit itself removes this
        # row at slon's start ('stale'), so the runbook's DELETE, which takes only rows the kit
        # keeps for lack of proof, leaves it (its EXISTS guard; no slon runs anywhere now).
        early.append((verdict_of_own_lock(bed, 1), *run_runbook(bed, 1)))
        # Then the reboot hands the PID to a client backend named exactly as slon's local_listen.
        bed.put_backend_on(1, pid, application_name="slon.local_listen")

    stale = bed.reboot_host_of(1, reuse_pid=impostor_after_a_check)

    [(early_status, early_deleted, early_output)] = early
    assert early_status[0] == "stale", early_output
    assert early_deleted == 0, early_output
    # The kit keeps the row: no record, and the holder carries slon's own name.
    assert verdict_of_own_lock(bed, 1) == ("unsure", "slon.local_listen", "client backend")
    notices = kept_notices(bed, 1)
    assert any(n.startswith("slony-nodelock: kept") and f"pid {stale}" in n for n in notices), notices
    assert bed.cluster.own_lock_pid(1) == stale
    # The situation the runbook is for: slon for node 1 is refused, and keeps being refused.
    refused = bed.start_slon(1)
    assert refused.wait_exit(timeout=30) is not None, "slon for node 1 kept running beside the kept lock"
    assert DUPLICATE_LOCK in refused.log
    assert bed.cluster.own_lock_pid(1) == stale
    # No slon for node 1 is left connected; node 2's slon is, to node 1 as to every node, and
    # the holder carries slon's name: neither may stop the DELETE.
    wait_for(lambda: not any(pid != stale and name in OWN_DATABASE_CONNECTIONS
                             for pid, name in slon_connections(bed, 1)),
             "the refused slon's connections to node 1 to be gone", timeout=15)
    others = wait_for(lambda: [c for c in slon_connections(bed, 1) if c[0] != stale],
                      "node 2's slon to connect to node 1")
    assert (stale, "slon.local_listen") in slon_connections(bed, 1)

    deleted, output = run_runbook(bed, 1)

    assert deleted == 1, f"with node 2's slon connected to node 1 as {others}:\n{output}"
    assert "unsure" in output, output
    assert bed.cluster.own_lock_pid(1) is None
    slon = bed.start_slon(1)
    assert bed.cluster.wait_slon_holds_lock(slon) != stale
    assert DUPLICATE_LOCK not in slon.log
    bed.cluster.assert_replicates(1, 2)


def test_runbook_delete_leaves_the_lock_of_a_running_slon_that_the_kit_is_unsure_of(fixed_bed):
    bed, node = fixed_bed, fixed_bed.node(1)
    slon = restart_slon_unrecorded(bed, 1)
    pid = bed.cluster.wait_slon_holds_lock(slon)
    # The running slon's own row is kept for lack of proof, exactly like an impostor's: only the
    # DELETE's check for slon's other connections tells them apart.
    assert verdict_of_own_lock(bed, 1) == ("unsure", "slon.local_listen", "client backend")

    def all_own_connections() -> list[tuple[int, str]] | None:
        started = slon_connections(bed, 1, since=slon.started_at)
        return started if {name for _, name in started} >= OWN_DATABASE_CONNECTIONS else None

    # Every connection slon makes to its own database is up before the DBA's run.
    own = wait_for(all_own_connections, "slon 1's connections to its own database")
    others = [c for c in slon_connections(bed, 1) if c not in own]

    deleted, output = run_runbook(bed, 1)

    assert deleted == 0, output
    assert "slon.local_sync" in output, output
    assert bed.cluster.own_lock_pid(1) == pid
    assert slon.alive()
    assert bed.cluster.lock_held_by(slon) == pid
    bed.cluster.assert_replicates(1, 2)
    # The name pattern the DELETE looks for matches every connection this slon makes to its own
    # database, and none of those node 2's slon keeps to node 1.
    pattern = slon_name_pattern()

    def matched(connections: list[tuple[int, str]]) -> list[bool]:
        return [node.query("select %s ~ %s", (name, pattern))[0][0] for _, name in connections]

    assert all(matched(own)), f"slon 1's connections {own} against {pattern!r}"
    assert others and not any(matched(others)), f"node 2's slon's connections {others} against {pattern!r}"
