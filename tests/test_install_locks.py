"""install.sql and uninstall.sql wait a bounded time for their locks, then fail in one line that
names who holds the lock, having changed nothing; with the lock free, the same command works.

Every session and psql a test starts is closed by a context manager or a subprocess timeout, so
a failed assertion never leaves a lock held or a psql waiting."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL
from test_install import add_stock_like_cluster, fingerprint, server  # noqa: F401  (fixture)
from test_upgrade_from_release import release_0_2_0_install_sql, run_release_0_2_0_install  # noqa: F401  (fixture)

# psql must be done well before this; a script that waits for ever is killed here, and fails.
PSQL_DEADLINE = 30
# What the scripts are given in these tests, and about what they then take at most.
LOCK_TIMEOUT = "1s"
WITHIN = 15
AGAIN = "nothing changed; run the script again when it is free, or give it longer: psql -v lock_timeout=60s ..."


@dataclass
class Holder:
    pid: int
    application_name: str
    xact_start: str

    def described(self) -> str:
        return f"pid {self.pid} ({self.application_name}, in transaction since {self.xact_start})"


@contextmanager
def holding(server, statement: str, application_name: str) -> Iterator[Holder]:
    """A session with an open transaction that has run statement (a LOCK, say); closed, and its
    locks released, on leaving, whatever happened meanwhile."""
    with server.connect(application_name=application_name) as conn:
        conn.execute("begin")
        conn.execute(statement)
        pid, since = conn.execute("select pg_catalog.pg_backend_pid(), pg_catalog.date_trunc('second', xact_start)::text "
                                  "from pg_catalog.pg_stat_activity where pid = pg_catalog.pg_backend_pid()").fetchone()
        yield Holder(pid, application_name, since)


def run_script(server, path: Path, *, lock_timeout: str | None = LOCK_TIMEOUT, user: str = "postgres",
               pgoptions: str | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """psql -v ON_ERROR_STOP=1 [-v lock_timeout=...] -f path, as an operator runs it; returns how it
    ended and how long it took. subprocess.run kills psql if it outlives PSQL_DEADLINE."""
    argv = ["psql", "-X", "-v", "ON_ERROR_STOP=1"]
    if lock_timeout is not None:
        argv += ["-v", f"lock_timeout={lock_timeout}"]
    argv += ["-d", server.conninfo(user=user), "-f", str(path)]
    env = dict(os.environ)
    if pgoptions is not None:
        env["PGOPTIONS"] = pgoptions
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=PSQL_DEADLINE, cwd="/", env=env)
    return result, time.monotonic() - started


def the_one_error(result: subprocess.CompletedProcess) -> str:
    """The message of the one line psql wrote to stderr, which must be an ERROR."""
    assert result.returncode != 0, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    prefix, sep, message = lines[0].partition(" ERROR:  ")
    assert sep and prefix.startswith("psql:"), lines[0]
    return message


def kit_installed(server) -> bool:
    return server.query("select pg_catalog.to_regnamespace('slony_nodelock') is not null") == [(True,)]


def test_install_on_a_fresh_database_gives_up_on_a_held_sl_nodelock_naming_the_writer(server):
    add_stock_like_cluster(server, "_c")
    before = fingerprint(server)
    with ExitStack() as held:
        # What slon's insert of its lock row holds, and what a reader holds: install waits for the
        # first only, so only the first is named.
        writer = held.enter_context(holding(server, 'lock table "_c".sl_nodelock in row exclusive mode', "slon.local_listen"))
        held.enter_context(holding(server, 'select from "_c".sl_nodelock', "slon.local_sync"))

        result, seconds = run_script(server, INSTALL_SQL)

        assert the_one_error(result) == (f"slony-nodelock: waited 1s for a lock on _c.sl_nodelock, held by "
                                         f"{writer.described()}; {AGAIN}")
        assert seconds < WITHIN
        assert fingerprint(server) == before
        assert not kit_installed(server)

    result, seconds = run_script(server, INSTALL_SQL)
    assert result.returncode == 0, result.stderr
    assert server.query("select cluster, patched, problems from slony_nodelock.verify()") == [("_c", True, None)]


def test_an_upgrade_gives_up_on_a_held_sl_nodelock_and_leaves_the_old_release_in_place(
        release_0_2_0_install_sql, server):  # noqa: F811
    add_stock_like_cluster(server, "_c")
    result = run_release_0_2_0_install(server, release_0_2_0_install_sql)
    assert result.returncode == 0, result.stderr
    before = fingerprint(server)
    with holding(server, 'lock table "_c".sl_nodelock in row exclusive mode', "slon.local_listen") as writer:

        result, seconds = run_script(server, INSTALL_SQL)

        assert the_one_error(result) == (f"slony-nodelock: waited 1s for a lock on _c.sl_nodelock, held by "
                                         f"{writer.described()}; {AGAIN}")
        assert seconds < WITHIN
        assert fingerprint(server) == before
        assert server.query("select slony_nodelock.version()") == [("0.2.0",)]

    result, _ = run_script(server, INSTALL_SQL)
    assert result.returncode == 0, result.stderr
    assert server.query("select cluster, patched, problems from slony_nodelock.verify()") == [("_c", True, None)]


def test_uninstall_gives_up_on_a_held_sl_nodelock_naming_every_holder_and_keeps_the_kit(server):
    for schema in ("_a", "_c"):
        add_stock_like_cluster(server, schema)
    result, _ = run_script(server, INSTALL_SQL)
    assert result.returncode == 0, result.stderr
    before = fingerprint(server)
    with ExitStack() as held:
        # DROP TRIGGER waits for readers too, so both are named, in PID order.
        holders = sorted([
            held.enter_context(holding(server, 'lock table "_c".sl_nodelock in row exclusive mode', "slon.local_listen")),
            held.enter_context(holding(server, 'select from "_c".sl_nodelock', "slon.local_sync")),
        ], key=lambda h: h.pid)

        result, seconds = run_script(server, UNINSTALL_SQL)

        assert the_one_error(result) == (f"slony-nodelock: waited 1s for a lock on _c.sl_nodelock, held by "
                                         f"{holders[0].described()}, {holders[1].described()}; {AGAIN}")
        assert seconds < WITHIN
        assert fingerprint(server) == before
        assert server.query("select cluster, patched, problems from slony_nodelock.verify()") == [
            ("_a", True, None), ("_c", True, None)]

    result, _ = run_script(server, UNINSTALL_SQL)
    assert result.returncode == 0, result.stderr
    assert not kit_installed(server)
    assert server.query("select count(*) from pg_catalog.pg_trigger where tgname like 'slony_nodelock%'") == [(0,)]


def test_a_running_install_makes_another_give_up_in_one_line(server):
    # Installs and uninstalls take turns on the kit's registry, which no role but a superuser may
    # lock (an advisory lock, which any role can take, once served).
    add_stock_like_cluster(server, "_c")
    result, _ = run_script(server, INSTALL_SQL)
    assert result.returncode == 0, result.stderr
    before = fingerprint(server)
    with holding(server, "lock table slony_nodelock.migration in share row exclusive mode", "psql") as installer:
        for script in (INSTALL_SQL, UNINSTALL_SQL):
            result, seconds = run_script(server, script)

            assert the_one_error(result) == (
                f"slony-nodelock: waited 1s for a lock on slony_nodelock.migration, held by {installer.described()}; {AGAIN}")
            assert seconds < WITHIN
        # Without -v lock_timeout, the wait is 10 seconds.
        result, seconds = run_script(server, INSTALL_SQL, lock_timeout=None)
        assert "slony-nodelock: waited 10s for a lock on slony_nodelock.migration" in the_one_error(result)
        assert 10 <= seconds < 10 + WITHIN
        assert fingerprint(server) == before

    result, _ = run_script(server, INSTALL_SQL)
    assert result.returncode == 0, result.stderr
    assert kit_installed(server)


def test_no_role_but_a_superuser_can_hold_the_kit_up_and_one_that_can_is_named(server):
    add_stock_like_cluster(server, "_c")
    result, _ = run_script(server, INSTALL_SQL)
    assert result.returncode == 0, result.stderr
    server.query("create role app login")
    with server.connect(user="app") as app:
        for statement in ("select pg_catalog.pg_advisory_lock(pg_catalog.hashtext('slony_nodelock install'))",
                          "begin; lock table slony_nodelock.migration in access share mode"):
            try:
                app.execute(statement)
            except Exception as refused:
                assert "permission denied" in str(refused)
            app.rollback()
        # The advisory lock it took holds nothing up any more.
        result, _ = run_script(server, INSTALL_SQL)
        assert result.returncode == 0, result.stderr
    # A lock that Slony's own grants let a role take (here, reading the cluster's table) still holds
    # an uninstall up: the message says that role is no superuser.
    server.query("grant usage on schema _c to app; grant select on _c.sl_nodelock to app")
    with server.connect(user="app", application_name="app-reader") as app:
        app.execute("begin; lock table _c.sl_nodelock in access share mode")
        result, _ = run_script(server, UNINSTALL_SQL)
        error = the_one_error(result)
        assert error.startswith(f"slony-nodelock: waited 1s for a lock on _c.sl_nodelock, held by pid {app.info.backend_pid} "
                                "(app-reader, role app, which is not a superuser, in transaction since "), error
    assert kit_installed(server)


def test_what_the_guard_refuses_is_refused_at_once_not_after_a_lock_wait(server):
    add_stock_like_cluster(server, "_c")
    server.query("create role alice login")
    before = fingerprint(server)
    with holding(server, 'lock table "_c".sl_nodelock in row exclusive mode', "slon.local_listen"):
        # Waited for, the lock would fail these after a minute, and LOCK TABLE would fail them
        # with its own words (permission denied, read-only transaction) before the guard spoke.
        result, seconds = run_script(server, INSTALL_SQL, lock_timeout="60s", user="alice")
        assert "alice is not a superuser" in the_one_error(result)
        assert seconds < WITHIN

        result, seconds = run_script(server, INSTALL_SQL, lock_timeout="60s",
                                     pgoptions="-c default_transaction_read_only=on")
        assert "this session is read-only" in the_one_error(result)
        assert seconds < WITHIN
        assert fingerprint(server) == before


def upgrade_during_a_cleanup(server, release_0_2_0_sql: str, cleaning: str, then: list[str]) -> str:
    """Install release 0.2.0, open a slon-like transaction holding what a cleanup of the cluster
    cleaning holds half-way (its rows FOR UPDATE: ROW SHARE on its sl_nodelock; then the records
    read: ACCESS SHARE on lock_identity, before any delete), start today's install.sql (a pending
    migration: it alters lock_identity), let it find a lock taken and retry, then run the
    statements then in the transaction, as the cleanup would go on, and commit. Returns psql's
    stderr after asserting that the upgrade succeeded."""
    assert run_release_0_2_0_install(server, release_0_2_0_sql).returncode == 0
    argv = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-v", "lock_timeout=20s", "-d", server.conninfo(),
            "-f", str(INSTALL_SQL)]
    with server.connect(application_name="slon.local_listen") as slon:
        slon.execute("set statement_timeout = '20s'")
        slon.execute("begin")
        slon.execute(f"select from {cleaning}.sl_nodelock for update")
        slon.execute("select from slony_nodelock.lock_identity")
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/") as upgrade:
            try:
                deadline = time.monotonic() + WITHIN
                # Until it finds a lock taken: it waits for it, or sleeps before trying again.
                while not server.query("select 1 from pg_catalog.pg_stat_activity where application_name = 'psql'"
                                       " and (wait_event = 'PgSleep' or wait_event_type = 'Lock')"):
                    assert upgrade.poll() is None, upgrade.communicate()
                    assert time.monotonic() < deadline, "the upgrade never waited for the cleanup"
                    time.sleep(0.02)
                for statement in then:
                    slon.execute(statement)
                slon.execute("commit")
                _, errors = upgrade.communicate(timeout=PSQL_DEADLINE)
            finally:
                if upgrade.poll() is None:
                    upgrade.kill()
    assert upgrade.returncode == 0, errors
    assert "deadlock detected" not in server.logfile.read_text()
    return errors


def test_an_upgrade_with_a_migration_never_deadlocks_with_a_slon_cleanup_in_progress(
        release_0_2_0_install_sql, server):  # noqa: F811
    """Migration 0003 alters the kit's table lock_identity. A slon cleanup reads it after locking
    its sl_nodelock rows, and then deletes or inserts a lock row: had the upgrade taken sl_nodelock
    in SHARE ROW EXCLUSIVE and then waited for lock_identity, slon's write and the upgrade would
    wait for each other, and one of them would die of a deadlock."""
    add_stock_like_cluster(server, "_c")

    # slon's start-up, as cleanupNodelock() is followed by taking its own lock.
    upgrade_during_a_cleanup(server, release_0_2_0_install_sql, '"_c"',
                             ['insert into "_c".sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())'])

    assert server.query('select nl_nodeid, nl_conncnt from "_c".sl_nodelock') == [(1, 0)]
    assert server.query("select slony_nodelock.version()")[0][0] != "0.2.0"
    assert server.query("select cluster, patched, problems from slony_nodelock.verify()") == [("_c", True, None)]


def test_uninstall_gives_up_on_a_reader_of_the_kits_tables_in_one_line(server):
    """uninstall drops the kit's tables: an idle transaction that has read one (a monitoring
    session that called status(), say) is named, and nothing changes."""
    add_stock_like_cluster(server, "_c")
    result, _ = run_script(server, INSTALL_SQL)
    assert result.returncode == 0, result.stderr
    before = fingerprint(server)
    with holding(server, "select from slony_nodelock.lock_identity", "monitoring") as reader:

        result, seconds = run_script(server, UNINSTALL_SQL)

        assert the_one_error(result) == (f"slony-nodelock: waited 1s for a lock on slony_nodelock.lock_identity, "
                                         f"held by {reader.described()}; {AGAIN}")
        assert seconds < WITHIN
        assert fingerprint(server) == before


def test_an_upgrade_never_deadlocks_with_a_cleanup_that_reads_another_clusters_locks(
        release_0_2_0_install_sql, server):  # noqa: F811
    """A cleanup of cluster _z reads _a's sl_nodelock too (record_is_current(), for records of
    _a naming its PIDs). Had the upgrade held _a while waiting for _z, each would wait for the
    other."""
    for schema in ("_a", "_z"):
        add_stock_like_cluster(server, schema)

    upgrade_during_a_cleanup(server, release_0_2_0_install_sql, '"_z"',
                             ['select from "_a".sl_nodelock',
                              'insert into "_z".sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())'])

    assert server.query("select cluster, patched, problems from slony_nodelock.verify()") == [
        ("_a", True, None), ("_z", True, None)]
