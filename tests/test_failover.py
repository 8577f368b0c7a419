"""Failover's terminateNodeConnections(): stock Slony terminates nothing (killBackend's 'TERM'
sends signal 0); the kit terminates the failed node's live connections, and only those."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psycopg
import pytest

from slonybed import SlonyBed
from test_install import FUNCTION_STATE, add_stock_like_cluster

FAILOVER = "failover (id = 1, backup node = 2);"
# FUNCTION_STATE for any function name.
STATE_OF = FUNCTION_STATE.replace("'cleanupnodelock'", "%s")


@pytest.fixture
def three_nodes() -> Iterator[SlonyBed]:
    """Origin 1, forwarding subscribers 2 and 3, every slon running."""
    with SlonyBed(nodes=3) as bed:
        bed.build_replicating(forward=True)
        yield bed


def fail_node_1(bed: SlonyBed) -> tuple[psycopg.Connection, int, int]:
    """On node 2: a live backend registered for node 1, as a remote slon's worker registers with
    registerNodeConnection(), and another node-1 row whose PID a postgres-owned sleep holds. Then
    node 1 fails (its slon and server stop) and slonik fails it over to node 2.
    Returns the registered connection, its PID and the sleep's PID."""
    node2 = bed.node(2)
    registered = node2.connect(application_name="slon.node_2_listen")
    backend = registered.execute("select pg_catalog.pg_backend_pid()").fetchone()[0]
    registered.execute('select "_bed".registerNodeConnection(1)')
    sleep = bed.start_sleep()
    node2.query('insert into "_bed".sl_nodelock (nl_nodeid, nl_backendpid) values (1, %s)', (sleep.pid,))
    bed.slons[1].stop()
    bed.node(1).stop()
    bed.cluster.slonik(FAILOVER, timeout=240)
    return registered, backend, sleep.pid


def still_connected(server, pid: int) -> bool:
    deadline = time.monotonic() + 5  # a terminated backend takes a moment to leave
    while time.monotonic() < deadline:
        if not server.query("select 1 from pg_catalog.pg_stat_activity where pid = %s", (pid,)):
            return False
        time.sleep(0.1)
    return True


def node_1_rows(server) -> list[tuple]:
    return server.query('select nl_conncnt, nl_backendpid from "_bed".sl_nodelock where nl_nodeid = 1')


def test_stock_failover_leaves_the_failed_nodes_backend_connected(three_nodes):
    registered, backend, sleeper = fail_node_1(three_nodes)
    with registered:
        assert still_connected(three_nodes.node(2), backend), "stock terminateNodeConnections() ended it"
        assert node_1_rows(three_nodes.node(2)) == []
        os.kill(sleeper, 0)


def test_failover_with_the_kit_terminates_the_live_backend_and_nothing_else(three_nodes):
    for n in (1, 2, 3):
        three_nodes.install_fix(n)
    assert three_nodes.node(2).query("select cluster, patched, failover_patched from slony_nodelock.verify()") == [
        ("_bed", True, True)]

    registered, backend, sleeper = fail_node_1(three_nodes)

    assert not still_connected(three_nodes.node(2), backend)
    with pytest.raises(psycopg.OperationalError):
        registered.execute("select 1")
    registered.close()
    os.kill(sleeper, 0)  # raises if the sleep was signalled to death
    assert node_1_rows(three_nodes.node(2)) == []
    log = three_nodes.node(2).logfile.read_text()
    assert f"[{backend}] slon.node_2_listen FATAL:  terminating connection due to administrator command" in log


