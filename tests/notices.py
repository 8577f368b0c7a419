"""The kit's words as other tests look for them: built with the functions that word them, whose
final texts tests/test_messages.py pins, so that a rewording is made in one place."""

from __future__ import annotations

from slony_nodelock import liveness

# What install.sql says when it patches the bed's cluster (tests/test_messages.py has the full text).
PATCHED_BED = 'patched cluster "bed" (schema "_bed")'


def removal(schema: str, node: int, conncnt: int, pid: int, reason: str | None = None) -> str:
    """cleanupNodelock()'s NOTICE for a stale row it removes, or without reason its beginning (the
    words are pinned by tests/test_messages.py)."""
    row = {"nl_nodeid": node, "nl_conncnt": conncnt, "nl_backendpid": pid}
    if reason is None:
        return "slony-nodelock: removed the stale " + liveness.describe_row(schema, row) + ": "
    return liveness.cleanup_notice(schema, row, liveness.STALE, reason)


def kept(schema: str, node: int, conncnt: int, pid: int) -> str:
    """The beginning of cleanupNodelock()'s NOTICE for a row it keeps for lack of proof."""
    row = {"nl_nodeid": node, "nl_conncnt": conncnt, "nl_backendpid": pid}
    return "slony-nodelock: kept the " + liveness.describe_row(schema, row) + " for lack of proof that it is stale: "


def no_process(pid: int) -> str:
    return f"no process has pid {pid} any more, so the backend that took the lock has ended"


# The repair command messages give in the bed's database.
INSTALL_COMMAND = 'psql -v ON_ERROR_STOP=1 -d slony_test -f /usr/share/slony-nodelock/install.sql'
