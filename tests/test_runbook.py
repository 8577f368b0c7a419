"""The README's runbook blocks, run as written: the psql blocks between
<!-- runbook: manual delete --> and <!-- runbook: end manual delete --> (a kept lock), and between
<!-- runbook: terminate live holder --> and <!-- runbook: end terminate live holder --> (a lock
the kit judges live whose slon is gone), read from README.md at test time, with only their \\set
lines set for the bed, run the way a DBA runs them (psql -X -v ON_ERROR_STOP=1 -f) against the
node's own database.

The first must remove the node's own lock row that the kit keeps for lack of proof once no slon
runs for the node, so that slon starts again; and delete nothing while that node's slon runs,
though the kit then keeps the running slon's row for the very same reason ('unsure'). Its check
must list only the connections the DELETE looks for, not those other nodes' slons keep here.

The second must end the backend of a frozen slon (its whole session stopped, as when its host
freezes: its backends stay connected and the kit rightly judges its lock live), so that a new slon
starts; and end nothing once another backend holds the lock."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime

from psycopg import sql

from conftest import requires_pid_control
from slonybed.bed import REPO
from slonybed.processes import session_states
from slonybed.slony import DUPLICATE_LOCK

README = REPO / "README.md"
START_MARK = "<!-- runbook: manual delete -->"
END_MARK = "<!-- runbook: end manual delete -->"
LIVE_START_MARK = "<!-- runbook: terminate live holder -->"
LIVE_END_MARK = "<!-- runbook: end terminate live holder -->"
STATUS = ("select verdict, holder_application_name, holder_backend_type from slony_nodelock.status(%s)"
          " where node = %s and conncnt = 0")
# The names slon 2.2 gives the connections a node's slon makes to its own database (slon's
# sources: local_listen.c, sync_thread.c, cleanup_thread.c, monitor_thread.c, remote_worker.c).
OWN_DATABASE_CONNECTIONS = {"slon.local_listen", "slon.local_sync", "slon.local_cleanup",
                            "slon.local_monitor", "slon.remoteWorkerThread_2"}


def runbook_block(start: str = START_MARK, end: str = END_MARK) -> str:
    """The fenced sql code between two markers, exactly as README.md has it now."""
    text = README.read_text()
    assert text.count(start) == 1 and text.count(end) == 1, f"README.md lost its runbook markers {start} {end}"
    between = text[text.index(start) + len(start):text.index(end)]
    fenced = re.fullmatch(r"\s*```sql\n(.*?)```\s*", between, re.S)
    assert fenced is not None, f"the runbook block is not one fenced sql block:\n{between}"
    return fenced.group(1)


def with_settings(block: str, settings: dict[str, str]) -> str:
    """The block with its \\set lines for these variables set to these values, the only edit a DBA
    makes; each must be there exactly once."""
    for variable, value in settings.items():
        block, count = re.subn(rf"^\\set {variable} .+$", lambda _: f"\\set {variable} {value}", block, flags=re.M)
        assert count == 1, f"the runbook block has {count} '\\set {variable}' lines, not 1:\n{block}"
    return block


def runbook_for(cluster_schema: str, node_id: int) -> str:
    """The kept-lock block with its two \\set lines set for this cluster and node."""
    return with_settings(runbook_block(), {"cluster_schema": cluster_schema, "node": str(node_id)})


def slon_name_pattern() -> str:
    """The regular expression the kept-lock block uses for a node's own slon connections: its check
    (step 1) lists by the very pattern its DELETE looks for."""
    patterns = re.findall(r"application_name ~ '([^']*)'", runbook_block())
    assert len(patterns) == 2 and len(set(patterns)) == 1, (
        f"the runbook block's check and DELETE must use one pattern for slon's connections: {patterns}")
    return patterns[0]


def run_psql(bed, node_id: int, script_text: str, name: str) -> str:
    """Run a script with psql against node_id's database, as a DBA does; psql's output."""
    script = bed.root / f"{name}-node{node_id}-{time.monotonic_ns()}.sql"
    script.write_text(script_text)
    result = bed.node(node_id).psql_file(script)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"psql failed ({result.returncode}):\n{output}"
    return output


def run_runbook(bed, node_id: int) -> tuple[int, str]:
    """Run the kept-lock block with psql against node_id's database; (rows deleted, psql's output)."""
    output = run_psql(bed, node_id, runbook_for(bed.cluster.schema, node_id), "runbook")
    tags = re.findall(r"^DELETE (\d+)$", output, re.M)
    assert len(tags) == 1, f"expected one DELETE tag:\n{output}"
    return int(tags[0]), output


def run_live_runbook(bed, node_id: int, holder: tuple[int, datetime] | None = None) -> tuple[list[int], str]:
    """Run the live-holder block against node_id's database, as README's step 1 says (only
    cluster_schema and node set) or, given holder (pid, backend start as step 1 showed them), as
    its step 2 says; (the PIDs its last query ended, psql's output)."""
    settings = {"cluster_schema": bed.cluster.schema, "node": str(node_id)}
    if holder is not None:
        settings |= {"holder_pid": str(holder[0]), "holder_backend_start": f"'{holder[1].isoformat()}'"}
    output = run_psql(bed, node_id, with_settings(runbook_block(LIVE_START_MARK, LIVE_END_MARK), settings),
                      "live-runbook")
    # psql's aligned output: the last table is the step's, "  pid | terminated", one line per row.
    headers = list(re.finditer(r"^\s*pid\s*\|\s*terminated\s*$", output, re.M))
    assert headers, output
    last = output[headers[-1].start():]
    footer = re.search(r"^\((\d+) rows?\)$", last, re.M)
    assert footer is not None, output
    ended = [int(pid) for pid, done in re.findall(r"^\s*(\d+) \| ([tf])$", last, re.M) if done == "t"]
    assert len(ended) == int(footer.group(1)), f"the step listed a backend it did not end:\n{output}"
    return ended, output


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


def freeze_between_transactions(bed, slon, timeout: float = 60) -> list[tuple[int, str, str]]:
    """SIGSTOP slon's whole session (watchdog and worker), as a host that freezes stops it: its
    connections stay open, with no one at the other end. Thawed and frozen again until none of
    its connections to its own database is inside a transaction, so that no lock a frozen
    transaction holds stands in the new slon's way (README: end such a connection too). Returns
    (pid, application_name, state) of those connections, all 'idle'."""
    node, session = bed.node(slon.node_id), slon.process.pid
    deadline = time.monotonic() + timeout
    while True:
        os.killpg(session, signal.SIGSTOP)
        wait_for(lambda: (states := session_states(session)) and set(states.values()) == {"T"},
                 f"slon {slon.node_id}'s session {session} to stop", timeout=10)
        # A statement the client sent before it stopped still completes; one waiting for a lock
        # that another frozen connection holds never does.
        settle = time.monotonic() + 3
        while True:
            own = node.query(
                "select pid, application_name, state from pg_catalog.pg_stat_activity"
                " where datname = pg_catalog.current_database() and backend_start >= %s"
                " and application_name ~ %s order by 2", (slon.started_at, slon_name_pattern()))
            if own and all(state != "active" for _, _, state in own) or time.monotonic() > settle:
                break
            time.sleep(0.05)
        if own and all(state == "idle" for _, _, state in own):
            return own
        assert time.monotonic() < deadline, f"slon {slon.node_id} never froze between transactions: {own}"
        os.killpg(session, signal.SIGCONT)
        time.sleep(0.2)


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
    # Step 1's check lists the holder, as it should, and none of node 2's slon's connections,
    # which are here in every working cluster.
    listed = [name for _, name in others if name in output]
    assert not listed, f"step 1 lists node 2's slon's connections {listed}:\n{output}"
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
    listed = [name for _, name in others if name in output]
    assert not listed, f"step 1 lists node 2's slon's connections {listed}:\n{output}"
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


def idle_since(bed, node_id: int, pids: list[int]) -> dict[int, datetime]:
    """{pid: state_change} of these backends of node_id's server."""
    return dict(bed.node(node_id).query(
        "select pid, state_change from pg_catalog.pg_stat_activity where pid = any(%s)", (pids,)))


LIVE_ROW = ("select verdict, pid, recorded_backend_start, holder_backend_start from slony_nodelock.status(%s)"
            " where node = %s and conncnt = 0")


def test_runbook_ends_the_live_holder_of_a_frozen_slon_and_slon_starts(fixed_bed):
    bed, node = fixed_bed, fixed_bed.node(1)
    frozen = bed.slons[1]
    holder = bed.cluster.wait_slon_holds_lock(frozen)
    try:
        connections = freeze_between_transactions(bed, frozen)
        # What a frozen host leaves: the slon's backends stay connected, and the kit rightly
        # judges its lock live, which it keeps without a word.
        assert (holder, "slon.local_listen", "idle") in connections
        frozen_at = idle_since(bed, 1, [pid for pid, _, _ in connections])
        [(verdict, pid, recorded, started)] = node.query(LIVE_ROW, (bed.cluster.schema, 1))
        assert (verdict, pid) == ("live", holder) and recorded == started
        # The situation: a new slon for node 1 is refused with the duplicate key, and the
        # kept-lock DELETE, rightly, removes nothing.
        refused = bed.start_slon(1)
        assert refused.wait_exit(timeout=30) is not None, "slon for node 1 ran beside the frozen one"
        assert DUPLICATE_LOCK in refused.log
        assert "kept the lock row (node 1, conncnt 0" not in refused.log
        assert run_runbook(bed, 1)[0] == 0
        assert bed.cluster.own_lock_pid(1) == holder
        # What step 1 has the DBA compare: the frozen slon's connections do nothing any more.
        assert idle_since(bed, 1, list(frozen_at)) == frozen_at

        # Step 1: the block as it is ends nothing, and shows the row live and its holder.
        ended, output = run_live_runbook(bed, 1)
        assert ended == [], output
        assert "live" in output and str(holder) in output and "slon.local_listen" in output, output
        # Step 2: with the holder's pid and start time as step 1 showed them.
        ended, output = run_live_runbook(bed, 1, (holder, started))
        assert ended == [holder], output
        wait_for(lambda: not node.query("select 1 from pg_catalog.pg_stat_activity where pid = %s", (holder,)),
                 f"the frozen slon's backend {holder} to end", timeout=15)
        assert frozen.alive(), "the frozen slon itself is untouched"
        # Step 3: slon starts, its cleanup removes the row, and it takes the lock.
        slon = bed.start_slon(1)
        taken = bed.cluster.wait_slon_holds_lock(slon)
        assert taken != holder
        slon.wait_log(f"removed the stale lock row (node 1, conncnt 0, pid {holder})")
        assert DUPLICATE_LOCK not in slon.log
        bed.cluster.assert_replicates(1, 2)

        # Run again with step 1's values, too late: the kit judges the new slon's lock live in
        # the same way, but its holder is another backend, so the block ends nothing.
        [(verdict, pid, recorded, now_started)] = node.query(LIVE_ROW, (bed.cluster.schema, 1))
        assert (verdict, pid) == ("live", taken) and recorded == now_started != started
        ended, output = run_live_runbook(bed, 1, (holder, started))
        assert ended == [], output
        assert slon.alive() and bed.cluster.lock_held_by(slon) == taken
        bed.cluster.assert_replicates(1, 2)
    finally:
        # SIGKILL ends a stopped process; SIGTERM would wait for a SIGCONT.
        frozen.kill()
    assert not frozen.alive()
