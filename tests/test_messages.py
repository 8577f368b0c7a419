"""The final text of what the kit tells an operator, so that a change to the words is deliberate.

Each message says what happened, whether slon will now start, and the one thing to do. Messages
raised where a test already sets the scene are asserted there, in full: the removal reasons
(tests/test_liveness.py), the re-patch WARNING (tests/test_upgrades.py), the migration refusals
(tests/test_upgrades.py), the PL/Python refusal and the hidden-holder NOTICE
(tests/test_install.py), the lock-timeout and no-cluster lines (tests/test_install_locks.py,
tests/test_assert_ok.py). The rest are here.
"""

from __future__ import annotations

import pytest
from psycopg import sql

from slony_nodelock import liveness
from notices import INSTALL_COMMAND
from slonybed.bed import INSTALL_SQL
from test_install import add_stock_like_cluster, server  # noqa: F401  (server is a fixture)

SECOND = 1_000_000
NOV_27_23_50 = 1_795_823_400 * SECOND  # 2026-11-27 23:50:00 UTC
NOV_28_00_10 = NOV_27_23_50 + 20 * 60 * SECOND

ROW0 = {"nl_nodeid": 1, "nl_conncnt": 0, "nl_backendpid": 2225, "xmin": 7}
ROW3 = dict(ROW0, nl_conncnt=3)
KEPT_REASON = "pid 2225 is a client backend named \"slon.local_listen\", as slon's would be, ..."

INSTALL_NOTICE = ('slony-nodelock: patched cluster "c1" (schema "_c1"): replaced cleanupnodelock() and '
                  "terminatenodeconnections(), kept a copy of Slony's own functions in the cluster's schema, added "
                  "the identity triggers; slon keeps running and uses the kit from its next cleanup, nothing to do")
INSTALL_AGAIN = 'slony-nodelock: cluster "c1" (schema "_c1") is already patched; nothing changed'


def notices(result) -> list[str]:
    """The NOTICE and WARNING messages in psql's output, without psql's prefixes."""
    said = []
    for line in result.stderr.splitlines():
        for tag in ("NOTICE:  ", "WARNING:  "):
            if tag in line:
                said.append(line.split(tag, 1)[1])
    return said


def psql_notices(server, script: str) -> list[str]:
    path = server.home / "messages.sql"
    path.write_text("\\set ON_ERROR_STOP 1\n\\set VERBOSITY terse\n" + script)
    result = server.psql_file(path)
    assert result.returncode == 0, result.stderr
    return notices(result)


def test_times_carry_the_date_and_the_zone_so_that_midnight_reads_right():
    row = dict(ROW0)
    record = {"cluster": "_prod", "nl_nodeid": 1, "nl_conncnt": 0, "pid": 2225, "backend_start": NOV_27_23_50,
              "row_xmin": 7, "adopted": False}
    now = {"pid": 2225, "datid": 16384, "datname": "app", "backend_type": "client backend",
           "application_name": "slon.local_listen", "backend_start": NOV_28_00_10}

    assert liveness.judge_row(row, record, now, 1, 16384) == (
        liveness.STALE, "pid 2225 is a client backend started 2026-11-28 00:10:00.000000 UTC, after the lock was "
                        "taken by one started 2026-11-27 23:50:00.000000 UTC")


def test_a_cluster_is_named_by_its_slonik_name_and_its_schema():
    assert liveness.cluster_label("_prod") == 'cluster "prod" (schema "_prod")'
    assert liveness.describe_row("_prod", ROW0) == 'lock row (node 1, conncnt 0, pid 2225) of cluster "prod" (schema "_prod")'


def test_the_removal_notice_says_slon_is_no_longer_in_the_way():
    reason = "no process has pid 2225 any more, so the backend that took the lock has ended"

    assert liveness.cleanup_notice("_prod", ROW0, liveness.STALE, reason) == (
        'slony-nodelock: removed the stale lock row (node 1, conncnt 0, pid 2225) of cluster "prod" (schema "_prod"): '
        "no process has pid 2225 any more, so the backend that took the lock has ended; it no longer stands in "
        "slon's way, nothing to do")
    assert liveness.cleanup_notice("_prod", ROW0, liveness.LIVE, "pid 2225 is the client backend that took the lock") is None


