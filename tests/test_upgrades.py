"""The fix through Slony's own DDL (UPDATE FUNCTIONS, init cluster, store node, uninstall node),
and through our own migrations."""

from __future__ import annotations

import hashlib

import pytest

from conftest import load_generator
from slonybed.postgres import PG_BIN
from slonybed.processes import run
from slony_nodelock.liveness import LOGIC_VERSION
from slonybed import SlonyBed
from slonybed.bed import INSTALL_SQL, REPO
from slony_nodelock import __version__
from test_install import FUNCTION_STATE, assert_refused, fingerprint, run_generated

UPDATE_FUNCTIONS = "update functions (id = 1);"
SLONY_COMMENT = "Clean up stale entries when restarting slon"


def verify(server) -> list[tuple]:
    return server.query("select cluster, patched, logic_version, identity_recording, stock_saved, problems "
                        "from slony_nodelock.verify()")


def all_ok(server, cluster: str = "_bed") -> None:
    assert verify(server) == [(cluster, True, LOGIC_VERSION, True, True, None)]
    assert server.query("select slony_nodelock.assert_ok()") == [(1,)]


@pytest.fixture
def one_node():
    """A one-node cluster _bed (init cluster only): enough for Slony's DDL, no slon needed."""
    with SlonyBed(nodes=1) as bed:
        bed.cluster.slonik("init cluster (id = 1, comment = 'node 1');")
        yield bed


def test_update_functions_keeps_the_fix_and_slon_survives_pid_reuse(bed):
    bed.build_replicating()
    bed.install_fix(1)

    bed.cluster.slonik(UPDATE_FUNCTIONS)

    all_ok(bed.node(1))
    assert bed.node(1).query("select distinct command_tag, succeeded from slony_nodelock.repatch_log") == [
        ("CREATE FUNCTION", True)]
    # After a power cut the stale PID is the checkpointer's, which stock Slony would take for slon.
    bed.reboot_host_of(1)
    stale = bed.node(1).pid_of("checkpointer")
    bed.cluster.point_lock_at(1, stale)
    slon = bed.start_slon(1)
    assert bed.cluster.wait_slon_holds_lock(slon) != stale
    slon.wait_log(f"pid {stale} is this server's checkpointer, not a client backend")
    bed.cluster.assert_replicates(1, 2)


def test_clusters_created_after_install_are_patched_without_another_install(bed):
    for n in (1, 2):
        assert "holds no Slony cluster, so none was patched" in bed.install_fix(n)

    bed.build_replicating()  # init cluster on node 1, store node 2, paths, set, subscribe

    for n in (1, 2):
        all_ok(bed.node(n))
        # Slony creates terminateNodeConnections() long before cleanupNodelock(): no false alarm.
        assert bed.node(n).query("select count(*) from slony_nodelock.repatch_log where not succeeded") == [(0,)]
        assert "is NOT patched" not in bed.node(n).logfile.read_text()
        state = bed.node(n).query(FUNCTION_STATE, ("_bed",))[0]
        assert state[1] == "plpython3u" and state[4].startswith("slony-nodelock:")
        saved = bed.node(n).query("select function_name, language, comment from slony_nodelock.stock_function"
                                  " order by 1")
        assert saved == [("cleanupnodelock", "plpgsql", SLONY_COMMENT), ("terminatenodeconnections", "plpgsql",
                         "terminates all backends that have registered to be from the given node")]
    bed.cluster.assert_replicates(1, 2)
    # Every lock taken since, by slon's own INSERT or a remote slon's registerNodeConnection(),
    # has its taker recorded.
    locks = bed.node(1).query("""
        select l.nl_conncnt > 0, i.pid is not null from "_bed".sl_nodelock l
          left join slony_nodelock.lock_identity i on i.cluster_schema = '_bed'
           and (i.nl_nodeid, i.nl_conncnt, i.pid) = (l.nl_nodeid, l.nl_conncnt, l.nl_backendpid)""")
    assert (True, True) in locks and (False, True) in locks
    assert all(recorded for _, recorded in locks), locks


