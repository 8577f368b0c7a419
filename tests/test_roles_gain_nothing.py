"""Issue 19's five reproductions, each beside a cluster that slonik made: an ordinary role shapes
objects like the kit's or like a cluster's, a superuser then runs the kit, and the role must come
out with no more rights than it had, unable to hold the kit up, and unable to make it act on or
advise about what that role made.

Roles: app owns the database (the usual application role: it may create schemas); mallory is a
plain login role, given CREATE on one superuser-owned schema where a test says so (every role
had it on public up to PostgreSQL 14).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
from psycopg import sql

from slonybed import SlonyBed
from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL
from slonybed.postgres import PostgresServer

CLUSTER_SCHEMA = "_bed"

# Makes the role named a superuser when a superuser runs it, and does nothing otherwise.
ESCALATE = """
    if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
        execute 'alter role {role} superuser';
    end if;
"""

# Long enough for any install on a busy machine, short enough that a script that waits on a
# role's lock fails the test instead of hanging it.
SCRIPT_DEADLINE = 90


@pytest.fixture
def node() -> Iterator[PostgresServer]:
    """One server with a cluster that slonik built (init cluster, a set, a table), and the roles
    app (owner of the database) and mallory (no privileges)."""
    with SlonyBed(nodes=1) as bed:
        bed.cluster.build()
        server = bed.node(1)
        server.query("create role app login; alter database slony_test owner to app; create role mallory login")
        yield server


def is_superuser(server: PostgresServer, role: str) -> bool:
    [(superuser,)] = server.query("select rolsuper from pg_catalog.pg_roles where rolname = %s", (role,))
    return superuser


def as_role(server: PostgresServer, role: str, statements: str) -> None:
    with server.connect(user=role) as conn:
        conn.execute(statements)


def language_of_cleanup(server: PostgresServer, schema: str = CLUSTER_SCHEMA) -> str:
    [(language,)] = server.query(
        "select l.lanname from pg_catalog.pg_proc p join pg_catalog.pg_language l on l.oid = p.prolang"
        " where p.pronamespace = pg_catalog.to_regnamespace(%s) and p.proname = 'cleanupnodelock'", (schema,))
    return language


def run_script(server: PostgresServer, script) -> subprocess.CompletedProcess:
    try:
        return server.psql_file(script, timeout=SCRIPT_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script.name} was still waiting after {SCRIPT_DEADLINE}s")


def output_of(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def superuser_runs_the_kit(server: PostgresServer) -> None:
    """What a DBA does on a node, as a superuser: check and look, upgrade (re-run install),
    uninstall. Whatever the kit refuses is for the caller to judge: what counts is what a role
    gained meanwhile."""
    with server.connect() as dba:
        for call in ("select slony_nodelock.assert_ok()", "select * from slony_nodelock.verify()",
                     "select * from slony_nodelock.status()", "create table scratch (); drop table scratch"):
            try:
                dba.execute(call)
            except Exception:  # noqa: BLE001
                pass
    for script in (INSTALL_SQL, UNINSTALL_SQL):
        run_script(server, script)


# -- 1. A schema slony_nodelock made before the install by the database's owner ---------------------

TRAP_IN_MIGRATION = """
    create schema slony_nodelock;
    create table slony_nodelock.migration (version int4 primary key, name text not null,
                                           script_sha256 text not null, applied_at timestamptz not null default now());
    create function slony_nodelock.trap() returns trigger language plpgsql as $$
    begin {escalate} return new; end $$;
    create trigger trap before insert on slony_nodelock.migration for each row execute function slony_nodelock.trap();
""".format(escalate=ESCALATE.format(role="app"))


@pytest.mark.parametrize("made", ["schema-with-a-trap", "empty-schema"])
def test_1_a_schema_slony_nodelock_made_by_the_database_owner_gives_it_nothing(node, made):
    if made == "schema-with-a-trap":
        as_role(node, "app", TRAP_IN_MIGRATION)
    else:
        as_role(node, "app", "create schema slony_nodelock")

    result = run_script(node, INSTALL_SQL)
    if made == "empty-schema":
        # What the owner of an empty schema could do after a clean install: swap the Python that
        # verify(), status() and every re-patch run as a superuser for its own, which returns
        # the kit's so that nothing fails and rolls its work back.
        source = "# slony-nodelock "
        if node.query("select pg_catalog.to_regprocedure('slony_nodelock.logic_source()')")[0][0]:
            [(source,)] = node.query("select slony_nodelock.logic_source()")
        with node.connect(user="app") as app:
            app.execute("drop function if exists slony_nodelock.logic_source()")
            app.execute(sql.SQL("create function slony_nodelock.logic_source() returns text language plpgsql"
                                " as {body}").format(body=sql.Literal(
                                    "begin " + ESCALATE.format(role="app") + " return "
                                    + sql.quote(source) + "; end")))
    superuser_runs_the_kit(node)

    assert not is_superuser(node, "app")
    assert result.returncode != 0
    assert ("ERROR:  slony-nodelock: the schema slony_nodelock belongs to app, who is not a superuser; nothing changed"
            in result.stderr), result.stderr
    assert language_of_cleanup(node) == "plpgsql"  # slonik's cluster was left as it was


# -- 2. A look-alike cluster in a superuser-owned schema where mallory may create ------------------

LOOK_ALIKE_CLUSTER = """
    create table shared.sl_node (no_id int4 primary key);
    create table shared.sl_nodelock (nl_nodeid int4, nl_conncnt int4, nl_backendpid int4,
                                     primary key (nl_nodeid, nl_conncnt));
    create function shared.cleanupnodelock() returns int4 language plpgsql as 'begin return 0; end';
    create function shared.terminatenodeconnections(p_failed_node int4) returns int4 language plpgsql
        as 'begin return 0; end';
