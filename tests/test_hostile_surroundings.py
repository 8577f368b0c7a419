"""Install, uninstall, cleanupNodelock() and verify() where writing is impossible: a read-only
session and a real hot standby. Each gets its exact message, and the catalogs do not change."""

from __future__ import annotations

import subprocess
import time

import psycopg
import pytest
from psycopg import sql

from slonybed import SlonyBed
from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL
from test_install import add_stock_like_cluster, error_lines, fingerprint, gone_backend_pid
from notices import no_process

READ_ONLY = "-c default_transaction_read_only=on"
READ_ONLY_SCRIPT = ("slony-nodelock: this session is read-only (a read-only transaction); "
                    "run the script in a read-write session: PGOPTIONS='-c default_transaction_read_only=off' psql ...")
STANDBY_INSTALL = ("slony-nodelock: this server is a hot standby; run the script on its primary, and the "
                   "standby gets the kit by replication")
STANDBY_UNINSTALL = ("slony-nodelock: this server is a hot standby; run the script on its primary, and the "
                     "standby follows by replication")
VERIFY = "select patched, failover_patched, problems from slony_nodelock.verify()"


def psql(server, script, options: str | None = None) -> subprocess.CompletedProcess:
    conninfo = server.conninfo(options=options) if options else server.conninfo()
    return subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-f", str(script)],
                          capture_output=True, text=True, timeout=120)


def errors(result) -> list[str]:
    """The ERROR lines' messages, without psql's file and line prefix."""
    return [line.split("ERROR:  ", 1)[1] for line in error_lines(result)]


def state(server, schema: str = "_c1") -> tuple:
    """The catalogs' fingerprint and the cluster's lock rows."""
    return fingerprint(server), server.query(
        sql.SQL("select * from {}.sl_nodelock order by 1, 2").format(sql.Identifier(schema)))


def sql_error(server, statement: str, options: str) -> str:
    with pytest.raises(psycopg.Error) as caught:
        with server.connect(options=options) as conn:
            conn.execute(statement)
    return str(caught.value).splitlines()[0]


@pytest.fixture
def server():
    with SlonyBed(nodes=1) as bed:
        add_stock_like_cluster(bed.node(1), "_c1")
        yield bed.node(1)


def test_a_read_only_session_gets_one_line_from_each_script_and_nothing_changes(server):
    before = state(server)
    result = psql(server, INSTALL_SQL, READ_ONLY)
    assert result.returncode == 3 and errors(result) == [READ_ONLY_SCRIPT], result.stderr
    assert state(server) == before
    # With nothing to remove, uninstall says so, read-only or not (fleet-wide scripts run it anywhere).
    result = psql(server, UNINSTALL_SQL, READ_ONLY)
    assert result.returncode == 0 and "slony-nodelock is not installed in database slony_test; nothing to do" \
        in result.stderr, result.stderr

    assert psql(server, INSTALL_SQL).returncode == 0
    server.query("insert into _c1.sl_nodelock values (1, 0, %s)", (gone_backend_pid(server),))
    installed = state(server)
    verdict = server.query(VERIFY)
    result = psql(server, UNINSTALL_SQL, READ_ONLY)
    assert result.returncode == 3 and errors(result) == [READ_ONLY_SCRIPT], result.stderr
    assert state(server) == installed

    # cleanupNodelock() takes its rows FOR UPDATE first, as Slony's own does: refused, in one line,
    # and the stale row stays for slon's next, read-write, cleanup.
    assert sql_error(server, "select _c1.cleanupnodelock()", READ_ONLY) == (
        'slony-nodelock: the locks of cluster "c1" (schema "_c1") cannot be changed in a read-only transaction; '
        "nothing changed: run it in a read-write session")
    assert state(server) == installed
    # verify() only reads.
    with server.connect(options=READ_ONLY) as conn:
        assert conn.execute(VERIFY).fetchall() == verdict
    assert state(server) == installed