def repatch_failed(error: str) -> str:
    """The re-patch trigger's WARNING when Slony's UPDATE FUNCTIONS re-created cleanupnodelock() and
    patching it again failed with error."""
    return ("slony-nodelock: Slony's CREATE FUNCTION of cleanupnodelock() in database slony_test went through, but "
            f'cluster "bed" (schema "_bed") is NOT patched any more: re-patching it failed ({error}). slon here now '
            "runs Slony's stock cleanupnodelock(), which can refuse to start after a reboot; patch again with: "
            'psql -v ON_ERROR_STOP=1 -d slony_test -f /usr/share/slony-nodelock/install.sql')


def test_a_failing_repatch_warns_but_never_fails_update_functions(one_node):
    server = one_node.node(1)
    one_node.install_fix(1)
    saved_before = server.query("select saved_at from slony_nodelock.stock_function where function_name = 'cleanupnodelock'")
    # A damaged install: the function that builds the patch is gone.
    server.query("alter function slony_nodelock.patched_source(name, name) rename to damaged")

    output = one_node.cluster.slonik(UPDATE_FUNCTIONS)  # raises if slonik fails

    # slonik silences the server's messages while it loads Slony's SQL; the WARNING is in the log.
    assert ("WARNING:  " + repatch_failed("function slony_nodelock.patched_source(name, name) does not exist")
            in server.logfile.read_text()), output
    [(cluster, patched, _, _, _, problems)] = verify(server)
    assert (cluster, patched) == ("_bed", False)
    assert problems.startswith("cleanupnodelock() is Slony's stock one, which judges a lock by kill(pid, 0) alone; "
                               'run: psql -v ON_ERROR_STOP=1 -d slony_test -f /usr/share/slony-nodelock/install.sql')
    assert server.query("select distinct succeeded from slony_nodelock.repatch_log") == [(False,)]
    # What Slony just loaded is still remembered for uninstall.
    assert server.query("select saved_at from slony_nodelock.stock_function where function_name = 'cleanupnodelock'") > saved_before
    with pytest.raises(Exception, match=r'cluster "bed" \(schema "_bed"\): cleanupnodelock\(\) is Slony\'s stock one'):
        server.query("select slony_nodelock.assert_ok()")

    server.query("alter function slony_nodelock.damaged(name, name) rename to patched_source")
    one_node.install_fix(1)
    all_ok(server)


def test_a_failing_repatch_still_warns_and_saves_slonys_function_without_its_wording_helpers(one_node):
    server = one_node.node(1)
    one_node.install_fix(1)
    saved_before = server.query("select saved_at from slony_nodelock.stock_function where function_name = 'cleanupnodelock'")
    server.query("alter function slony_nodelock.patched_source(name, name) rename to damaged;"
                 "drop function slony_nodelock.cluster_label(name); drop function slony_nodelock.install_command(text)")

    one_node.cluster.slonik(UPDATE_FUNCTIONS)  # raises if slonik fails

    assert ("WARNING:  slony-nodelock: Slony's CREATE FUNCTION of cleanupnodelock() in database slony_test went "
            'through, but cluster "bed" (schema "_bed") is NOT patched any more: re-patching it failed (function '
            "slony_nodelock.patched_source(name, name) does not exist). slon here now runs Slony's stock "
            "cleanupnodelock(), which can refuse to start after a reboot; patch again with: "
            "psql -v ON_ERROR_STOP=1 -d slony_test -f /usr/share/slony-nodelock/install.sql") in server.logfile.read_text()
    assert server.query("select saved_at from slony_nodelock.stock_function where function_name = 'cleanupnodelock'") > saved_before
    assert server.query("select detail from slony_nodelock.repatch_log where not succeeded and command_tag = 'CREATE FUNCTION'"
                        " limit 1") == [("function slony_nodelock.patched_source(name, name) does not exist",)]


def test_a_recreated_sl_nodelock_is_flagged_and_install_gives_it_identity_recording_back(one_node):
    server = one_node.node(1)
    one_node.install_fix(1)

    server.query('alter table "_bed".sl_nodelock rename to sl_nodelock_before;'
                 'create table "_bed".sl_nodelock (like "_bed".sl_nodelock_before including all)')

    [(_, _, _, identity_recording, _, problems)] = verify(server)
    assert not identity_recording and "the identity triggers on sl_nodelock are missing" in problems
    one_node.install_fix(1)
    all_ok(server)
    assert server.query("select count(*) from pg_catalog.pg_trigger where tgrelid = '\"_bed\".sl_nodelock'::regclass"
                        " and tgname like 'slony_nodelock%' and tgenabled = 'A'") == [(2,)]