def test_the_kept_notice_says_slon_will_fail_and_where_the_safe_manual_step_is():
    assert liveness.cleanup_notice("_prod", ROW0, liveness.UNSURE, KEPT_REASON) == (
        'slony-nodelock: kept the lock row (node 1, conncnt 0, pid 2225) of cluster "prod" (schema "_prod") for lack '
        "of proof that it is stale: " + KEPT_REASON + "; while it stays, slon for node 1 cannot start (duplicate key "
        'value violates unique constraint "sl_nodelock-pkey"): if that slon is stopped and still fails so, remove '
        'the row as the slony-nodelock README, "A kept lock" says')


def test_a_kept_connection_lock_is_said_to_stop_no_slon():
    assert liveness.cleanup_notice("_prod", ROW3, liveness.UNSURE, KEPT_REASON) == (
        'slony-nodelock: kept the lock row (node 1, conncnt 3, pid 2225) of cluster "prod" (schema "_prod") for lack '
        "of proof that it is stale: " + KEPT_REASON + "; it stops no slon, since each connection takes a new "
        "conncnt, so nothing to do")


def test_the_readme_runbook_has_the_section_the_kept_notice_names():
    from slonybed.bed import REPO
    assert "### A kept lock" in (REPO / "README.md").read_text()


@pytest.mark.slony
def test_python_and_sql_name_clusters_alike(server):  # noqa: F811
    assert server.psql_file(INSTALL_SQL).returncode == 0
    for schema in ("_prod", '_we"ird clu$ter', "noprefix", "_", "_Émile"):
        assert server.query("select slony_nodelock.cluster_label(%s)", (schema,)) == [(liveness.cluster_label(schema),)]


@pytest.mark.slony
def test_the_install_notice_reports_what_was_done_and_nothing_more(server):  # noqa: F811
    add_stock_like_cluster(server, "_c1")

    first = server.psql_file(INSTALL_SQL)
    again = server.psql_file(INSTALL_SQL)
    with server.connect(application_name="slon.local_listen") as slon_like:
        slon_like.execute("insert into _c1.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())")
        # Its record lost (as when triggers were off while it was taken): only adoption is left to do.
        server.query("delete from slony_nodelock.lock_identity")
        adopting = server.psql_file(INSTALL_SQL)

    assert [n for n in notices(first) if "_c1" in n] == [INSTALL_NOTICE]
    assert [n for n in notices(again) if "_c1" in n] == [INSTALL_AGAIN]
    assert [n for n in notices(adopting) if "_c1" in n] == [
        'slony-nodelock: patched cluster "c1" (schema "_c1"): adopted 1 live lock(s) taken before the install '
        "(their holders are recorded now); slon keeps running and uses the kit from its next cleanup, nothing to do"]


@pytest.mark.slony
def test_a_database_without_a_cluster_is_told_the_kit_waits_for_one(server):  # noqa: F811
    result = server.psql_file(INSTALL_SQL)

    assert result.returncode == 0, result.stderr
    assert [n for n in notices(result) if "Slony cluster" in n] == [
        'slony-nodelock: database slony_test holds no Slony cluster, so none was patched; the kit stays installed '
        "and patches each cluster that slonik creates here later (init cluster, store node)"]


@pytest.mark.slony
def test_the_drop_trigger_is_silent_about_the_applications_own_drops(server):  # noqa: F811
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0

    said = psql_notices(server, """
create schema app;
create table app.t (i int4);
create table app.sl_nodelock (nl_nodeid int4, nl_conncnt int4, nl_backendpid int4);
create function app.cleanupnodelock() returns int4 language sql as 'select 0';
create function app.helper() returns int4 language sql as 'select 1';
drop function app.helper();
drop table app.t;
drop function app.cleanupnodelock();
drop table app.sl_nodelock;
create table app.u (i int4);
drop schema app cascade;
""")

    assert [s for s in said if "slony-nodelock" in s] == []


