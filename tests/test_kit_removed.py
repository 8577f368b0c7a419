"""The kit taken away under a running node, by a CASCADE: slon keeps a working cleanupNodelock(),
and the checks say what is wrong instead of all is well."""

from __future__ import annotations

import pytest

from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL
from test_install import FUNCTION_STATE, add_stock_like_cluster, gone_backend_pid, server  # noqa: F401  (fixture)
from notices import INSTALL_COMMAND as INSTALL


def notices_of(server, statement: str, params: tuple = ()) -> list[str]:
    """Run statement; return every NOTICE and WARNING it raised, with its severity."""
    seen: list[str] = []
    with server.connect() as conn:
        conn.add_notice_handler(lambda d: seen.append(f"{d.severity}: {d.message_primary}"))
        conn.execute(statement, params)
    return seen


def restart_slon_1(bed) -> None:
    bed.slons[1].stop()
    bed.cluster.wait_lock_holder_gone(1)
    slon = bed.start_slon(1)
    bed.cluster.wait_slon_holds_lock(slon)
    bed.cluster.assert_replicates(1, 2)


def test_slon_keeps_running_and_restarts_when_our_schema_is_dropped(fixed_bed):
    bed, node = fixed_bed, fixed_bed.node(1)
    holder = bed.cluster.wait_slon_holds_lock(bed.slons[1])

    node.query("drop schema slony_nodelock cascade")

    # slon's cleanup thread runs cleanupEvent(), which calls cleanupNodelock().
    seen = notices_of(node, 'select "_bed".cleanupEvent(%s::interval)', ("10 minutes",))
    warnings = [n for n in seen if n.startswith("WARNING") and "slony-nodelock" in n]
    assert len(warnings) == 1, seen
    assert warnings[0] == (
        'WARNING: slony-nodelock: cluster "bed" (schema "_bed") cannot read the kit\'s lock records (relation '
        '"slony_nodelock.lock_identity" does not exist), so its locks are judged without them: a row whose PID a '
        "backend named like slon's holds is kept (a NOTICE says so), every other stale row is still removed; "
        "repair the kit with: " + INSTALL)
    assert bed.cluster.own_lock_pid(1) == holder
    assert bed.slons[1].alive()
    bed.cluster.assert_replicates(1, 2)

    restart_slon_1(bed)
    assert "cannot read the kit's lock records" in bed.slons[1].log

    # Slony's own functions went with the schema's saved copies, but the cluster's schema keeps a
    # copy of its own: uninstall.sql puts them back exactly, as update functions would load them.
    result = node.psql_file(UNINSTALL_SQL)
    assert result.returncode == 0, result.stderr
    assert ('NOTICE:  slony-nodelock: restored Slony\'s own cleanupnodelock() in cluster "bed" (schema "_bed")\n'
            in result.stderr), result.stderr
    restored = node.query(FUNCTION_STATE, ("_bed",))
    assert restored[0][1] == "plpgsql"
    bed.cluster.slonik("update functions (id = 1);")
    assert node.query(FUNCTION_STATE, ("_bed",)) == restored


def test_a_missing_cleanupnodelock_is_reported_and_install_puts_ours_back(fixed_bed):
    bed, node = fixed_bed, fixed_bed.node(1)
    definition = node.query(FUNCTION_STATE, ("_bed",))[0][5]
    # Dropped by name and created anew in one transaction: nothing of ours stands in the way,
    # and the new function is patched.
    with node.connect() as conn:
        with conn.transaction():
            conn.execute('drop function "_bed".cleanupnodelock()')
            conn.execute(definition.replace("CREATE OR REPLACE FUNCTION", "CREATE FUNCTION"))
    assert node.query("select cluster, patched, problems from slony_nodelock.verify()") == [("_bed", True, None)]

    # Dropped by name and left so: a WARNING, and nothing put back behind the dropper's back.
    seen = notices_of(node, 'drop function "_bed".cleanupnodelock()')
    assert ('WARNING: slony-nodelock: cleanupnodelock() of cluster "bed" (schema "_bed") in database slony_test was '
            "dropped; slon cannot start on this node until it is back: run " + INSTALL) in seen, seen

    assert node.query("select cluster, patched, problems like 'cleanupnodelock() is missing, so slon cannot start%'"
                      " from slony_nodelock.verify()") == [("_bed", False, True)]
    with pytest.raises(Exception, match=r'cluster "bed" \(schema "_bed"\): cleanupnodelock\(\) is missing'):
        node.query("select slony_nodelock.assert_ok()")

    bed.install_fix(1)

    assert node.query("select cluster, patched, problems from slony_nodelock.verify()") == [("_bed", True, None)]
    restart_slon_1(bed)


