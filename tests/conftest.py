"""Fixtures for the real-Slony test bed, and a suite-wide check that nothing outlives the run."""

from __future__ import annotations

import importlib.util
import os
import statistics
from types import ModuleType
from collections.abc import Iterator

import pytest

from slonybed import SlonyBed
from slonybed.bed import REPO, created_roots
from slonybed.pidreuse import attempt_log, can_force_pids
from slonybed.processes import ProcessLedger


@pytest.fixture(scope="session", autouse=True)
def nothing_outlives_the_suite() -> Iterator[None]:
    """Fail the run if any process or bed directory started by the suite is still there at the
    end, even one that a single bed's own check could not see. Only this run's sessions and
    directories count, so another run on the same machine cannot fail this one."""
    ledger = ProcessLedger()
    yield
    left = [f"process {s}" for s in ledger.wait_for_none()]
    left += [f"directory {d}" for d in created_roots if d.exists()]
    assert not left, "the test run left these behind:\n" + "\n".join(left)


@pytest.fixture
def bed() -> Iterator[SlonyBed]:
    """A two-node bed: two PostgreSQL servers with the Slony cluster not built yet."""
    with SlonyBed(nodes=2) as b:
        yield b


@pytest.fixture
def fixed_bed(bed: SlonyBed) -> SlonyBed:
    """The replicating two-node bed with sql/install.sql run on node 1."""
    bed.build_replicating()
    output = bed.install_fix(1)
    assert 'patched cluster _bed' in output
    return bed


def load_generator() -> ModuleType:
    """sql/generate.py as a module, to build variants of the scripts (it is not a package)."""
    spec = importlib.util.spec_from_file_location("generate", REPO / "sql" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces)")

requires_pid_control = pytest.mark.skipif(
    os.geteuid() != 0 or not can_force_pids(),
    reason="forcing PID reuse needs root (writes /proc/sys/kernel/ns_last_pid)",
)


def pytest_terminal_summary(terminalreporter) -> None:
    if attempt_log:
        retried = sum(1 for a in attempt_log if a > 1)
        terminalreporter.write_line(
            f"PID reuse: {len(attempt_log)} claims, {retried} needed a retry, "
            f"attempts max {max(attempt_log)}, mean {statistics.mean(attempt_log):.2f}"
        )