@pytest.mark.slony
def test_the_drop_trigger_speaks_when_a_clusters_function_goes(server):  # noqa: F811
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0

    said = psql_notices(server, "drop function _c1.cleanupnodelock();\n")

    assert said == [
        'slony-nodelock: cleanupnodelock() of cluster "c1" (schema "_c1") in database slony_test was dropped; slon '
        "cannot start on this node until it is back: run " + INSTALL_COMMAND]


UPDATE_FUNCTIONS = 'run slonik "update functions" for this node (the kit patches and saves what it loads)'
INSTALL = "run: " + INSTALL_COMMAND


def problems(server) -> str:
    [(text,)] = server.query("select v.problems from slony_nodelock.verify() v where v.cluster = '_c1'")
    return text


@pytest.mark.slony
def test_verify_gives_the_fix_that_works_for_each_problem(server):  # noqa: F811
    add_stock_like_cluster(server, "_c1")
    server.query("create role kit login superuser")
    assert server.psql_file(INSTALL_SQL, user="kit").returncode == 0
    assert problems(server) is None

    # A saved copy lost: install.sql cannot make one, only Slony's own SQL can.
    server.query("delete from slony_nodelock.stock_function where function_name = 'terminatenodeconnections'")
    assert problems(server) == (
        "Slony's own terminatenodeconnections() is not saved, so uninstall cannot put it back; " + UPDATE_FUNCTIONS)

    # The installer demoted: install.sql keeps each function's owner, so it cannot help either.
    server.query("alter role kit nosuperuser")
    assert problems(server) == (
        "the kit's functions belong to role kit, who is no longer a superuser, so no lock taker can be recorded; "
        "ALTER ROLE kit SUPERUSER, or as a superuser DROP SCHEMA slony_nodelock CASCADE and reinstall: "
        "psql -v ON_ERROR_STOP=1 -d slony_test -f "
        "/usr/share/slony-nodelock/uninstall.sql, then psql -v ON_ERROR_STOP=1 -d slony_test -f "
        "/usr/share/slony-nodelock/install.sql | "
        "Slony's own terminatenodeconnections() is not saved, so uninstall cannot put it back; " + UPDATE_FUNCTIONS)
    server.query("alter role kit superuser")

    # Slony's function back with the re-patch trigger off: install.sql mends both.
    server.query("alter event trigger slony_nodelock_repatch disable;"
                 "create or replace function _c1.cleanupnodelock() returns int4 language plpgsql as"
                 " $$ begin return 0; end $$")
    assert problems(server) == (
        "the event trigger slony_nodelock_repatch is missing or not enabled ALWAYS, so UPDATE FUNCTIONS would undo "
        "the patch and a cluster created later would not be patched; " + INSTALL + " | "
        "cleanupnodelock() is Slony's stock one, which judges a lock by kill(pid, 0) alone; " + INSTALL + " | "
        "Slony's own terminatenodeconnections() is not saved, so uninstall cannot put it back; " + UPDATE_FUNCTIONS)
    server.query("drop trigger slony_nodelock_identity on _c1.sl_nodelock")
    assert ("the identity triggers on sl_nodelock are missing or not enabled ALWAYS, so new lock takers are not "
            "recorded; " + INSTALL) in problems(server).split(" | ")


