"""Slony nodes as containers, on each PostgreSQL major Debian packages Slony for, and mixed.

A container restart is a fresh PID namespace that hands out the same PIDs in nearly the same
order, so stock slon's own new local_listen backend often gets the very PID in its stale lock row:
stock keeps the row, and slon dies on the duplicate key. Nothing is forced here. With the kit
installed (while the slons run), slon must start after every crash-restart, and rows replicate.
"""

from __future__ import annotations

import pytest

from slonybed.containerbed import ContainerCluster, ContainerNode, matrix_rows

CRASHES = 4
# All nodes of a cluster must run one Slony release: bullseye's (PostgreSQL 13) is 2.2.10, the
# others' 2.2.11, so PostgreSQL 13 is tested alone.
MATRIX = {"pg13": (13, 13), "pg15": (15, 15), "pg17": (17, 17), "pg15+pg17": (15, 17)}


def crash_restarts(cluster: ContainerCluster, times: int) -> int:
    """Crash node 1's container times; return how often its slon was refused on the way up. A
    refused slon is started again (its failed backend has freed the PID by then), as an
    operator would."""
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    refused = 0
    for _ in range(times):
        boot = node1.query("select pg_catalog.now()::text")[0][0]
        node1.crash_restart()
        node2.restart_slon()  # its connections to node 1 died with it; a supervisor restarts it
        if cluster.wait_slon_outcome(1, boot) == "refused":
            refused += 1
            node1.restart_slon()
            assert cluster.wait_slon_outcome(1, boot) == "runs"
        cluster.assert_replicates(1, 2)
    return refused


@pytest.mark.parametrize("name", list(MATRIX))
def test_stock_slon_fails_after_container_restarts_and_the_kit_makes_it_start_every_time(name, engine, images):
    _, run_id = engine
    majors = MATRIX[name]
    nodes = {n: ContainerNode(n, major, images(major), run_id) for n, major in enumerate(majors, start=1)}
    try:
        for node in nodes.values():
            node.start()
        cluster = ContainerCluster(nodes)
        cluster.build_replicating()

        stock_failures = crash_restarts(cluster, CRASHES)

        for node in nodes.values():
            code, out = node.psql_file("/kit/sql/install.sql")
            assert code == 0 and "patched cluster _bed" in out, out
        kit_failures = crash_restarts(cluster, CRASHES)
        matrix_rows.append((name, CRASHES, stock_failures, kit_failures))

        assert kit_failures == 0
        assert stock_failures >= 1, f"{name}: stock slon started after each of {CRASHES} container restarts"
        for node in nodes.values():
            assert node.query("select patched, problems from slony_nodelock.verify()") == [(True, None)]
    finally:
        for node in nodes.values():
            node.stop()
