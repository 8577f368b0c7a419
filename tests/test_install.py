"""sql/install.sql and sql/uninstall.sql on real servers: bad input, odd names, re-runs, reverting.

Every refused install must leave the catalog exactly as it was.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from psycopg import sql

from conftest import load_generator, requires_mount_namespace
from slonybed import SlonyBed
from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL
from slonybed.slony import DUPLICATE_LOCK
from notices import PATCHED_BED, kept, no_process, removal

FINGERPRINT = """
select md5(string_agg(x, ',' order by x)) from (
    select 'n:' || nspname || nspowner || coalesce(nspacl::text, '') from pg_catalog.pg_namespace
    union all select 'c:' || oid::regclass::text || relkind::text || relowner || coalesce(relacl::text, '')
                     from pg_catalog.pg_class
    union all select 'a:' || attrelid::regclass::text || attname || atttypid || attnotnull::text || attisdropped::text
                     from pg_catalog.pg_attribute where attrelid >= 16384 and attnum > 0
    union all select 'k:' || conrelid::regclass::text || conname || contype::text from pg_catalog.pg_constraint
    union all select 'p:' || oid::regprocedure::text || md5(prosrc) || prolang::text || proowner
                     || coalesce(proconfig::text, '') || coalesce(proacl::text, '') from pg_catalog.pg_proc
    union all select 't:' || tgrelid::regclass::text || tgname || tgenabled::text from pg_catalog.pg_trigger
    union all select 'e:' || extname || extversion from pg_catalog.pg_extension
    union all select 'v:' || evtname || evtenabled::text || evtfoid || coalesce(evttags::text, '')
                     from pg_catalog.pg_event_trigger
    union all select 'd:' || objoid || objsubid || coalesce(description, '') from pg_catalog.pg_description
    union all select 's:' || setdatabase || setrole || setconfig::text from pg_catalog.pg_db_role_setting
) s(x)
"""

STOCK_LIKE = """
create schema {schema};
create table {schema}.sl_node (no_id int4 primary key);
create table {schema}.sl_nodelock (nl_nodeid int4, nl_conncnt serial, nl_backendpid int4,
                                   primary key (nl_nodeid, nl_conncnt));
create function {schema}.cleanupnodelock() returns int4 language plpgsql as $$
begin
    return 0;  -- stands in for Slony's, which needs its C library
end
$$;
comment on function {schema}.cleanupnodelock() is 'Clean up stale entries when restarting slon';
-- Slony's killBackend(pid, 'TERM') sends signal 0 (its signal-name compare has length 0).
create function {schema}.killbackend(p_pid int4, p_signame text) returns int4 language sql as 'select 0';
create function {schema}.terminatenodeconnections(p_failed_node int4) returns int4 language plpgsql as $$
begin
    return 0;  -- stands in for Slony's, which calls killBackend()
end
$$;
"""

FUNCTION_STATE = """
select p.prosrc, l.lanname, pg_catalog.pg_get_userbyid(p.proowner), p.proconfig,
       pg_catalog.obj_description(p.oid, 'pg_proc'), pg_catalog.pg_get_functiondef(p.oid)
  from pg_catalog.pg_proc p join pg_catalog.pg_language l on l.oid = p.prolang
 where p.pronamespace = pg_catalog.to_regnamespace(%s) and p.proname = 'cleanupnodelock'