@pytest.mark.slony
def test_repair_commands_quote_the_database_for_the_shell_they_are_pasted_into(server):  # noqa: F811
    """A database name is anyone's choice of characters: pasted into a shell, the command must run
    psql on that database and nothing else. SQL and Python quote as shlex.quote() does."""
    import shlex
    from slony_nodelock import plpy_glue

    assert server.psql_file(INSTALL_SQL).returncode == 0
    for name in ("app", "it's; rm -rf ~", 'a "b" $(c) `d`'):
        server.query(sql.SQL("create database {}").format(sql.Identifier(name)))
        try:
            assert server.psql_file_in(INSTALL_SQL, name).returncode == 0
            with server.connect(dbname=name) as db:
                [(command,)] = db.execute("select slony_nodelock.install_command()").fetchall()
            assert command == plpy_glue.install_command(name)
            assert shlex.split(command) == ["psql", "-v", "ON_ERROR_STOP=1", "-d", name, "-f",
                                            "/usr/share/slony-nodelock/install.sql"]
        finally:
            server.query(sql.SQL("drop database {}").format(sql.Identifier(name)))


@pytest.mark.slony
def test_a_damaged_kit_is_reported_even_where_no_cluster_is_expected(server):  # noqa: F811
    """A node whose cluster is not created yet (before store node) runs assert_ok(true): a kit that
    could not patch the cluster when it comes must not pass."""
    assert server.psql_file(INSTALL_SQL).returncode == 0
    assert server.query("select slony_nodelock.assert_ok(p_none_expected => true)") == [(0,)]

    server.query("alter event trigger slony_nodelock_forget disable")

    with pytest.raises(Exception) as raised:
        server.query("select slony_nodelock.assert_ok(p_none_expected => true)")
    assert raised.value.diag.message_primary == (
        "slony-nodelock: the kit: the event trigger slony_nodelock_forget is missing or not enabled ALWAYS, so a DROP "
        "... CASCADE that takes a cluster's cleanupnodelock() along would leave slon unable to start; " + INSTALL)
    assert server.query("select cluster, problems is not null from slony_nodelock.verify()") == [(None, True)]
    assert server.psql_file(INSTALL_SQL).returncode == 0
    assert server.query("select slony_nodelock.assert_ok(true)") == [(0,)]


@pytest.mark.slony
def test_a_dropped_failover_function_is_said_to_stop_failover_not_slon(server):  # noqa: F811
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0

    said = psql_notices(server, "drop function _c1.terminatenodeconnections(int4);\n")

    assert said == [
        'slony-nodelock: terminatenodeconnections() of cluster "c1" (schema "_c1") in database slony_test was '
        "dropped; a failover cannot run on this node until it is back: run " + INSTALL_COMMAND]


@pytest.mark.slony
def test_the_drop_trigger_restores_slonys_function_even_when_a_message_helper_is_gone(server):  # noqa: F811
    """With a wording function of the kit dropped, the WARNING must still come, in full, and
    Slony's function must still be put back, or slon could not start."""
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("drop function slony_nodelock.cluster_label(name)")

    said = psql_notices(server, "drop extension plpython3u cascade;\n")

    assert [s for s in said if s.startswith("slony-nodelock: cleanupnodelock() of")] == [
        'slony-nodelock: cleanupnodelock() of cluster "c1" (schema "_c1") in database slony_test was dropped by a '
        "CASCADE; Slony's own version is back so that slon keeps working, but the cluster is NOT patched until you "
        "run " + INSTALL_COMMAND]
    assert server.query("select l.lanname from pg_catalog.pg_proc p join pg_catalog.pg_language l on l.oid = p.prolang"
                        " where p.oid = '_c1.cleanupnodelock()'::regprocedure") == [("plpgsql",)]


@pytest.mark.slony
def test_the_kits_own_problems_are_named_beside_a_schema_it_does_not_patch(server):  # noqa: F811
    server.query("create role app login")
    add_stock_like_cluster(server, "_mine")
    server.query("alter schema _mine owner to app")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("alter event trigger slony_nodelock_forget disable")

    [(cluster, problems)] = server.query("select cluster, problems from slony_nodelock.verify()")

    assert cluster is None  # _mine is no cluster of the kit's (it belongs to app): no row of its own
    assert problems.startswith("the event trigger slony_nodelock_forget is missing or not enabled ALWAYS")
    assert "_mine" not in problems
