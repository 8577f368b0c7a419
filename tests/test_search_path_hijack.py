"""A non-superuser owns the schema first on the superuser's search_path and shadows what our code
calls, functions and operators alike. Install, cleanupNodelock(), verify(), the re-patch when
Slony's function is loaded again (as update functions does), and uninstall must never run any of it."""

from __future__ import annotations

import subprocess

from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL

HIJACK = "-c search_path=mallory,pg_catalog,public"
# Functions shadowed: (name, argument types, result type). Each shadow notes its call in
# mallory.called, then does what pg_catalog's would.
FUNCTIONS = [
    ("pg_backend_pid", [], "int4"), ("now", [], "timestamptz"), ("quote_ident", ["text"], "text"),
    ("format", ["text", "text"], "text"), ("format", ["text", "text", "text"], "text"),
    ("unnest", ["anyarray"], "setof anyelement"), ("current_setting", ["text"], "text"),
    ("to_regnamespace", ["text"], "regnamespace"), ("current_database", [], "name"),
    ("pg_is_in_recovery", [], "boolean"), ("to_regclass", ["text"], "regclass"),
    ("cardinality", ["anyarray"], "int4"), ("array_to_string", ["anyarray", "text"], "text"),
    ("hashtext", ["text"], "int4"), ("pg_get_functiondef", ["oid"], "text"), ("lower", ["text"], "text"),
]
# Operators shadowed: (operator, operand type, result type, the shadow's function name).
OPERATORS = [
    ("||", "text", "text", "textcat"), ("<>", "int4", "boolean", "int4ne"), ("=", "int4", "boolean", "int4eq"),
    ("=", "text", "boolean", "texteq"), ("=", "name", "boolean", "nameeq"), ("=", "oid", "boolean", "oideq"),
]


def shadows() -> str:
    lines = ["create role mallory login;", "create schema mallory authorization mallory;", "set role mallory;",
             "create table mallory.called (name text, query text default pg_catalog.current_query());"]
    for name, args, returns in FUNCTIONS:
        call = f"pg_catalog.{name}({', '.join(f'${i}' for i in range(1, len(args) + 1))})"
        lines.append(f"create function mallory.{name}({', '.join(args)}) returns {returns} language sql as\n"
                     f"  $$ insert into mallory.called values ('{name}'); select {call} $$;")
    # Returning setof record, pg_stat_get_activity's shadow needs select * rather than a call.
    lines.append("create function mallory.pg_stat_get_activity(int4) returns setof record language sql as\n"
                 "  $$ insert into mallory.called values ('pg_stat_get_activity');"
                 " select * from pg_catalog.pg_stat_get_activity($1) $$;")
    for operator, operand, returns, function in OPERATORS:
        lines.append(f"create function mallory.{function}({operand}, {operand}) returns {returns} language sql as\n"
                     f"  $$ insert into mallory.called values ('{operator} {operand}');"
                     f" select $1 operator(pg_catalog.{operator}) $2 $$;")
        lines.append(f"create operator mallory.{operator} (leftarg = {operand}, rightarg = {operand}, "
                     f"function = mallory.{function});")
    lines += ["grant usage on schema mallory to public;", "grant insert on mallory.called to public;", "reset role;"]
    return "\n".join(lines)


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
    node.query(shadows())
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