def test_a_hot_standby_gets_one_line_from_each_script_and_nothing_changes():
    with SlonyBed(nodes=1) as bed:
        primary = bed.node(1)
        add_stock_like_cluster(primary, "_c1")
        standby = bed.add_standby(1)
        wait_replayed(primary, standby)

        before = state(standby)
        result = psql(standby, INSTALL_SQL)
        assert result.returncode == 3 and errors(result) == [STANDBY_INSTALL], result.stderr
        assert state(standby) == before

        assert psql(primary, INSTALL_SQL).returncode == 0
        primary.query("insert into _c1.sl_nodelock values (1, 0, %s)", (gone_backend_pid(primary),))
        wait_replayed(primary, standby)
        installed = state(standby)
        assert installed == state(primary)
        result = psql(standby, UNINSTALL_SQL)
        assert result.returncode == 3 and errors(result) == [STANDBY_UNINSTALL], result.stderr
        assert sql_error(standby, "select _c1.cleanupnodelock()", "-c application_name=test") == (
            'slony-nodelock: cluster "c1" (schema "_c1") is on a hot standby here, where no lock can be changed; '
            "nothing changed: slon runs against the primary")
        assert standby.query(VERIFY) == primary.query(VERIFY)
        assert state(standby) == installed


def wait_replayed(primary, standby, timeout: float = 30) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    [(target,)] = primary.query("select pg_catalog.pg_current_wal_lsn()::text")
    deadline = time.monotonic() + timeout
    while not standby.query("select pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))[0][0]:
        assert time.monotonic() < deadline, f"the standby did not replay up to {target} in {timeout}s"
        time.sleep(0.1)


DAMAGES = {
    "identity trigger dropped": ("drop trigger slony_nodelock_identity on _c1.sl_nodelock",
                                 "the identity triggers on sl_nodelock are missing or not enabled ALWAYS"),
    "identity trigger disabled": ("alter table _c1.sl_nodelock disable trigger slony_nodelock_identity",
                                  "the identity triggers on sl_nodelock are missing or not enabled ALWAYS"),
    "truncate trigger enabled for origin sessions only": (
        "alter table _c1.sl_nodelock enable trigger slony_nodelock_truncate",
                                  "the identity triggers on sl_nodelock are missing or not enabled ALWAYS"),
    "event trigger dropped": ("drop event trigger slony_nodelock_repatch",
                              "the event trigger slony_nodelock_repatch is missing or not enabled ALWAYS, so UPDATE "
                              "FUNCTIONS would undo the patch"),
    "trigger function dropped": ("drop function slony_nodelock.track_lock_identity() cascade",
                                 "the trigger function slony_nodelock.track_lock_identity() is missing"),
}


def test_a_damaged_install_is_named_by_verify_and_repaired_by_installing_again(server):
    assert psql(server, INSTALL_SQL).returncode == 0
    for damage, (statement, named) in DAMAGES.items():
        server.query(statement)
        [(patched, problems)] = server.query("select patched, problems from slony_nodelock.verify()")
        assert problems is not None and named in problems, f"{damage}: {problems}"
        result = psql(server, INSTALL_SQL)
        assert result.returncode == 0, f"{damage}: {result.stderr}"
        assert server.query(VERIFY) == [(True, True, None)], damage


def test_lock_rows_with_pids_no_process_can_have_are_removed_saying_why_and_never_break_install(server):
    """NULL, zero, negative and above pid_max: Slony's own cleanup keeps NULL and 0 forever."""
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    odd = [None, 0, -5, pid_max + 1]
    for pid in odd:
        server.query("insert into _c1.sl_nodelock (nl_nodeid, nl_backendpid) values (1, %s)", (pid,))
    result = psql(server, INSTALL_SQL)
    assert result.returncode == 0, result.stderr
    assert server.query("select pg_catalog.count(*) from slony_nodelock.lock_identity") == [(0,)]
    assert [r[0] for r in server.query("select verdict from slony_nodelock.status('_c1')")] == ["stale"] * 4
    with server.connect() as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("select _c1.cleanupnodelock()")
    reasons = sorted(n.split(": ", 2)[2].removesuffix("; it no longer stands in slon's way, nothing to do") for n in notices)
    assert reasons == sorted([
        "pid NULL is no process id (NULL), so no backend holds this lock",
        "pid 0 is no process id (not positive), so no backend holds this lock",
        "pid -5 is no process id (not positive), so no backend holds this lock",
        no_process(pid_max + 1),
    ]), notices
    assert server.query("select pg_catalog.count(*) from _c1.sl_nodelock") == [(0,)]
    assert server.query(VERIFY) == [(True, True, None)]