def test_dropping_plpython_puts_slonys_function_back_and_the_checks_name_every_cluster(fixed_bed):
    bed, node = fixed_bed, fixed_bed.node(1)
    add_stock_like_cluster(node, "_second")
    bed.install_fix(1)
    saved = dict(node.query("select cluster_schema, prosrc from slony_nodelock.stock_function"
                            " where function_name = 'cleanupnodelock'"))

    seen = notices_of(node, "drop extension plpython3u cascade")

    for cluster in ("_bed", "_second"):
        assert (f'WARNING: slony-nodelock: cleanupnodelock() of cluster "{cluster[1:]}" (schema "{cluster}") in '
                "database slony_test was dropped by a CASCADE; Slony's own version is back so that slon keeps "
                "working, but the cluster is NOT patched until you run " + INSTALL) in seen, seen
        [state] = node.query(FUNCTION_STATE, (cluster,))
        assert (state[0], state[1]) == (saved[cluster], "plpgsql")
    [(cluster, patched)] = node.query("select cluster, patched from slony_nodelock.verify() where cluster = '_bed'")
    assert not patched
    with pytest.raises(Exception) as raised:
        node.query("select slony_nodelock.assert_ok()")
    assert 'cluster "bed" (schema "_bed"): cleanupnodelock() is Slony\'s stock one' in str(raised.value)
    assert 'cluster "second" (schema "_second"): cleanupnodelock() is Slony\'s stock one' in str(raised.value)

    # Slony's own function, put back, is what slon runs now.
    assert bed.slons[1].alive()
    node.query('select "_bed".cleanupEvent(%s::interval)', ("10 minutes",))
    restart_slon_1(bed)

    # Installing again brings the language and the patch back.
    bed.install_fix(1)
    assert node.query("select cluster, patched, problems from slony_nodelock.verify()") == [
        ("_bed", True, None), ("_second", True, None)]


def test_a_dropped_helper_function_never_fails_slons_cleanup_and_the_checks_name_it(server):  # noqa: F811
    # Nothing depends on record_is_current(), so DROP FUNCTION without CASCADE takes it alone.
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    stale = gone_backend_pid(server)
    server.query("insert into _c1.sl_nodelock values (2, 0, %s)", (stale,))
    server.query("drop function slony_nodelock.record_is_current(name, int4, int4, int4, xid)")
    with server.connect(application_name="slon.local_listen") as slon:
        slon.execute("insert into _c1.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())")

        seen = notices_of(server, "select _c1.cleanupnodelock()")  # raises if slon's start-up would fail

        assert server.query("select nl_nodeid, nl_backendpid from _c1.sl_nodelock") == [(1, slon.info.backend_pid)]
        assert any(n.startswith('WARNING: slony-nodelock: cluster "c1" (schema "_c1") cannot read the kit\'s lock '
                                'records') for n in seen), seen
        with pytest.raises(Exception, match=r"the function slony_nodelock.record_is_current\(\) is missing"):
            server.query("select slony_nodelock.assert_ok()")
        assert server.psql_file(INSTALL_SQL).returncode == 0
        assert server.query("select slony_nodelock.assert_ok()") == [(1,)]