def test_a_forged_guard_setting_cannot_switch_re_patching_off(one_node):
    # Release 0.2.0 stood aside while slony_nodelock.patching was on, and any session could set
    # it: from PGOPTIONS, a conninfo's options, ALTER SYSTEM or ALTER DATABASE. There is no such
    # setting now; our own DDL is known by its result.
    server = one_node.node(1)
    one_node.install_fix(1)
    server.query("alter database slony_test set slony_nodelock.patching = 'on'")

    one_node.cluster.slonik(UPDATE_FUNCTIONS, pgoptions="-c slony_nodelock.patching=on")

    all_ok(server)
    assert server.query("select distinct command_tag, succeeded from slony_nodelock.repatch_log") == [
        ("CREATE FUNCTION", True)]


def test_uninstall_node_leaves_nothing_of_ours_pointing_at_the_dropped_schema(one_node):
    server = one_node.node(1)
    one_node.install_fix(1)
    with server.connect(application_name="slon.local_listen") as holder:
        holder.execute('insert into "_bed".sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())')
        assert server.query("select count(*) from slony_nodelock.lock_identity") == [(1,)]

    one_node.cluster.slonik("uninstall node (id = 1);")

    assert server.query("select pg_catalog.to_regnamespace('_bed')") == [(None,)]
    for table in ("stock_function", "lock_identity", "repatch_log"):
        assert server.query(f"select count(*) from slony_nodelock.{table}") == [(0,)], table
    assert server.query("select count(*) from pg_catalog.pg_trigger where tgname like 'slony_nodelock%'") == [(0,)]
    assert verify(server) == []
    assert server.query("select slony_nodelock.assert_ok(p_none_expected => true)") == [(0,)]


def test_the_migration_chain_keeps_data_and_refuses_what_it_does_not_know(one_node):
    server = one_node.node(1)
    assert run_generated(server, "migrations-0001.sql", load_generator().build_migrations_only(1)).returncode == 0
    assert server.query("select version from slony_nodelock.migration") == [(1,)]
    server.query("insert into slony_nodelock.stock_function (cluster_schema, definition, prosrc, language, owner)"
                 " values ('_kept', 'create function ...', 'begin end', 'plpgsql', 'postgres');"
                 "insert into slony_nodelock.lock_identity values ('_kept', 1, 0, 4242, '2026-01-01 00:00:00+00')")

    one_node.install_fix(1)

    assert server.query("select version from slony_nodelock.migration order by 1") == [(1,), (2,), (3,), (4,), (5,)]
    assert server.query("select prosrc from slony_nodelock.stock_function where cluster_schema = '_kept'") == [
        ("begin end",)]
    assert server.query("select pid from slony_nodelock.lock_identity where cluster_schema = '_kept'") == [(4242,)]
    all_ok(server)

    server.query("insert into slony_nodelock.migration (version, name, script_sha256) values (6, '0006_future', 'x')")
    before = fingerprint(server)
    assert_refused(server, server.psql_file(INSTALL_SQL),
                   f"ERROR:  slony-nodelock: database slony_test holds migration 6 (installed release: {__version__}), "
                   f"newer than this script, release {__version__}, whose newest migration is 5; nothing changed. "
                   f"Install with the install.sql of release {__version__} or later; to go back to {__version__}, "
                   "run that release's uninstall.sql first")
    assert fingerprint(server) == before

    server.query("delete from slony_nodelock.migration where version = 6;"
                 "update slony_nodelock.migration set script_sha256 = 'edited' where version = 1")
    first = hashlib.sha256((REPO / "migrations" / "0001_identity_and_saved_functions.sql").read_bytes()).hexdigest()
    assert_refused(server, server.psql_file(INSTALL_SQL),
                   "ERROR:  slony-nodelock: migration 1 (0001_identity_and_saved_functions, of release 0.1.0) was "
                   f"applied here from another script than this install.sql of release {__version__} carries "
                   f"(sha256 edited recorded, {first[:12]} here); nothing changed. Released migrations never change, "
                   f"so one of the two scripts was edited: install with an unmodified slony-nodelock {__version__} "
                   f"(its release files, or git checkout v{__version__}); if this database was installed from an "
                   "edited script, run uninstall.sql first, then install")


