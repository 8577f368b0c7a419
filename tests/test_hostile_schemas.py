"""Schemas that a role without privileges shapes like the kit's or like a cluster: install.sql,
uninstall.sql and the keeper event trigger run as a superuser, so nothing they call may be
written by another role (a hostile review, findings F1 and F2), and a trigger name the kit
wants may already be taken.

Every test here is on a one-node bed with a stock-like cluster (no slon, no slonik); mallory is
a plain login role: no CREATEDB, no CREATE anywhere, only what PUBLIC has (TEMP).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from slonybed import SlonyBed
from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL
from slonybed.postgres import PostgresServer
from test_install import add_stock_like_cluster

MALLORY = "mallory"

# Both functions the kit patches, as they are: what uninstall must give back exactly.
STOCK_STATE = """
select p.proname, p.prosrc, l.lanname, pg_catalog.pg_get_userbyid(p.proowner), p.proconfig,
       pg_catalog.obj_description(p.oid, 'pg_proc'), pg_catalog.pg_get_functiondef(p.oid)
  from pg_catalog.pg_proc p join pg_catalog.pg_language l on l.oid = p.prolang
 where p.pronamespace = pg_catalog.to_regnamespace(%s)
   and p.proname in ('cleanupnodelock', 'terminatenodeconnections')
 order by 1
"""

# A body that makes mallory a superuser when a superuser runs it, and does nothing otherwise.
ESCALATE = (f"if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then"
            f" execute 'alter role {MALLORY} superuser'; end if;")

COPIES = "returns table (function_name name, signature text, definition text, owner name, comment text)"


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """One server with a stock-like cluster _c1 and the role mallory."""
    with SlonyBed(nodes=1) as bed:
        node = bed.node(1)
        add_stock_like_cluster(node, "_c1")
        node.query(sql.SQL("create role {} login").format(sql.Identifier(MALLORY)))
        yield node


def is_superuser(server: PostgresServer, role: str = MALLORY) -> bool:
    [(superuser,)] = server.query("select rolsuper from pg_catalog.pg_roles where rolname = %s", (role,))
    return superuser


def run(server: PostgresServer, script) -> str:
    result = server.psql_file(script)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def notice_lines(output: str) -> list[str]:
    """psql's NOTICE lines, without the psql:FILE:LINE: prefix."""
    return [line.split(" NOTICE:  ", 1)[1] for line in output.splitlines() if " NOTICE:  " in line]


# -- F1: uninstall and a look-alike in a temporary schema -----------------------------------------

@pytest.mark.parametrize("kit_schema_dropped", [False, True], ids=["kit-installed", "kit-schema-dropped"])
def test_uninstall_runs_nothing_a_role_put_in_its_temporary_schema(server, kit_schema_dropped):
    stock = server.query(STOCK_STATE, ("_c1",))
    run(server, INSTALL_SQL)
    if kit_schema_dropped:
        server.query("drop schema slony_nodelock cascade")

    with psycopg.connect(server.conninfo(user=MALLORY), autocommit=True) as mallory:
        mallory.execute("set check_function_bodies = off")  # its body is no SQL: only its source counts
        # Any role may create functions in its own temporary schema: PUBLIC has TEMP.
        mallory.execute("create function pg_temp.cleanupnodelock() returns int4 language sql"
                        " as '# slony-nodelock fake'")
        [(temp,)] = mallory.execute("select pg_catalog.pg_my_temp_schema()::regnamespace::text").fetchall()
        assert temp.startswith("pg_temp_"), temp
        definition = (f"alter role {MALLORY} superuser; create or replace function {temp}.cleanupnodelock()"
                      " returns int4 language sql as 'select 0'")
        mallory.execute(sql.SQL("create function pg_temp.slony_nodelock_slony_functions() " + COPIES +
                                " language sql as {}").format(sql.Literal(
                                    "select 'cleanupnodelock'::name, 'cleanupnodelock()'::text, "
                                    + sql.quote(definition) + "::text, 'mallory'::name, 'c'::text")))
        assert not is_superuser(server)

        # With mallory's session (and so its temporary schema) still there.
        output = run(server, UNINSTALL_SQL)

        assert not is_superuser(server), output
        assert "pg_temp" not in output, output
        assert notice_lines(output) == [
            'slony-nodelock: restored Slony\'s own cleanupnodelock() in cluster "c1" (schema "_c1")',
            'slony-nodelock: restored Slony\'s own terminatenodeconnections() in cluster "c1" (schema "_c1")',
            "slony-nodelock removed from database slony_test: slon runs Slony's own cleanupnodelock() again, "
            "which can refuse to start after a reboot; the plpython3u language stays (DROP EXTENSION plpython3u "
            "if nothing else uses it)"], output
        # mallory's functions are left as they were: not the kit's to restore or drop.
        assert server.query("select p.proname, p.prosrc from pg_catalog.pg_proc p"
                            " where p.pronamespace = %s::regnamespace order by 1",
                            (temp,))[0] == ("cleanupnodelock", "# slony-nodelock fake")

    assert server.query(STOCK_STATE, ("_c1",)) == stock
    assert server.query("select count(*) from pg_catalog.pg_proc where proname in"
                        " ('slony_nodelock_keeper', 'slony_nodelock_slony_functions')") == [(0,)]
    assert server.query("select count(*) from pg_catalog.pg_event_trigger") == [(0,)]


