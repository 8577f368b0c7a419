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