def test_uninstall_after_update_functions_restores_what_slony_loaded_last(one_node):
    server = one_node.node(1)
    current = server.query(FUNCTION_STATE, ("_bed",))
    # Make the installed stock look like an older Slony's, with a different body and comment.
    definition = current[0][5].replace("return 0;", "return 0; -- as in an older Slony")
    server.query(definition)
    server.query("comment on function \"_bed\".cleanupnodelock() is 'older comment'")
    one_node.install_fix(1)
    assert server.query("select comment from slony_nodelock.stock_function where function_name = 'cleanupnodelock'") == [("older comment",)]

    one_node.cluster.slonik(UPDATE_FUNCTIONS)

    assert server.query("select comment from slony_nodelock.stock_function where function_name = 'cleanupnodelock'") == [(SLONY_COMMENT,)]
    all_ok(server)
    one_node.uninstall_fix(1)
    assert server.query(FUNCTION_STATE, ("_bed",)) == current


def test_a_repatch_that_cannot_get_its_lock_in_time_never_fails_update_functions(one_node):
    server = one_node.node(1)
    one_node.install_fix(1)
    with server.connect() as blocker:
        # Another session holds a lock the re-patch needs (our records table), and slonik's
        # session waits at most half a second for any lock.
        blocker.execute("begin; lock table slony_nodelock.lock_identity in access exclusive mode")

        one_node.cluster.slonik(UPDATE_FUNCTIONS, pgoptions="-c lock_timeout=500")  # raises if slonik fails

        blocker.execute("rollback")
    assert "WARNING:  " + repatch_failed("canceling statement due to lock timeout") in server.logfile.read_text()
    with pytest.raises(Exception, match=r'cluster "bed" \(schema "_bed"\): cleanupnodelock\(\) is Slony\'s stock one'):
        server.query("select slony_nodelock.assert_ok()")


def test_a_statement_timeout_during_the_repatch_never_fails_update_functions(one_node):
    server = one_node.node(1)
    one_node.install_fix(1)
    with server.connect() as blocker:
        # The re-patch waits for our records table up to its own 5 s bound; slonik's
        # statement_timeout cancels it first, and the cancel must not reach Slony's command.
        blocker.execute("begin; lock table slony_nodelock.lock_identity in access exclusive mode")

        one_node.cluster.slonik(UPDATE_FUNCTIONS, pgoptions="-c statement_timeout=3000")

        blocker.execute("rollback")
    assert "WARNING:  " + repatch_failed("canceling statement due to statement timeout") in server.logfile.read_text()
    with pytest.raises(Exception, match=r'cluster "bed" \(schema "_bed"\): cleanupnodelock\(\) is Slony\'s stock one'):
        server.query("select slony_nodelock.assert_ok()")


def test_a_patched_cluster_schema_restores_into_a_database_with_the_kit(one_node):
    # pg_dump -n of a patched cluster carries our function, comment and identity triggers; the
    # re-patch trigger must not race the dump's own CREATE TRIGGER.
    server = one_node.node(1)
    one_node.install_fix(1)
    server.query("create database restored")
    assert "database restored holds no Slony cluster" in server.psql_file_in(INSTALL_SQL, "restored").stderr
    dump = server.home / "bed.dump"
    run([str(PG_BIN / "pg_dump"), "-Fc", "-n", "_bed", "-f", str(dump), "-d", server.conninfo()], cwd=server.home)

    run([str(PG_BIN / "pg_restore"), "--exit-on-error", "-d", server.conninfo(dbname="restored"), str(dump)],
        cwd=server.home)

    with server.connect(dbname="restored") as restored:
        assert restored.execute("select cluster, patched, identity_recording from slony_nodelock.verify()").fetchall() \
            == [("_bed", True, True)]