# -- F2: install and a public schema that every role may create in --------------------------------

def make_public_writable(server: PostgresServer) -> None:
    """What PostgreSQL 13 and 14 ship, and what pg_upgrade and restores from them keep: public
    owned by the bootstrap superuser, and CREATE in it for every role."""
    server.query("alter schema public owner to postgres; grant create on schema public to public")


def shape_public_like_a_cluster(server: PostgresServer, tables_by: str) -> None:
    """Slony's two tables in public (made by tables_by), and, made by mallory, the functions the
    kit's superuser code calls in a cluster's schema, each making mallory a superuser when a
    superuser runs it."""
    with server.connect(user=tables_by) as conn:
        conn.execute("create table public.sl_node (no_id int4);"
                     " create table public.sl_nodelock (nl_nodeid int4, nl_conncnt int4, nl_backendpid int4)")
    copies = []
    for name, signature in (("cleanupnodelock", "()"), ("terminatenodeconnections", "(int4)")):
        # Worded as the kit's copies are, so that an install that trusted them would take them as Slony's.
        definition = (f"create or replace function public.{name}{signature} returns int4 language sql"
                      " as $function$select 0$function$")
        copies.append(f"select {sql.quote(name)}::name, {sql.quote(name + signature)}::text,"
                      f" {sql.quote(definition)}::text, 'mallory'::name, 'x'::text")
    with server.connect(user=MALLORY) as mallory:
        mallory.execute(f"create function public.slonyversion() returns text language plpgsql as $$"
                        f" begin {ESCALATE} return '2.2.11'; end $$")
        mallory.execute(f"create function public.slony_nodelock_slony_functions() {COPIES} language plpgsql as $$"
                        f" begin {ESCALATE} return query {' union all '.join(copies)}; end $$")


def public_keepers(server: PostgresServer) -> list[tuple]:
    return server.query("select e.evtname from pg_catalog.pg_event_trigger e join pg_catalog.pg_proc p"
                        " on p.oid = e.evtfoid where p.pronamespace = 'public'::regnamespace")


@pytest.mark.parametrize("tables_by, reason", [
    pytest.param(MALLORY, "its sl_nodelock is owned by mallory, not a superuser", id="tables-by-mallory"),
    # Tables a superuser once made there (an application's, a restore's): the schema is still not
    # the kit's to trust while every role may add functions to it.
    pytest.param("postgres", "PUBLIC may create objects in it, not only superusers", id="tables-by-a-superuser"),
])
def test_install_calls_nothing_in_a_public_schema_every_role_may_create_in(server, tables_by, reason):
    make_public_writable(server)
    shape_public_like_a_cluster(server, tables_by)

    output = run(server, INSTALL_SQL)

    assert not is_superuser(server), output
    assert (f"slony-nodelock: skipped schema public: it holds an sl_nodelock table, but {reason}, so the kit does not "
            "take it for a Slony cluster and leaves it alone") in notice_lines(output), output
    assert 'patched cluster "c1" (schema "_c1")' in output, output
    assert public_keepers(server) == []
    assert server.query("select p.proname from pg_catalog.pg_proc p where p.pronamespace = 'public'::regnamespace"
                        " order by 1") == [("slony_nodelock_slony_functions",), ("slonyversion",)]
    # The kit's event triggers fire on any DDL: a superuser's, here.
    server.query("create table scratch (); drop table scratch")
    assert not is_superuser(server)


