"""The bed's own promises: it notices what it failed to clean up."""

from __future__ import annotations

import pytest

from slonybed import BedLeftovers, SlonyBed
from slonybed.processes import SessionProcess


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