"""


def run_generated(server, name: str, script: str):
    """Run a script built by sql/generate.py for one test, the way install.sql is run."""
    path = server.home / name
    path.write_text(script)
    return server.psql_file(path)


def fingerprint(server) -> str:
    return server.query(FINGERPRINT)[0][0]


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "ERROR" in line]


def add_stock_like_cluster(server, schema: str) -> None:
    server.query(sql.SQL(STOCK_LIKE).format(schema=sql.Identifier(schema)))


@pytest.fixture
def server():
    with SlonyBed(nodes=1) as bed:
        yield bed.node(1)


def gone_backend_pid(server) -> int:
    """The PID of a client backend that has just exited: what a stale lock row names."""
    with server.connect() as gone:
        pid = gone.info.backend_pid
    deadline = time.monotonic() + 15
    while server.query("select 1 from pg_catalog.pg_stat_activity where pid = %s", (pid,)):
        assert time.monotonic() < deadline, f"backend {pid} did not exit"
        time.sleep(0.02)
    return pid


def assert_refused(server, result, *fragments: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_a_non_superuser_is_refused_and_nothing_changes(server):
    server.query("create role alice login")
    add_stock_like_cluster(server, "_c1")
    before = fingerprint(server)

    result = server.psql_file(INSTALL_SQL, user="alice")

    assert_refused(server, result, "alice is not a superuser", "run the script as postgres")
    assert fingerprint(server) == before


@requires_mount_namespace
def test_a_server_without_plpython_is_told_which_package_to_install():
    with SlonyBed(nodes=0) as bed:
        server = bed.add_server(1, hidden_extensions=("plpython3u",))
        add_stock_like_cluster(server, "_c1")
        before = fingerprint(server)

        result = server.psql_file(INSTALL_SQL)

        assert [line.split(" ERROR:  ", 1)[1] for line in error_lines(result)] == [
            "slony-nodelock: PL/Python (plpython3u) is not available to this PostgreSQL 15; nothing changed. Install "
            "the package postgresql-plpython3-15 (Debian, Ubuntu; postgresql15-plpython3 on RHEL) where the server "
            "runs (on its machine, or in its container image), then run the script again"]
        assert fingerprint(server) == before


def test_a_server_older_than_the_minimum_is_refused(server):
    # No PostgreSQL 9.6 here, so the guard is exercised by raising the minimum past 15 instead.
    generate = load_generator()
    generate.MIN_SERVER_VERSION_NUM = 990000
    before = fingerprint(server)

    result = run_generated(server, "install-needs-99.sql", generate.build_install())

    assert_refused(server, result, "is too old", "needs PostgreSQL 99 or later")
    assert fingerprint(server) == before


def test_a_schema_whose_sl_nodelock_lacks_slony_columns_is_skipped_and_stops_no_real_cluster(server):
    add_stock_like_cluster(server, "_good")
    server.query("create schema _broken; create table _broken.sl_node (no_id int4);"
                 "create table _broken.sl_nodelock (nl_nodeid int4, nl_conncnt int4);"
                 "create function _broken.cleanupnodelock() returns int4 language sql as 'select 0'")

    result = server.psql_file(INSTALL_SQL)

    assert result.returncode == 0, result.stderr
    assert ("skipped schema _broken: it holds an sl_nodelock table, but its sl_nodelock lacks the int4 columns "
            "nl_nodeid, nl_conncnt and nl_backendpid of Slony-I 2.x, so the kit does not take it for a Slony cluster "
            "and leaves it alone") in result.stderr
    assert server.query("select cluster, patched, problems from slony_nodelock.verify()") == [("_good", True, None)]
    assert server.query(FUNCTION_STATE, ("_broken",))[0][1] == "sql"


def test_a_database_without_slony_gets_a_notice_not_an_error(server):
    result = server.psql_file(INSTALL_SQL)

    assert result.returncode == 0, result.stderr
    assert "database slony_test holds no Slony cluster, so none was patched" in result.stderr
    assert server.query("select slony_nodelock.version()") == [(_version(),)]
    result = server.psql_file(UNINSTALL_SQL)
    assert result.returncode == 0, result.stderr
    assert ("NOTICE:  slony-nodelock removed from database slony_test: slon runs Slony's own cleanupnodelock() "
            "again, which can refuse to start after a reboot; the plpython3u language stays (DROP EXTENSION "
            "plpython3u if nothing else uses it)\n") in result.stderr


def _version() -> str:
    from slony_nodelock import __version__
    return __version__


def _unused_pid() -> int:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    return next(p for p in range(pid_max - 1, 300, -1) if not Path(f"/proc/{p}").exists())


def test_an_oddly_named_cluster_is_patched_cleaned_and_restored(server):
    odd = '_we"ird clu$ter; drop table x'
    add_stock_like_cluster(server, odd)
    table = sql.SQL("{}.sl_nodelock").format(sql.Identifier(odd))
    stock = server.query(FUNCTION_STATE, (sql.Identifier(odd).as_string(None),))
    # Node 2's slon registering its listener on this node, as registerNodeConnection() does.
    with server.connect(application_name="slon.node_1_listen") as holder:
        holder.execute(sql.SQL("insert into {} values (2, 1, pg_catalog.pg_backend_pid())").format(table))

        result = server.psql_file(INSTALL_SQL)
        assert result.returncode == 0, result.stderr
        assert 'patched cluster "we""ird clu$ter; drop table x" (schema "_we""ird clu$ter; drop table x")' in result.stderr

        dead = _unused_pid()
        server.query(sql.SQL("insert into {} values (1, 0, %s)").format(table), (dead,))
        with server.connect() as caller:
            notices = []
            caller.add_notice_handler(lambda d: notices.append(d.message_primary))
            caller.execute(sql.SQL("select {}.cleanupnodelock()").format(sql.Identifier(odd)))
        assert server.query(sql.SQL("select nl_nodeid, nl_conncnt from {} order by 1").format(table)) == [(2, 1)]
        assert notices == [removal(odd, 1, 0, dead, no_process(dead))]

    result = server.psql_file(UNINSTALL_SQL)
    assert result.returncode == 0, result.stderr
    assert server.query(FUNCTION_STATE, (sql.Identifier(odd).as_string(None),)) == stock


def test_every_function_we_create_pins_search_path(server):
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    unpinned = server.query("""
        select p.oid::regprocedure::text from pg_catalog.pg_proc p
         where (p.pronamespace = 'slony_nodelock'::regnamespace
                or p.oid = '_c1.cleanupnodelock()'::regprocedure)
           and not coalesce(p.proconfig @> array['search_path=pg_catalog, pg_temp'], false)""")
    assert unpinned == []


def test_install_twice_then_uninstall_gives_back_stock_and_the_failure(bed):
    bed.build_replicating()
    node = bed.node(1)
    stock = node.query(FUNCTION_STATE, ("_bed",))

    first = bed.install_fix(1)
    after_first = fingerprint(node)
    second = bed.install_fix(1)

    assert PATCHED_BED in first
    assert 'cluster "bed" (schema "_bed") is already patched; nothing changed' in second
    assert fingerprint(node) == after_first
    assert node.query(FUNCTION_STATE, ("_bed",)) != stock

    assert 'NOTICE:  slony-nodelock: restored Slony\'s own cleanupnodelock() in cluster "bed" (schema "_bed")\n' in bed.uninstall_fix(1)
    assert node.query(FUNCTION_STATE, ("_bed",)) == stock
    assert node.query("select pg_catalog.to_regnamespace('slony_nodelock')") == [(None,)]
    assert "not installed in database slony_test; nothing to do" in bed.uninstall_fix(1)
    # All of it with slon running, which goes on replicating.
    assert bed.slons[1].alive()
    bed.cluster.assert_replicates(1, 2)

    # After a power cut the stale PID is the checkpointer's: stock Slony keeps the row again.
    bed.reboot_host_of(1)
    bed.cluster.point_lock_at(1, node.pid_of("checkpointer"))
    slon = bed.start_slon(1)
    assert slon.wait_exit(timeout=30) is not None, "slon started although the fix was removed"
    assert DUPLICATE_LOCK in slon.log


def _identities(server, schema: str) -> list[tuple]:
    return server.query("select nl_nodeid, nl_conncnt from slony_nodelock.lock_identity "
                        "where cluster_schema = %s order by 1, 2", (schema,))


def test_identity_records_never_outlive_their_lock_rows(server):
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    table = sql.SQL("{}.sl_nodelock").format(sql.Identifier("_c1"))
    with server.connect(application_name="slon.local_listen") as holder:
        for node in (1, 2, 3):
            holder.execute(sql.SQL("insert into {} values (%s, 0, pg_catalog.pg_backend_pid())").format(table), (node,))
        # A row naming some other PID gets no record: only our own start time is known for sure.
        holder.execute(sql.SQL("insert into {} values (4, 0, 1)").format(table))
        assert _identities(server, "_c1") == [(1, 0), (2, 0), (3, 0)]

        server.query(sql.SQL("delete from {} where nl_nodeid = 1").format(table))
        server.query(sql.SQL("update {} set nl_backendpid = 1 where nl_nodeid = 2").format(table))
        assert _identities(server, "_c1") == [(3, 0)]
        server.query(sql.SQL("truncate {}").format(table))
        assert _identities(server, "_c1") == []


def test_a_role_that_cannot_see_the_holder_keeps_the_row_and_says_why(server):
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("create role bob login; grant usage on schema _c1 to bob;"
                 "grant select, update, delete on _c1.sl_nodelock to bob")
    stale = gone_backend_pid(server)
    server.query("insert into _c1.sl_nodelock values (2, 0, %s)", (stale,))
    with server.connect(application_name="slon.local_listen") as holder:
        holder_pid = holder.execute("insert into _c1.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())"
                                    " returning nl_backendpid").fetchone()[0]
        with server.connect(user="bob") as bob:
            notices = []
            bob.add_notice_handler(lambda d: notices.append(d.message_primary))
            bob.execute("select _c1.cleanupnodelock()")
        # A PID that is no process at all is stale whatever the role may see.
        assert server.query("select nl_backendpid from _c1.sl_nodelock") == [(holder_pid,)]
        assert notices == [
            'slony-nodelock: role "bob" may not read the kit\'s lock records, so the locks of cluster "c1" (schema '
            '"_c1") are judged without them: a row whose PID a backend named like slon\'s holds is kept (a NOTICE says '
            "so), every other stale row is still removed; run cleanupNodelock() as a superuser, as slon does",
            removal("_c1", 2, 0, stale, no_process(stale)),
            kept("_c1", 1, 0, holder_pid) + f"pid {holder_pid} is a backend, but pg_stat_activity hides its type and "
            'start time from role "bob" (GRANT pg_read_all_stats TO "bob", or run the cleanup as a superuser, as slon '
            'does); while it stays, slon for node 1 cannot start (duplicate key value violates unique constraint '
            '"sl_nodelock-pkey"): if that slon is stopped and still fails so, remove the row as the slony-nodelock '
            'README, "A kept lock" says']


def test_other_roles_may_check_the_node_but_not_change_it(server):
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("create role monitor login")
    with server.connect(user="monitor") as monitor:
        assert monitor.execute("select cluster, patched from slony_nodelock.verify()").fetchall() == [("_c1", True)]
        for call in ("slony_nodelock.patch_all_clusters()", "slony_nodelock.patch_cluster('_c1')",
                     "slony_nodelock.adopt_live_locks('_c1')"):
            with pytest.raises(Exception, match="permission denied"):
                monitor.execute(f"select {call}")


def test_a_holder_that_connected_after_the_callers_snapshot_is_still_seen(server):
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    stale = gone_backend_pid(server)
    with server.connect() as caller:
        with caller.transaction():
            # The caller's transaction takes its activity snapshot before the holder exists.
            caller.execute("select count(*) from pg_catalog.pg_stat_activity")
            with server.connect(application_name="slon.local_listen") as holder:
                holder.execute("insert into _c1.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())")
                server.query("insert into _c1.sl_nodelock values (2, 0, %s)", (stale,))
                caller.execute("select _c1.cleanupnodelock()")
                assert caller.execute("select nl_nodeid, nl_backendpid from _c1.sl_nodelock").fetchall() == [
                    (1, holder.info.backend_pid)]


def test_identity_is_recorded_under_session_replication_role_replica(server):
    # slon's remote worker connection runs as a replica; the identity triggers fire ALWAYS.
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    with server.connect() as replica:
        replica.execute("set session_replication_role = replica")
        replica.execute("insert into _c1.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())")
        assert _identities(server, "_c1") == [(1, 0)]
        replica.execute("delete from _c1.sl_nodelock")
        assert _identities(server, "_c1") == []


def test_uninstall_refuses_rather_than_leave_an_unrestorable_function_behind(server):
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("delete from slony_nodelock.stock_function")
    server.query("drop function _c1.slony_nodelock_slony_functions() cascade")  # the copy in the cluster's schema too
    before = fingerprint(server)

    result = server.psql_file(UNINSTALL_SQL)

    assert_refused(server, result, 'ERROR:  slony-nodelock: Slony\'s own cleanupnodelock() of cluster "c1" (schema "_c1") was '
                   "never saved, so uninstall cannot put it back; nothing changed, slon keeps running with the kit. Run "
                   'slonik "update functions" for this node first (the kit saves what it loads), then uninstall again')
    assert fingerprint(server) == before


def test_every_cluster_in_the_database_is_patched_with_a_notice_each(server):
    for schema in ("_east", "_west"):
        add_stock_like_cluster(server, schema)

    result = server.psql_file(INSTALL_SQL)

    assert result.returncode == 0, result.stderr
    patched = [line for line in result.stderr.splitlines() if "NOTICE:  slony-nodelock: patched cluster" in line]
    assert len(patched) == 2 and "_east" in patched[0] and "_west" in patched[1]
    assert server.query("select cluster, patched from slony_nodelock.verify()") == [("_east", True), ("_west", True)]


def test_install_sql_runs_twice_in_one_psql_session(server):
    add_stock_like_cluster(server, "_c1")
    twice = server.home / "install-twice.sql"
    twice.write_text(f"\\i {INSTALL_SQL}\n\\i {INSTALL_SQL}\n")

    result = server.psql_file(twice)

    assert result.returncode == 0, result.stderr
    assert 'patched cluster "c1" (schema "_c1")' in result.stderr
    assert 'cluster "c1" (schema "_c1") is already patched; nothing changed' in result.stderr
    assert server.query("select cluster, patched, problems from slony_nodelock.verify()") == [("_c1", True, None)]


LOOK_ALIKES = """
create role alice login;
create schema _alike authorization alice;
create table _alike.sl_node (no_id int4 primary key);
create table _alike.sl_nodelock (nl_nodeid int4, nl_conncnt serial, nl_backendpid int4,
                                 primary key (nl_nodeid, nl_conncnt));
