"""A non-superuser owns the schema first on the superuser's search_path and shadows what our code
calls, functions and operators alike. Install, cleanupNodelock(), verify(), the re-patch when
Slony's function is loaded again (as update functions does), and uninstall must never run any of it."""

from __future__ import annotations

import subprocess

from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL

HIJACK = "-c search_path=mallory,pg_catalog,public"
# Each shadow notes its call in mallory.called, then does what the real one would.
SHADOWS = """
create role mallory login;
create schema mallory authorization mallory;
set role mallory;
create table mallory.called (name text, query text default pg_catalog.current_query());
create function mallory.pg_backend_pid() returns int4 language sql as
  $$ insert into mallory.called values ('pg_backend_pid'); select pg_catalog.pg_backend_pid() $$;
create function mallory.now() returns timestamptz language sql as
  $$ insert into mallory.called values ('now'); select pg_catalog.now() $$;
create function mallory.quote_ident(text) returns text language sql as
  $$ insert into mallory.called values ('quote_ident'); select pg_catalog.quote_ident($1) $$;
create function mallory.format(text, text) returns text language sql as
  $$ insert into mallory.called values ('format'); select pg_catalog.format($1, $2) $$;
create function mallory.format(text, text, text) returns text language sql as
  $$ insert into mallory.called values ('format'); select pg_catalog.format($1, $2, $3) $$;
create function mallory.unnest(anyarray) returns setof anyelement language sql as
  $$ insert into mallory.called values ('unnest'); select pg_catalog.unnest($1) $$;
create function mallory.pg_stat_get_activity(int4) returns setof record language sql as
  $$ insert into mallory.called values ('pg_stat_get_activity'); select * from pg_catalog.pg_stat_get_activity($1) $$;
create function mallory.current_setting(text) returns text language sql as
  $$ insert into mallory.called values ('current_setting'); select pg_catalog.current_setting($1) $$;
create function mallory.to_regnamespace(text) returns regnamespace language sql as
  $$ insert into mallory.called values ('to_regnamespace'); select pg_catalog.to_regnamespace($1) $$;
create function mallory.current_database() returns name language sql as
  $$ insert into mallory.called values ('current_database'); select pg_catalog.current_database() $$;
create function mallory.pg_is_in_recovery() returns boolean language sql as
  $$ insert into mallory.called values ('pg_is_in_recovery'); select pg_catalog.pg_is_in_recovery() $$;
create function mallory.to_regclass(text) returns regclass language sql as
  $$ insert into mallory.called values ('to_regclass'); select pg_catalog.to_regclass($1) $$;
create function mallory.cardinality(anyarray) returns int4 language sql as
  $$ insert into mallory.called values ('cardinality'); select pg_catalog.cardinality($1) $$;
create function mallory.array_to_string(anyarray, text) returns text language sql as
  $$ insert into mallory.called values ('array_to_string'); select pg_catalog.array_to_string($1, $2) $$;
create function mallory.hashtext(text) returns int4 language sql as
  $$ insert into mallory.called values ('hashtext'); select pg_catalog.hashtext($1) $$;
create function mallory.pg_get_functiondef(oid) returns text language sql as
  $$ insert into mallory.called values ('pg_get_functiondef'); select pg_catalog.pg_get_functiondef($1) $$;
create function mallory.textcat(text, text) returns text language sql as
  $$ insert into mallory.called values ('|| text'); select $1 operator(pg_catalog.||) $2 $$;
create operator mallory.|| (leftarg = text, rightarg = text, function = mallory.textcat);
create function mallory.int4ne(int4, int4) returns boolean language sql as
  $$ insert into mallory.called values ('<> int4'); select $1 operator(pg_catalog.<>) $2 $$;
create operator mallory.<> (leftarg = int4, rightarg = int4, function = mallory.int4ne);
create function mallory.lower(text) returns text language sql as
  $$ insert into mallory.called values ('lower'); select pg_catalog.lower($1) $$;
create function mallory.int4eq(int4, int4) returns boolean language sql as
  $$ insert into mallory.called values ('= int4'); select $1 operator(pg_catalog.=) $2 $$;
create operator mallory.= (leftarg = int4, rightarg = int4, function = mallory.int4eq);
create function mallory.texteq(text, text) returns boolean language sql as
  $$ insert into mallory.called values ('= text'); select $1 operator(pg_catalog.=) $2 $$;
create operator mallory.= (leftarg = text, rightarg = text, function = mallory.texteq);
create function mallory.nameeq(name, name) returns boolean language sql as
  $$ insert into mallory.called values ('= name'); select $1 operator(pg_catalog.=) $2 $$;
create operator mallory.= (leftarg = name, rightarg = name, function = mallory.nameeq);
create function mallory.oideq(oid, oid) returns boolean language sql as
  $$ insert into mallory.called values ('= oid'); select $1 operator(pg_catalog.=) $2 $$;
create operator mallory.= (leftarg = oid, rightarg = oid, function = mallory.oideq);
grant usage on schema mallory to public;
grant insert on mallory.called to public;
reset role;
"""


def psql(server, script) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", server.conninfo(options=HIJACK),
                           "-f", str(script)], capture_output=True, text=True, timeout=180)


def called(server) -> list[str]:
    return [name for (name,) in server.query("select name from mallory.called order by 1")]


def callers(server) -> list[tuple[str, str]]:
    return server.query("select distinct name, pg_catalog.left(query, 300) from mallory.called order by 1, 2")


def test_no_shadowing_function_or_operator_runs_in_install_cleanup_verify_repatch_or_uninstall(bed):
    bed.build_replicating()
    node = bed.node(1)
    node.query(SHADOWS)
    # The shadows do win where a name is looked up on this search_path.
    with node.connect(options=HIJACK) as conn:
        conn.execute("select pg_backend_pid(), 1 = 1, format('%s', 'x')")
    assert called(node) == ["= int4", "format", "pg_backend_pid"]
    node.query("truncate mallory.called")

    # What slonik's update functions runs for this function: Slony's own definition, again. (Not
    # slonik itself here: its own queries, Slony's code, would call the shadows.)
    [(stock,)] = node.query("select pg_catalog.pg_get_functiondef('_bed.cleanupnodelock()'::pg_catalog.regprocedure)")
    result = psql(node, INSTALL_SQL)
    assert result.returncode == 0, result.stderr
    with node.connect(options=HIJACK) as conn:
        conn.execute("select _bed.cleanupnodelock()")
        assert conn.execute("select patched, problems from slony_nodelock.verify()").fetchall() == [(True, None)]
        conn.execute(stock)
    # The re-patch trigger ran in that session, on its search_path.
    assert node.query("select patched, problems from slony_nodelock.verify()") == [(True, None)]
    assert node.query("select pg_catalog.count(*) from slony_nodelock.repatch_log") != [(0,)]
    bed.cluster.assert_replicates(1, 2)
    result = psql(node, UNINSTALL_SQL)
    assert result.returncode == 0, result.stderr

    found = callers(node)
    assert found == [], "\n".join(map(str, found))