def test_terminate_says_per_row_what_it_did_and_why():
    with SlonyBed(nodes=1) as bed:
        server = bed.node(1)
        add_stock_like_cluster(server, "_c1")
        bed.install_fix(1)
        sleep = bed.start_sleep()
        with server.connect(application_name="slon.node_1_listen") as registered:
            backend = registered.execute("select pg_catalog.pg_backend_pid()").fetchone()[0]
            registered.execute("insert into _c1.sl_nodelock values (7, 1, pg_catalog.pg_backend_pid())")
            server.query("insert into _c1.sl_nodelock values (7, 2, %s), (8, 1, %s)", (sleep.pid, sleep.pid))
            notices: list[str] = []
            with server.connect() as slonik:
                slonik.add_notice_handler(lambda d: notices.append(d.message_primary))
                slonik.execute("select _c1.terminatenodeconnections(7)")

            assert notices == [
                f'slony-nodelock: failover: terminated the holder of the lock row (node 7, conncnt 1, pid {backend}) '
                f'of cluster "c1" (schema "_c1"): pid {backend} is the client backend that took the lock',
                f'slony-nodelock: failover: did not signal the holder of the lock row (node 7, conncnt 2, '
                f'pid {sleep.pid}) of cluster "c1" (schema "_c1"): pid {sleep.pid} is now "sleep" (user postgres, started '
                + notices[1].split("(user postgres, started ")[1]]
            assert not still_connected(server, backend)
            os.kill(sleep.pid, 0)
            assert server.query("select nl_nodeid, nl_conncnt from _c1.sl_nodelock") == [(8, 1)]


def test_the_opt_out_behaves_as_stock_and_uninstall_restores_both_functions(three_nodes):
    node2 = three_nodes.node(2)
    stock = {fn: node2.query(STATE_OF, ("_bed", fn))
             for fn in ("cleanupnodelock", "terminatenodeconnections")}
    for n in (1, 2, 3):
        three_nodes.install_fix(n)
    node2.query("alter database slony_test set slony_nodelock.failover_terminate = 'stock'")

    registered, backend, _ = fail_node_1(three_nodes)

    with registered:
        assert still_connected(node2, backend)
    assert node_1_rows(node2) == []
    three_nodes.uninstall_fix(2)
    for fn, state in stock.items():
        assert node2.query(STATE_OF, ("_bed", fn)) == state


def test_failover_never_terminates_its_own_session_nor_a_holder_only_adopted():
    with SlonyBed(nodes=1) as bed:
        server = bed.node(1)
        add_stock_like_cluster(server, "_c1")
        with server.connect(application_name="slon.node_1_listen") as adopted_holder:
            adopted = adopted_holder.execute("select pg_catalog.pg_backend_pid()").fetchone()[0]
            server.query("insert into _c1.sl_nodelock values (7, 1, %s)", (adopted,))
            bed.install_fix(1)  # adopts it: the holder carries a name slon gives
            assert server.query("select adopted from slony_nodelock.lock_identity") == [(True,)]
            with server.connect(application_name="slon.node_1_listen") as caller:
                caller.execute("insert into _c1.sl_nodelock values (7, 2, pg_catalog.pg_backend_pid())")
                notices: list[str] = []
                caller.add_notice_handler(lambda d: notices.append(d.message_primary))
                caller.execute("select _c1.terminatenodeconnections(7)")
                assert caller.execute("select 1").fetchone() == (1,)  # the caller's session lives on
            assert still_connected(server, adopted)
        assert [n.split(": ", 3)[-1] for n in notices] == [
            f"pid {adopted} is the client backend that took the lock, but only by install's adoption, which is no proof",
            "it is the backend running this failover"]
        assert all("did not signal" in n for n in notices)


def test_an_opt_out_setting_is_read_forgivingly_and_a_meaningless_one_is_named():
    with SlonyBed(nodes=1) as bed:
        server = bed.node(1)
        add_stock_like_cluster(server, "_c1")
        bed.install_fix(1)
        for value, warned in ((" Stock ", False), ("off", True)):
            with server.connect(application_name="slon.node_1_listen") as registered:
                backend = registered.execute("select pg_catalog.pg_backend_pid()").fetchone()[0]
                registered.execute("insert into _c1.sl_nodelock values (7, 1, pg_catalog.pg_backend_pid())")
                seen: list[str] = []
                with server.connect() as slonik:
                    slonik.add_notice_handler(lambda d: seen.append(f"{d.severity}: {d.message_primary}"))
                    slonik.execute("select pg_catalog.set_config('slony_nodelock.failover_terminate', %s, false)", (value,))
                    slonik.execute("select _c1.terminatenodeconnections(7)")
                assert still_connected(server, backend) is not warned, value
                assert ("WARNING: slony-nodelock: slony_nodelock.failover_terminate is 'off', which means nothing; "
                        "only 'stock' changes what a failover does, so the kit's own termination runs for cluster "
                        '"c1" (schema "_c1"); set it to \'stock\', or RESET it where it was set (ALTER DATABASE or '
                        "ALTER ROLE)" in seen) is warned, seen