"""

# nl_backendpid retyped to an enum whose implicit cast to int4 is mallory's function: whoever
# reads the column as int4 runs it, with its own rights.
CAST_TRAP = """
    create type shared.pid_label as enum ('1', '2', '3');
    create function shared.pid_label_to_int4(shared.pid_label) returns int4 language plpgsql as $$
    begin {escalate} return 1; end $$;
    create cast (shared.pid_label as int4) with function shared.pid_label_to_int4(shared.pid_label) as implicit;
    alter table shared.sl_nodelock alter column nl_backendpid type shared.pid_label
        using nl_backendpid::text::shared.pid_label;
    insert into shared.sl_nodelock values (1, 1, '1');
""".format(escalate=ESCALATE.format(role="mallory"))


def test_2_a_look_alike_cluster_in_a_superuser_schema_is_not_patched_and_gives_its_author_nothing(node):
    node.query("create schema shared; grant usage, create on schema shared to mallory")
    as_role(node, "mallory", LOOK_ALIKE_CLUSTER)

    install = run_script(node, INSTALL_SQL)
    as_role(node, "mallory", CAST_TRAP)
    superuser_runs_the_kit(node)

    assert not is_superuser(node, "mallory")
    assert install.returncode == 0, output_of(install)
    assert 'patched cluster "bed" (schema "_bed")' in output_of(install)
    assert "NOTICE:  slony-nodelock: skipped schema shared: " in install.stderr, install.stderr
    assert language_of_cleanup(node, "shared") == "plpgsql"
    assert node.query("select count(*) from pg_catalog.pg_trigger where tgrelid = 'shared.sl_nodelock'::regclass"
                      " and not tgisinternal") == [(0,)]


# -- 3. A decoy function that looked like the kit's to uninstall -----------------------------------

def test_3_a_decoy_cleanupnodelock_in_a_roles_own_schema_does_not_stop_uninstall(node):
    install = run_script(node, INSTALL_SQL)
    assert install.returncode == 0, output_of(install)
    node.query("create schema mallory authorization mallory")
    as_role(node, "mallory", """
        set check_function_bodies = off;
        create function mallory.cleanupnodelock() returns int4 language sql as '# slony-nodelock 0.1.0 decoy';
        create function mallory.terminatenodeconnections(int4) returns int4 language sql
            as '# slony-nodelock 0.1.0 decoy';
    """)

    uninstall = run_script(node, UNINSTALL_SQL)

    assert uninstall.returncode == 0, output_of(uninstall)
    assert "update functions" not in output_of(uninstall).lower()
    assert language_of_cleanup(node) == "plpgsql"  # slonik's own function is back
    assert node.query("select count(*) from pg_catalog.pg_proc where pronamespace = 'mallory'::regnamespace") == [(2,)]


# -- 4. Locks an ordinary role took to hold install, upgrade and uninstall up ----------------------

def test_4_no_lock_a_plain_role_can_take_holds_install_upgrade_or_uninstall_up(node):
    first = run_script(node, INSTALL_SQL)
    assert first.returncode == 0, output_of(first)
    with node.connect(user="mallory") as advisory, node.connect(user="mallory") as reader:
        advisory.execute("select pg_catalog.pg_advisory_lock(pg_catalog.hashtext('slony_nodelock install'))")
        for schema, table in [("slony_nodelock", "lock_identity"), ("slony_nodelock", "migration"),
                              ("slony_nodelock", "stock_function"), (CLUSTER_SCHEMA, "sl_nodelock")]:
            reader.execute("begin")
            with pytest.raises(Exception, match=f"permission denied for table {table}"):
                reader.execute(f"lock table {schema}.{table} in access share mode")
            reader.execute("rollback")
        reader.execute("begin")  # left open, holding whatever mallory could lock

        started = time.monotonic()
        results = [run_script(node, script) for script in (INSTALL_SQL, UNINSTALL_SQL, INSTALL_SQL)]
        took = time.monotonic() - started

    for result in results:
        assert result.returncode == 0, output_of(result)
    assert took < SCRIPT_DEADLINE
    assert language_of_cleanup(node) == "plpython3u"


# -- 5. Look-alike tables that turned monitoring red and stopped install ---------------------------

def test_5_look_alike_tables_neither_turn_monitoring_red_nor_stop_install(node):
    node.query("create schema app authorization app; create schema shared; grant usage, create on schema shared to mallory")
    as_role(node, "app", """
        create table app.sl_node (no_id int4);
        create table app.sl_nodelock (nl_nodeid int4, nl_conncnt int4, nl_backendpid int4);
    """)
    as_role(node, "mallory", """
        create table shared.sl_node (no_id int4);
        create table shared.sl_nodelock (nl_nodeid int4, nl_conncnt int4, nl_backendpid text);
        create function shared.cleanupnodelock() returns int4 language plpgsql as 'begin return 0; end';
    """)

    install = run_script(node, INSTALL_SQL)

    assert install.returncode == 0, output_of(install)
    assert 'patched cluster "bed" (schema "_bed")' in output_of(install)
    assert node.query("select slony_nodelock.assert_ok()") == [(1,)]
    [(problems,)] = node.query("select string_agg(coalesce(problems, ''), ' ') from slony_nodelock.verify()")
    assert "app" not in problems and "shared" not in problems, problems
    everything_said = output_of(install) + problems
    assert "OWNER TO" not in everything_said.upper() and "to a superuser" not in everything_said, everything_said
