"""Who may own what the kit runs as a superuser (issue 19, part 1): a schema slony_nodelock made
before the install by another role, or anything in it that a superuser does not own, stops
install and uninstall in one line before they read or run anything there, and verify() and
assert_ok() name it on every call."""

from __future__ import annotations

import pytest

from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL
from test_install import add_stock_like_cluster, error_lines, server  # noqa: F401  (fixture)
from conftest import bed  # noqa: F401  (fixture)

REFUSAL_TAIL = ("; nothing changed. The kit runs what that schema holds as a superuser, so only superusers may own or "
                "change anything in it, and whoever did this could gain superuser rights through it: find out who did; "
                "to start afresh, drop it as a superuser (DROP SCHEMA slony_nodelock CASCADE) and run the script again")


def is_superuser(server, role: str) -> bool:
    return server.query("select rolsuper from pg_catalog.pg_roles where rolname = %s", (role,))[0][0]


def as_app(server, statements: str) -> None:
    """Run statements as the role app, which owns the database (the usual application role)."""
    with server.connect(user="app") as app:
        app.execute(statements)


@pytest.fixture
def app_database_owner(server):  # noqa: F811
    """The application role app: no superuser, but owner of the database, so it may create schemas."""
    server.query("create role app login")
    server.query("alter database slony_test owner to app")
    add_stock_like_cluster(server, "_c1")
    return server


def test_a_schema_made_by_the_database_owner_with_a_trap_stops_install(app_database_owner):
    server = app_database_owner
    as_app(server, """
        create schema slony_nodelock;
        create table slony_nodelock.migration (version int4 primary key, name text not null,
                                               script_sha256 text not null, applied_at timestamptz not null default now());
        create function slony_nodelock.trap() returns trigger language plpgsql security invoker as $$
        begin
            if (select rolsuper from pg_roles where rolname = current_user) then
                execute 'alter role app superuser';
            end if;
            return new;
        end $$;
        create trigger trap before insert on slony_nodelock.migration for each row execute function slony_nodelock.trap();
    """)

    result = server.psql_file(INSTALL_SQL)

    assert result.returncode != 0
    [error] = error_lines(result)
    assert error.endswith("ERROR:  slony-nodelock: the schema slony_nodelock belongs to app, who is not a superuser"
                          + REFUSAL_TAIL), error
    assert not is_superuser(server, "app")
    assert server.query("select count(*) from slony_nodelock.migration") == [(0,)]
    assert server.query("select l.lanname from pg_catalog.pg_proc p join pg_catalog.pg_language l on l.oid = p.prolang"
                        " where p.oid = '_c1.cleanupnodelock()'::pg_catalog.regprocedure") == [("plpgsql",)]


def test_an_empty_schema_made_by_another_role_stops_install_and_nothing_is_patched(app_database_owner):
    server = app_database_owner
    as_app(server, "create schema slony_nodelock")

    result = server.psql_file(INSTALL_SQL)

    assert result.returncode != 0
    assert "ERROR:  slony-nodelock: the schema slony_nodelock belongs to app, who is not a superuser; nothing changed" in result.stderr
    assert server.query("select count(*) from pg_catalog.pg_proc where pronamespace = 'slony_nodelock'::regnamespace") == [(0,)]