create function _alike.cleanupnodelock() returns int4 language sql as 'select 0';
alter table _alike.sl_node owner to alice;
alter table _alike.sl_nodelock owner to alice;
alter function _alike.cleanupnodelock() owner to alice;
create schema _nonode;
create table _nonode.sl_nodelock (nl_nodeid int4, nl_conncnt serial, nl_backendpid int4,
                                  primary key (nl_nodeid, nl_conncnt));
create function _nonode.cleanupnodelock() returns int4 language sql as 'select 0';
"""


def test_schemas_slony_did_not_make_are_left_alone_with_the_reason(server):
    add_stock_like_cluster(server, "_c1")
    server.query(LOOK_ALIKES)
    before = {s: server.query(FUNCTION_STATE, (s,)) for s in ("_alike", "_nonode")}

    result = server.psql_file(INSTALL_SQL)

    assert result.returncode == 0, result.stderr
    assert ("skipped schema _alike: it holds an sl_nodelock table, but it is owned by alice, not a superuser, "
            "so the kit does not take it for a Slony cluster and leaves it alone\n") in result.stderr
    assert ("skipped schema _nonode: it holds an sl_nodelock table, but it has no sl_node table, "
            "so the kit does not take it for a Slony cluster and leaves it alone\n") in result.stderr
    # Nor does the re-patch trigger touch them when their owner replaces the function.
    with server.connect(user="alice") as alice:
        alice.execute("create or replace function _alike.cleanupnodelock() returns int4 language sql as 'select 1'")
    server.query("create or replace function _nonode.cleanupnodelock() returns int4 language sql as 'select 0'")
    assert {s: server.query(FUNCTION_STATE, (s,)) for s in ("_nonode",)} == {"_nonode": before["_nonode"]}
    assert server.query(FUNCTION_STATE, ("_alike",))[0][1] == "sql"
    assert server.query("select count(*) from pg_catalog.pg_trigger where tgname like 'slony_nodelock%'"
                        " and tgrelid <> '_c1.sl_nodelock'::regclass") == [(0,)]
    # A look-alike is no problem of the kit's: the checks stay green (any role can make such tables
    # in its own schema), and no advice hands it to a superuser, under whom its owner's code would run.
    assert server.query("select cluster, patched, problems from slony_nodelock.verify()") == [("_c1", True, None)]
    assert server.query("select slony_nodelock.assert_ok()") == [(1,)]
    assert "OWNER TO" not in result.stderr


def test_a_re_patch_leaves_the_callers_lock_timeout_as_it_was(server):
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    with server.connect() as conn:
        with conn.transaction():
            conn.execute("set local lock_timeout = '7s'")
            conn.execute("create table public.unrelated ()")
            assert conn.execute("show lock_timeout").fetchone() == ("7s",)
            # Slony's function loaded again: the re-patch runs, bounded by its own 5 s.
            conn.execute("create or replace function _c1.cleanupnodelock() returns int4 language sql as 'select 0'")
            assert conn.execute("show lock_timeout").fetchone() == ("7s",)
        assert conn.execute("show lock_timeout").fetchone() == ("0",)
    assert server.query("select patched from slony_nodelock.verify()") == [(True,)]


def _insert_own_lock(server, notices: list[str]) -> None:
    with server.connect(application_name="slon.local_listen") as slon:
        slon.add_notice_handler(lambda d: notices.append(f"{d.severity}: {d.message_primary}"))
        slon.execute("insert into _c1.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())")


def test_slons_lock_insert_succeeds_when_the_installer_is_no_longer_a_superuser(server):
    add_stock_like_cluster(server, "_c1")
    server.query("create role kit_admin superuser login")
    assert server.psql_file(INSTALL_SQL, user="kit_admin").returncode == 0
    server.query("alter role kit_admin nosuperuser")

    notices: list[str] = []
    _insert_own_lock(server, notices)  # raises if the identity trigger fails slon's insert

    assert any(n.startswith('WARNING: slony-nodelock: could not record who took lock row (node 1, conncnt 0) of '
                            'cluster "c1" (schema "_c1") (')
               and n.endswith("); slon's write went through, and the row will be judged as unrecorded; the cause "
                              "and its fix: select * from slony_nodelock.verify()") for n in notices), notices
    [(problems,)] = server.query("select problems from slony_nodelock.verify()")
    assert "the kit's functions belong to role kit_admin, who is no longer a superuser" in problems


def test_slon_keeps_working_when_our_records_table_is_dropped(server):
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("drop table slony_nodelock.lock_identity")

    notices: list[str] = []
    _insert_own_lock(server, notices)
    with server.connect() as caller:
        caller.add_notice_handler(lambda d: notices.append(f"{d.severity}: {d.message_primary}"))
        caller.execute("select _c1.cleanupnodelock()")

    assert any(n.startswith("WARNING: slony-nodelock: could not record who took lock row") for n in notices), notices
    [warning] = [n for n in notices if 'cluster "c1" (schema "_c1") cannot read the kit\'s lock records' in n]
    # install.sql alone cannot bring back a table its migrations are recorded as having made.
    assert warning.endswith("repair the kit with: psql -v ON_ERROR_STOP=1 -d slony_test -f "
                            "/usr/share/slony-nodelock/uninstall.sql, then psql -v ON_ERROR_STOP=1 -d slony_test -f "
                            "/usr/share/slony-nodelock/install.sql"), warning
    assert server.query("select count(*) from _c1.sl_nodelock") == [(0,)]  # its holder has gone
    with pytest.raises(Exception, match="lock_identity is missing or damaged"):
        server.query("select slony_nodelock.assert_ok()")
    # The repair the WARNING gives works.
    assert server.psql_file(UNINSTALL_SQL).returncode == 0
    assert server.psql_file(INSTALL_SQL).returncode == 0
    assert server.query("select slony_nodelock.assert_ok()") == [(1,)]


def test_a_lock_adopted_in_one_cluster_never_removes_a_live_lock_of_another(server):
    # Every cluster's slon names its listener slon.local_listen, so adoption is a guess: it must
    # not count as proof that the backend holds no other lock.
    for schema in ("_ca", "_cb"):
        add_stock_like_cluster(server, schema)
    with server.connect(application_name="slon.local_listen") as listener:
        pid = listener.execute("select pg_catalog.pg_backend_pid()").fetchone()[0]
        server.query("insert into _ca.sl_nodelock values (7, 0, %s)", (pid,))
        assert server.psql_file(INSTALL_SQL).returncode == 0
        assert server.query("select cluster_schema, adopted from slony_nodelock.lock_identity") == [("_ca", True)]
        server.query("alter table _cb.sl_nodelock disable trigger slony_nodelock_identity")
        listener.execute("insert into _cb.sl_nodelock values (7, 0, pg_catalog.pg_backend_pid())")
        server.query("alter table _cb.sl_nodelock enable always trigger slony_nodelock_identity")

        stale = gone_backend_pid(server)
        server.query("insert into _cb.sl_nodelock values (8, 0, %s)", (stale,))

        server.query("select _cb.cleanupnodelock()")

        assert server.query("select nl_backendpid from _cb.sl_nodelock") == [(pid,)]
