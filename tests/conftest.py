"""Fixtures for the real-Slony test bed, and a suite-wide check that nothing outlives the run."""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
from types import ModuleType
from collections.abc import Iterator

import pytest

from notices import PATCHED_BED
from slonybed import SlonyBed
from slonybed.bed import REPO, created_roots
from slonybed.containerbed import matrix_rows
from slonybed.postgres import remove_shared_template
from slonybed.pidreuse import PidUnavailable, attempt_log, pid_control_refusal
from slonybed.processes import ProcessLedger


@pytest.fixture(scope="session", autouse=True)
def nothing_outlives_the_suite() -> Iterator[None]:
    """Fail the run if any process or bed directory started by the suite is still there at the
    end, even one that a single bed's own check could not see. Only this run's sessions and
    directories count, so another run on the same machine cannot fail this one."""
    ledger = ProcessLedger()
    yield
    template = remove_shared_template()
    left = [f"process {s}" for s in ledger.wait_for_none()]
    left += [f"directory {d}" for d in [*created_roots, template] if d is not None and d.exists()]
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
    assert PATCHED_BED in output
    return bed


def load_generator() -> ModuleType:
    """sql/generate.py as a module, to build variants of the scripts (it is not a package)."""
    spec = importlib.util.spec_from_file_location("generate", REPO / "sql" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mount_namespace_refusal() -> str | None:
    """Why this run cannot start a process in a private mount namespace, or None when it can."""
    if os.geteuid() != 0:
        return "a private mount namespace needs root"
    try:
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "true"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare refused: {exc}"
    return f"unshare refused: {probe.stderr.strip()}" if probe.returncode != 0 else None


_PID_REFUSAL = pid_control_refusal()
_MOUNT_REFUSAL = _mount_namespace_refusal()


def requires_pid_control(test):
    """For a test that puts a process on a chosen PID: skipped, with the reason, where that cannot
    be done; and marked pid_claims, which make test runs after the parallel phase, one test at a
    time, since other workers' forks would take the very PID a claim has just freed up."""
    return pytest.mark.pid_claims(pytest.mark.skipif(_PID_REFUSAL is not None, reason=str(_PID_REFUSAL))(test))


requires_mount_namespace = pytest.mark.skipif(_MOUNT_REFUSAL is not None, reason=str(_MOUNT_REFUSAL))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A PID that a live process keeps, or that other forks keep taking, cannot be reused: that is
    a skip with the reason, not a failure of the feature under test."""
    try:
        return (yield)
    except PidUnavailable as unavailable:
        pytest.skip(str(unavailable))


def pytest_collection_modifyitems(items) -> None:
    """The container tests first, each followed by a host-process test: they are the longest, and
    with make test's --maxschedchunk 1 xdist starts every worker on such a pair (two tests per
    worker, in order), so that each worker begins with a container test instead of one worker
    queueing them all; the paired host test runs after it, and the rest as workers free up."""
    # compose last: it needs two node images that the matrix tests build meanwhile.
    containers = sorted((i for i in items if "containers" in i.path.parts), key=lambda i: "compose" in i.name)
    rest = [i for i in items if "containers" not in i.path.parts]
    paired = [i for pair in zip(containers, rest) for i in pair]
    items[:] = paired + containers[len(rest):] + rest[len(containers):]


def _figures() -> dict[str, list]:
    """What each test process counts for the closing summary; under xdist the workers hand their
    counts to the controlling process, which prints them."""
    return {"pid_attempts": attempt_log, "container_matrix": matrix_rows}


def pytest_sessionfinish(session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput.update({name: list(values) for name, values in _figures().items()})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    received = getattr(node, "workeroutput", {}) or {}
    for name, values in _figures().items():
        values.extend(tuple(v) if isinstance(v, list) else v for v in received.get(name, ()))


def pytest_terminal_summary(terminalreporter) -> None:
    if matrix_rows:
        terminalreporter.write_line("container matrix: cluster | stock: crash-restarts, slon refused "
                                    "| kit: crash-restarts, stale PID in use, slon refused")
        for row in sorted(matrix_rows):
            terminalreporter.write_line("  %-10s | %d, %d | %d, %d, %d" % row)
    if attempt_log:
        retried = sum(1 for a in attempt_log if a > 1)
        terminalreporter.write_line(
            f"PID reuse: {len(attempt_log)} claims, {retried} needed a retry, "
            f"attempts max {max(attempt_log)}, mean {statistics.mean(attempt_log):.2f}"
        )