def test_a_grant_or_an_object_of_another_role_in_the_kits_schema_is_named_by_verify_and_stops_install(server):  # noqa: F811
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("create role app login")
    assert server.query("select slony_nodelock.assert_ok()") == [(1,)]

    server.query("grant create on schema slony_nodelock to app")
    [(problems,)] = server.query("select problems from slony_nodelock.verify()")
    assert problems == ("app may create objects in the schema slony_nodelock, and the kit runs what that schema "
                        "holds as a superuser, so whoever did this could gain superuser rights through it: find out who "
                        "did, then drop the schema as a superuser (DROP SCHEMA slony_nodelock CASCADE) and reinstall: "
                        "psql -v ON_ERROR_STOP=1 -d slony_test -f /usr/share/slony-nodelock/uninstall.sql, then "
                        "psql -v ON_ERROR_STOP=1 -d slony_test -f /usr/share/slony-nodelock/install.sql"), problems
    with pytest.raises(Exception, match="app may create objects in the schema slony_nodelock"):
        server.query("select slony_nodelock.assert_ok()")
    for script in (INSTALL_SQL, UNINSTALL_SQL):
        result = server.psql_file(script)
        assert result.returncode != 0 and "app may create objects in the schema slony_nodelock; nothing changed" in result.stderr

    server.query("revoke create on schema slony_nodelock from app")
    server.query("alter function slony_nodelock.logic_source() owner to app")
    [(problems,)] = server.query("select problems from slony_nodelock.verify()")
    assert problems.startswith("function slony_nodelock.logic_source belongs to app, who is not a superuser"), problems
    assert server.psql_file(INSTALL_SQL).returncode != 0

    server.query("alter function slony_nodelock.logic_source() owner to postgres")
    server.query("create trigger extra after insert on slony_nodelock.migration for each row"
                 " execute function slony_nodelock.track_lock_identity()")
    [(problems,)] = server.query("select problems from slony_nodelock.verify()")
    assert problems.startswith("trigger extra on slony_nodelock.migration was not made by the kit"), problems

    server.query("drop trigger extra on slony_nodelock.migration")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    assert server.query("select slony_nodelock.assert_ok()") == [(1,)]


def test_no_role_but_a_superuser_reads_or_locks_the_kits_tables(server):  # noqa: F811
    # Issue 19, part 4 (in part): reading lock_identity let any role LOCK it IN ACCESS SHARE MODE
    # for as long as it liked, holding up every upgrade and uninstall.
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("create role app login")
    with server.connect(user="app") as app:
        for statement in ("select * from slony_nodelock.lock_identity",
                          "begin; lock slony_nodelock.lock_identity in access share mode"):
            with pytest.raises(Exception, match="permission denied for table lock_identity"):
                app.execute(statement)
            app.rollback()
    # The kit's checks stay open to monitoring.
    with server.connect(user="app") as app:
        assert app.execute("select slony_nodelock.assert_ok()").fetchall() == [(1,)]


def test_beside_a_real_slonik_cluster_the_attackers_objects_gain_nothing(bed):
    # Issue 19 with slonik's own cluster beside the attacker's objects: a plain role with CREATE
    # on public (PostgreSQL 13/14's default) shapes public like a cluster with a function that
    # escalates when a superuser runs it; install patches the real cluster only, and a later
    # uninstall and every event trigger leave the role as it was.
    bed.build_replicating()
    node = bed.node(1)
    node.query("create role mallory login; grant create on schema public to public")
    with node.connect(user="mallory") as mallory:
        mallory.execute("""
            create table public.sl_node (no_id int4);
            create table public.sl_nodelock (nl_nodeid int4, nl_conncnt int4, nl_backendpid int4);
            create function public.slonyversion() returns text language plpgsql as $$
            begin
                if (select rolsuper from pg_roles where rolname = current_user) then
                    execute 'alter role mallory superuser';
                end if;
                return '2.2.11';
            end $$;
        """)

    output = bed.install_fix(1)

    assert 'patched cluster "bed" (schema "_bed")' in output
    # Why depends on the release: public belongs to pg_database_owner from PostgreSQL 15 on.
    assert "NOTICE:  slony-nodelock: skipped schema public: it holds an sl_nodelock table, but " in output
    node.query("create table scratch (); drop table scratch")  # the kit's event triggers fire
    bed.cluster.assert_replicates(1, 2)
    bed.uninstall_fix(1)
    assert not is_superuser(node, "mallory")
    assert node.query("select count(*) from pg_catalog.pg_trigger where tgrelid = 'public.sl_nodelock'::regclass") == [(0,)]


