"""The container engine set-up's own promises: a missing runtime is a cause, not a hang or a
failure; an interrupted run leaves nothing of it behind; one worker's clean-up never touches
another worker's containers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from slonybed.bed import REPO
from slonybed.engine import EngineUnavailable, PodmanService, _of_run
from slonybed.processes import process_args, process_info, start_time


def test_a_podman_without_runc_is_named_as_the_cause(monkeypatch):
    if os.geteuid() != 0 or shutil.which("podman") is None:
        pytest.skip("needs root and podman")
    # A PATH on which podman is found and runc is not, as on a host where runc could not be installed.
    bin_dir = Path(tempfile.mkdtemp(prefix="slony-nodelock-path-"))
    try:
        (bin_dir / "podman").symlink_to(shutil.which("podman"))
        monkeypatch.setenv("PATH", str(bin_dir))
        with pytest.raises(EngineUnavailable, match="runc, podman's runtime here, is not installed"):
            PodmanService.start()
    finally:
        shutil.rmtree(bin_dir)


def test_one_workers_clean_up_matches_its_own_run_id_exactly():
    assert _of_run("abc-gw1", "abc-gw1", whole_run=False)
    assert not _of_run("abc-gw10", "abc-gw1", whole_run=False)
    assert _of_run("abc-gw10", "abc", whole_run=True)
    assert not _of_run("abcd-gw0", "abc", whole_run=True)


def test_a_terminated_run_ends_its_suite_and_leaves_no_process(engine):
    """TERM to the wrapper (a CI job cancelled) reaches the suite as an interrupt, and the wrapper
    still cleans up and ends, within its time limits."""
    wrapper = subprocess.Popen([sys.executable, str(REPO / "tests" / "bin" / "with-container-engine"),
                                "sh", "-c", "sleep 600 & sleep 600; wait"],
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        suite = []
        while len(suite) < 3:
            assert time.monotonic() < deadline, "the wrapper did not start its command"
            suite = [(p, start_time(p)) for p in _session_started_by(wrapper.pid)]
            time.sleep(0.1)
        wrapper.send_signal(signal.SIGTERM)
        wrapper.wait(timeout=120)
        # By PID and start time: under xdist another worker's process may have the PID by now. A
        # killed process whose parent is gone is reaped by init in a moment.
        deadline = time.monotonic() + 15
        while (left := [f"{pid}: {process_args(pid)}" for pid, started in suite if start_time(pid) == started]) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == []
    finally:
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, signal.SIGKILL)
            wrapper.wait(timeout=10)


def _session_started_by(parent: int) -> list[int]:
    """The processes of the session that parent's child leads: the wrapper starts its command in
    a session of its own."""
    table = {pid: info for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
             if (info := process_info(pid)) is not None}
    sessions = {session for _, ppid, session, _ in table.values() if ppid == parent}
    return [pid for pid, (_, _, session, _) in table.items() if session in sessions]
