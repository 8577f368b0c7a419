"""Slony nodes as containers, on each PostgreSQL major Debian packages Slony for, and mixed.

A container restart is a fresh PID namespace that hands out the same PIDs in nearly the same
order, so stock slon's own new local_listen backend often gets the very PID in its stale lock row:
stock keeps the row, and slon dies on the duplicate key. Nothing is forced here. With the kit
installed (while the slons run), slon must start after every crash-restart, and rows replicate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from notices import PATCHED_BED, no_process, removal
from slonybed.containerbed import ContainerCluster, ContainerNode, matrix_rows
from slonybed.bed import INSTALL_SQL, UNINSTALL_SQL
from slonybed.slony import DUPLICATE_LOCK
from test_upgrade_from_release import SLONY_FUNCTIONS

# Stock is refused about every other restart (see README). Each phase crashes node 1 until it has
# seen enough (stock: two refusals; the kit: two restarts whose stale PID was in use, so that its
# clean record is not just PIDs that were never reused), within its bounds.
STOCK_CRASHES = (1, 10)
KIT_CRASHES = (4, 8)
ENOUGH = 2
# All nodes of a cluster must run one Slony release: bullseye's (PostgreSQL 13) is 2.2.10, the
# others' 2.2.11, so PostgreSQL 13 is tested alone.
MATRIX = {"pg13": (13, 13), "pg15": (15, 15), "pg17": (17, 17), "pg15+pg17": (15, 17)}


@dataclass
class Tally:
    """What one phase's crash-restarts of node 1 came to."""

    tried: int = 0
    # Restarts whose stale PID a live process held: every refusal, and with the kit, what its
    # NOTICE says.
    held: int = 0
    refused: int = 0


def stale_pid_was_held(log: str, pid: int) -> bool:
    """From the kit's NOTICE in slon's log: whether the stale row's PID belonged to a live process
    when the kit removed the row, which is when stock Slony keeps it and refuses slon. A process
    the kit could not describe counts as not held."""
    prefix = re.escape(removal("_bed", 1, 0, pid))
    [reason] = re.findall(prefix + r"(.*); it no longer stands in slon's way", log) or [None]
    assert reason is not None, f"no NOTICE of the stale row of pid {pid} in slon's log:\n{log[-3000:]}"
    return not (reason == no_process(pid) or reason.startswith(f"pid {pid} is no backend of this server (what holds"))


def crash_restarts(cluster: ContainerCluster, tally: Tally, bounds: tuple[int, int], enough) -> None:
    """Crash node 1's container at least bounds[0] and at most bounds[1] times, stopping once
    enough(tally) holds, and count into tally. A refused slon is started again (its failed backend
    has freed the PID by then), as an operator would.

    node 2 stands for another host: its slon takes about a minute to reconnect to a node that
    went away, so node 1 boots undisturbed by it. Its slon is stopped before the crash and
    started once node 1's slon is up, which is the same without the minute."""
    node1, node2 = cluster.nodes[1], cluster.nodes[2]
    low, high = bounds
    while tally.tried < high and (tally.tried < low or not enough(tally)):
        tally.tried += 1
        node2.stop_slon()
        boot = node1.query("select pg_catalog.now()::text")[0][0]
        stale_pid, stale_row = cluster.own_lock(1)
        log_from = len(node1.slon_log())
        node1.crash_restart()
        if cluster.wait_slon_outcome(1, boot, stale_row, log_from) == "refused":
            tally.refused += 1
            tally.held += 1
            log_from = len(node1.slon_log())
            node1.restart_slon()
            assert cluster.wait_slon_outcome(1, boot, stale_row, log_from) == "runs"
        elif node1.query("select pg_catalog.to_regnamespace('slony_nodelock')") != [(None,)]:
            tally.held += stale_pid_was_held(node1.slon_log()[log_from:], stale_pid)
        node2.restart_slon()
        cluster.assert_replicates(1, 2)


@pytest.mark.parametrize("name", list(MATRIX))
def test_stock_slon_fails_after_container_restarts_and_the_kit_makes_it_start_every_time(name, engine, images,
                                                                                         control_root):
    _, run_id = engine
    majors = MATRIX[name]
    nodes = {n: ContainerNode(n, major, images(major), run_id, control_root / f"node{n}")
             for n, major in enumerate(majors, start=1)}
    stock, kit = Tally(), Tally()
    try:
        for node in nodes.values():
            node.start()
        cluster = ContainerCluster(nodes)
        cluster.build_replicating()
        stock_functions = {n: node.query(SLONY_FUNCTIONS) for n, node in nodes.items()}

        crash_restarts(cluster, stock, STOCK_CRASHES, lambda t: t.refused >= ENOUGH)
        assert stock.refused >= 1, f"{name}: stock slon started after each of {stock.tried} container restarts"

        for node in nodes.values():
            result = node.psql_file(INSTALL_SQL)
            assert result.returncode == 0 and PATCHED_BED in result.stderr, result.stdout + result.stderr
        crash_restarts(cluster, kit, KIT_CRASHES, lambda t: t.held >= ENOUGH or t.refused > 0)
        assert kit.refused == 0, f"{name}: slon was refused at {kit.refused} of {kit.tried} restarts with the kit"
        assert kit.held >= 1, f"{name}: no stale PID was in use at any of {kit.tried} restarts with the kit"
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
            assert node.query(SLONY_FUNCTIONS) == stock_functions[n]
            assert node.query("select pg_catalog.to_regnamespace('slony_nodelock')") == [(None,)]
    finally:
        matrix_rows.append((name, stock.tried, stock.refused, kit.tried, kit.held, kit.refused))
        for node in nodes.values():
            node.stop()
