"""slony_nodelock.assert_ok() on real servers: it counts the clusters it checked, and a database
with none raises, so that a check pointed at the wrong database does not pass for healthy, unless
the caller says that none is expected."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from slonybed.bed import INSTALL_SQL
from test_install import add_stock_like_cluster, server  # noqa: F401  (fixture)
from test_upgrade_from_release import release_0_2_0_install_sql, run_release_0_2_0_install  # noqa: F401  (fixture)

NO_CLUSTER = ("slony-nodelock: database slony_test holds no Slony cluster, so nothing was checked; connect to "
              "the node's database (psql -d DB), or call slony_nodelock.assert_ok(p_none_expected => true) "
              "where none is expected")
# Every assert_ok there is: after an upgrade there must be one, or a call without arguments is ambiguous.
ASSERT_OK_FUNCTIONS = ("select p.oid::pg_catalog.regprocedure::text from pg_catalog.pg_proc p "
                       "where p.proname = 'assert_ok' order by 1")


def install(server) -> None:
    result = server.psql_file(INSTALL_SQL)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_database_without_a_cluster_raises_unless_none_is_expected(server):
    install(server)

    with pytest.raises(psycopg.errors.RaiseException) as raised:
        server.query("select slony_nodelock.assert_ok()")
    assert raised.value.diag.message_primary == NO_CLUSTER

    assert server.query("select slony_nodelock.assert_ok(p_none_expected => true)") == [(0,)]
    with pytest.raises(psycopg.errors.RaiseException):
        server.query("select slony_nodelock.assert_ok(false)")
    # As monitoring runs it: psql fails, with the one line.
    result = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", server.conninfo(),
                             "-c", "select slony_nodelock.assert_ok()"],
                            capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == f"ERROR:  {NO_CLUSTER}", result.stderr
    assert server.query("select pg_catalog.obj_description('slony_nodelock.assert_ok(boolean)'::pg_catalog.regprocedure)") == [
        ("slony-nodelock: raise unless every cluster is patched and well; with no cluster, raise unless p_none_expected",)]


def test_a_database_with_clusters_returns_how_many_were_checked(server):
    for schema in ("_a", "_b"):
        add_stock_like_cluster(server, schema)
    install(server)

    assert server.query("select slony_nodelock.assert_ok()") == [(2,)]
    assert server.query("select slony_nodelock.assert_ok(p_none_expected => true)") == [(2,)]


BOTH = [("slony_nodelock.assert_ok()",), ("slony_nodelock.assert_ok(boolean)",)]


def test_installing_over_the_zero_argument_assert_ok_keeps_it_unambiguous_and_its_grants(server):
    add_stock_like_cluster(server, "_c")
    install(server)
    # What releases up to 0.3.0 left, made by hand, with a monitoring role's grant on it.
    server.query("drop function slony_nodelock.assert_ok(boolean); drop function slony_nodelock.assert_ok();"
                 "create function slony_nodelock.assert_ok() returns int4 language sql as 'select 42';"
                 "create role nagios; grant execute on function slony_nodelock.assert_ok() to nagios")

    install(server)

    assert server.query(ASSERT_OK_FUNCTIONS) == BOTH
    assert server.query("select slony_nodelock.assert_ok()") == [(1,)]
    assert server.query("select pg_catalog.has_function_privilege('nagios', 'slony_nodelock.assert_ok()', 'execute')") == [(True,)]
    install(server)  # again: nothing changes
    assert server.query(ASSERT_OK_FUNCTIONS) == BOTH


def test_an_older_install_run_over_this_release_leaves_assert_ok_callable(
        release_0_2_0_install_sql, server):  # noqa: F811
    """A downgrade by mistake (0.2.0's install.sql over this release) recreates 0.2.0's assert_ok():
    a call without arguments must still find exactly one function."""
    add_stock_like_cluster(server, "_c")
    install(server)
    run_release_0_2_0_install(server, release_0_2_0_install_sql)  # refused or not, assert_ok() must stay callable

    assert server.query("select slony_nodelock.assert_ok()") == [(1,)]


def test_upgrading_a_release_with_the_zero_argument_assert_ok_leaves_it_unambiguous(
        release_0_2_0_install_sql, server):  # noqa: F811
    add_stock_like_cluster(server, "_c")
    result = run_release_0_2_0_install(server, release_0_2_0_install_sql)
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.query(ASSERT_OK_FUNCTIONS) == [("slony_nodelock.assert_ok()",)]

    install(server)

    assert server.query(ASSERT_OK_FUNCTIONS) == BOTH
    assert server.query("select slony_nodelock.assert_ok()") == [(1,)]


def test_installing_over_a_build_with_a_defaulted_assert_ok_works(server):
    """A build between 0.3.0 and 0.4.0 had assert_ok(boolean DEFAULT false); CREATE OR REPLACE
    cannot take a default away, so install drops that one first."""
    add_stock_like_cluster(server, "_c")
    install(server)
    server.query("drop function slony_nodelock.assert_ok(); drop function slony_nodelock.assert_ok(boolean);"
                 "create function slony_nodelock.assert_ok(p_none_expected boolean default false) returns int4"
                 " language sql as 'select 42'")

    install(server)

    assert server.query(ASSERT_OK_FUNCTIONS) == BOTH
    assert server.query("select slony_nodelock.assert_ok()") == [(1,)]
