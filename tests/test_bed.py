"""The bed's own promises: it notices what it failed to clean up."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import requires_pid_control
from slonybed import BedLeftovers, SlonyBed
from slonybed.pidreuse import start_unrecorded_on
from slonybed.processes import ProcessLedger, SessionProcess


def test_teardown_fails_when_a_process_it_started_survives():
    with pytest.raises(BedLeftovers, match="sleep 600") as caught:
        with SlonyBed(nodes=0, exit_grace=1) as bed:
            stray = SessionProcess.start(["sleep", "600"], cwd=bed.root)
    stray.kill_session()
    assert not stray.session_alive()
    assert "survived teardown" in str(caught.value)


def test_ledger_sees_a_running_server_and_its_children():
    with SlonyBed(nodes=1) as bed:
        seen = [s.args for s in bed.ledger.survivors()]
        assert any(str(bed.node(1).datadir) in args for args in seen), seen
        assert any("checkpointer" in args for args in seen), seen


@requires_pid_control
def test_a_session_whose_leader_pid_went_to_another_process_is_not_taken_for_ours():
    """Under xdist another worker's backend or slon may get the PID of a session this worker
    started and ended; counted by number alone, it would fail this worker's leftover check."""
    ledger = ProcessLedger()
    ours = SessionProcess.start(["sleep", "600"], cwd=Path("/tmp"))
    pid = ours.pid
    ours.kill_session()
    other = start_unrecorded_on(pid, ["sleep", "600"])
    try:
        assert ledger.survivors() == []
    finally:
        other.kill()
        other.wait(timeout=10)