def test_a_kept_copy_another_role_owns_is_not_run_and_is_replaced_by_the_next_install(server):
    run(server, INSTALL_SQL)
    copy = "_c1.slony_nodelock_slony_functions()"
    owner = ("select p.oid, pg_catalog.pg_get_userbyid(p.proowner), l.lanname from pg_catalog.pg_proc p"
             " join pg_catalog.pg_language l on l.oid = p.prolang where p.oid = %s::regprocedure")
    [(kit_oid, kit_owner, kit_language)] = server.query(owner, (copy,))
    assert (kit_owner, kit_language) == ("postgres", "sql")
    server.query(f"alter function {copy} owner to {MALLORY}")
    # As its owner, once given CREATE on the schema (taken back since), mallory rewrites it.
    server.query(f"grant usage, create on schema _c1 to {MALLORY}")
    with server.connect(user=MALLORY) as mallory:
        mallory.execute(f"create or replace function {copy} {COPIES} language plpgsql as $$"
                        f" begin {ESCALATE} return; end $$")
    server.query(f"revoke usage, create on schema _c1 from {MALLORY}")

    # Any DROP in the database runs the cluster's keeper event trigger, as a superuser here.
    server.query("create table scratch (); drop table scratch")
    assert not is_superuser(server)

    output = run(server, INSTALL_SQL)

    assert not is_superuser(server), output
    [(oid, new_owner, language)] = server.query(owner, (copy,))
    assert (new_owner, language) == ("postgres", "sql") and oid != kit_oid, output
    assert server.query("select count(*) from pg_catalog.pg_event_trigger e"
                        " where e.evtfoid = '_c1.slony_nodelock_keeper()'::regprocedure") == [(1,)]


# -- the keeper's event trigger name, already taken -----------------------------------------------

def test_install_gives_the_keeper_another_name_when_its_name_is_taken(server):
    stock = server.query(STOCK_STATE, ("_c1",))
    [(schema_oid,)] = server.query("select '_c1'::regnamespace::oid")
    taken = f"slony_nodelock_keeper_{schema_oid}"
    server.query("create function public.unrelated_audit() returns event_trigger language plpgsql"
                 " as 'begin end'")
    server.query(sql.SQL("create event trigger {} on sql_drop execute function public.unrelated_audit()")
                 .format(sql.Identifier(taken)))
    keepers = ("select e.evtname, e.evtenabled from pg_catalog.pg_event_trigger e"
               " where e.evtfoid = '_c1.slony_nodelock_keeper()'::regprocedure")

    output = run(server, INSTALL_SQL)

    assert 'patched cluster "c1" (schema "_c1")' in output, output
    assert server.query(keepers) == [(taken + "_1", "A")]
    assert server.query("select e.evtfoid::regproc::text from pg_catalog.pg_event_trigger e where e.evtname = %s",
                        (taken,)) == [("unrelated_audit",)]
    run(server, INSTALL_SQL)
    assert server.query(keepers) == [(taken + "_1", "A")]
    # The keeper works under its other name: a CASCADE that takes the kit's functions puts Slony's back.
    with server.connect() as conn:
        conn.execute("set client_min_messages = error")  # not the keeper's WARNINGs, nor what CASCADE takes
        conn.execute("drop extension plpython3u cascade")
    assert server.query(STOCK_STATE, ("_c1",)) == stock


def test_the_identity_trigger_reads_no_column_of_a_table_another_role_owns(server):
    # Issue 19, part 2: the trigger runs as a superuser. A cluster table handed to another role
    # (ALTER TABLE ... OWNER TO) lets that role retype nl_backendpid to an enum of its own with an
    # implicit cast to int4 through its own function; the trigger's NEW.nl_backendpid = ... would
    # then run that function as a superuser. Now it checks owner and column types first.
    run(server, INSTALL_SQL)
    server.query(f"alter table _c1.sl_nodelock owner to {MALLORY}; grant usage, create on schema _c1 to {MALLORY}")
    with server.connect(user=MALLORY) as mallory:
        mallory.execute(f"""
            create type _c1.pid_alike as enum ('1', '2');
            create function _c1.pid_to_int(_c1.pid_alike) returns int4 language plpgsql as $$
            begin {ESCALATE} return 1; end $$;
            create cast (_c1.pid_alike as int4) with function _c1.pid_to_int(_c1.pid_alike) as implicit;
            alter table _c1.sl_nodelock alter column nl_backendpid type _c1.pid_alike using '1';
        """)
        warnings: list[str] = []
        mallory.add_notice_handler(lambda d: warnings.append(d.message_primary))
        mallory.execute("insert into _c1.sl_nodelock (nl_nodeid, nl_backendpid) values (1, '2')")

    assert not is_superuser(server)
    assert warnings == [
        'slony-nodelock: did not record who took a lock row of cluster "c1" (schema "_c1"): its sl_nodelock is no '
        "longer a superuser's table with Slony's int4 columns, so the kit reads nothing of it; the write went through; "
        "check the node with: select * from slony_nodelock.verify()"], warnings