def test_default_privileges_give_no_role_a_way_into_the_kits_schema_or_tables(server):  # noqa: F811
    # A third review: ALTER DEFAULT PRIVILEGES (a common one-liner) gave app write access to the
    # kit's tables (uninstall then ran what app wrote into stock_function) and CREATE on its
    # schema (an overload of a kit function, called by an event trigger as a superuser).
    add_stock_like_cluster(server, "_c1")
    server.query("create role app login;"
                 "alter default privileges grant select, insert, update, delete on tables to app;"
                 "alter default privileges grant create on schemas to app")

    assert server.psql_file(INSTALL_SQL).returncode == 0

    assert server.query("select pg_catalog.has_schema_privilege('app', 'slony_nodelock', 'CREATE')") == [(False,)]
    assert server.query("select c.relname from pg_catalog.pg_class c where c.relnamespace = 'slony_nodelock'::regnamespace"
                        " and c.relkind = 'r' and (pg_catalog.has_table_privilege('app', c.oid, 'UPDATE')"
                        " or pg_catalog.has_table_privilege('app', c.oid, 'SELECT'))") == []
    assert server.query("select slony_nodelock.assert_ok()") == [(1,)]
    # A write grant given later is named, and stops uninstall before it runs anything saved.
    server.query("grant update on slony_nodelock.stock_function to app")
    with pytest.raises(Exception, match="app may update slony_nodelock.stock_function"):
        server.query("select slony_nodelock.assert_ok()")
    result = server.psql_file(UNINSTALL_SQL)
    assert result.returncode != 0 and "app may update slony_nodelock.stock_function; nothing changed" in result.stderr


def test_a_drop_by_a_role_that_cannot_see_a_cluster_gets_no_word_from_its_keeper(server):  # noqa: F811
    add_stock_like_cluster(server, "_c1")  # no USAGE for PUBLIC, unlike Slony's own schemas
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("create role app login")
    with server.connect(user="app") as app:
        seen: list[str] = []
        app.add_notice_handler(lambda d: seen.append(d.message_primary))
        app.execute("create temp table scratch (); drop table scratch")
    assert seen == []


def test_a_role_can_neither_hold_the_kit_up_nor_lose_a_trigger_to_it_by_naming_things_like_it(server):  # noqa: F811
    # A third review: a plain role's own sl_nodelock (a temporary one here) with a trigger named
    # like the kit's was locked by install and uninstall (so held them up) and lost its trigger to
    # uninstall; dropping its own sl_nodelock made the kit's drop trigger write the kit's tables in
    # that role's transaction, holding uninstall and upgrades up as long as it liked.
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("create role app login; create schema app_s authorization app")
    with server.connect(user="app") as app:
        app.execute("""
            create function app_s.noop() returns trigger language plpgsql as 'begin return null; end';
            create table app_s.sl_nodelock (nl_nodeid int4, nl_conncnt int4, nl_backendpid int4);
            create trigger slony_nodelock_identity after insert on app_s.sl_nodelock
                for each row execute function app_s.noop();
            create temp table sl_nodelock (nl_nodeid int4, nl_conncnt int4, nl_backendpid int4);
            create trigger slony_nodelock_identity after insert on pg_temp.sl_nodelock
                for each row execute function app_s.noop();
        """)
        app.execute("begin; insert into app_s.sl_nodelock values (1, 0, 1); insert into pg_temp.sl_nodelock values (1, 0, 1)")
        assert server.psql_file(INSTALL_SQL).returncode == 0
        app.execute("rollback")
        app.execute("begin; drop table pg_temp.sl_nodelock")  # left open
        result = server.psql_file(UNINSTALL_SQL)
        assert result.returncode == 0, result.stderr
        app.execute("rollback")
    assert server.query("select count(*) from pg_catalog.pg_trigger where tgrelid = 'app_s.sl_nodelock'::regclass") == [(1,)]
