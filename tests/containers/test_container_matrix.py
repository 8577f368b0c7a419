"""Slony nodes as containers, on each PostgreSQL major Debian packages Slony for, and mixed.

A container restart is a fresh PID namespace that hands out the same PIDs in nearly the same
order, so stock slon's own new local_listen backend often gets the very PID in its stale lock row:
stock keeps the row, and slon dies on the duplicate key. Nothing is forced here. With the kit
installed (while the slons run), slon must start after every crash-restart, and rows replicate.
"""

from __future__ import annotations

import pytest

from slonybed.containerbed import ContainerCluster, ContainerNode, matrix_rows
from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL
from slonybed.slony import DUPLICATE_LOCK
from test_upgrade_from_release import SLONY_FUNCTIONS

# Stock fails on every other restart (see README), so five give it two chances at least.
STOCK_CRASHES = 5
KIT_CRASHES = 4
# All nodes of a cluster must run one Slony release: bullseye's (PostgreSQL 13) is 2.2.10, the
# others' 2.2.11, so PostgreSQL 13 is tested alone.
MATRIX = {"pg13": (13, 13), "pg15": (15, 15), "pg17": (17, 17), "pg15+pg17": (15, 17)}


def crash_restarts(cluster: ContainerCluster, times: int) -> int:
    """Crash node 1's container times; return how often its slon was refused on the way up. A
    refused slon is started again (its failed backend has freed the PID by then), as an
    operator would.

    node 2 stands for another host: its slon takes about a minute to reconnect to a node that
    went away, so node 1 boots undisturbed by it. Its slon is stopped before the crash and
    started once node 1's slon is up, which is the same without the minute."""
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    refused = 0
    for _ in range(times):
        node2.stop_slon()
        boot = node1.query("select pg_catalog.now()::text")[0][0]
        _, stale_row = cluster.own_lock(1)
        log_from = len(node1.slon_log())
        node1.crash_restart()
        if cluster.wait_slon_outcome(1, boot, stale_row, log_from) == "refused":
            refused += 1
            log_from = len(node1.slon_log())
            node1.restart_slon()
            assert cluster.wait_slon_outcome(1, boot, stale_row, log_from) == "runs"
        node2.restart_slon()
        cluster.assert_replicates(1, 2)
    return refused


@pytest.mark.parametrize("name", list(MATRIX))
def test_stock_slon_fails_after_container_restarts_and_the_kit_makes_it_start_every_time(name, engine, images,
                                                                                         control_root):
    _, run_id = engine
    majors = MATRIX[name]
    nodes = {n: ContainerNode(n, major, images(major), run_id, control_root / f"node{n}")
             for n, major in enumerate(majors, start=1)}
    try:
        for node in nodes.values():
            node.start()
        cluster = ContainerCluster(nodes)
        cluster.build_replicating()
        stock = {n: node.query(SLONY_FUNCTIONS) for n, node in nodes.items()}

        stock_failures = crash_restarts(cluster, STOCK_CRASHES)

        for node in nodes.values():
            result = node.psql_file(INSTALL_SQL)
            assert result.returncode == 0 and "patched cluster _bed" in result.stderr, result.stdout + result.stderr
        kit_failures = crash_restarts(cluster, KIT_CRASHES)
        matrix_rows.append((name, STOCK_CRASHES, stock_failures, KIT_CRASHES, kit_failures))

        assert kit_failures == 0
        assert stock_failures >= 1, f"{name}: stock slon started after each of {STOCK_CRASHES} container restarts"
        # A second slon for a node is still refused, and the first goes on.
        # (slon's watchdog exits 0 whatever happened; its log says why.)
        _, out = nodes[1].run_once("slon", "bed", nodes[1].conninfo(), timeout=60)
        assert DUPLICATE_LOCK in out, out
        assert nodes[1].slon_exit() is None
        # slonik's UPDATE FUNCTIONS reloads Slony's functions; the kit patches them again.
        cluster.slonik("".join(f"update functions (id = {n});\n" for n in nodes))
        for node in nodes.values():
            assert node.query("select patched, failover_patched, problems from slony_nodelock.verify()") == [
                (True, True, None)]
        cluster.assert_replicates(1, 2)
        for n, node in nodes.items():
            result = node.psql_file(UNINSTALL_SQL)
            assert result.returncode == 0, result.stdout + result.stderr
            assert node.query(SLONY_FUNCTIONS) == stock[n]
            assert node.query("select pg_catalog.to_regnamespace('slony_nodelock')") == [(None,)]
    finally:
        for node in nodes.values():
            node.stop()
