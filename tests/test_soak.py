"""The reboot soak, short: one power cut per kind of holder of the stale PID, against stock Slony
and against the kit (make soak runs the long, random version)."""

from __future__ import annotations

from conftest import requires_pid_control
from slonybed import SlonyBed
from slonybed.soak import CLAIM_FAILED, HOLDERS, NOBODY, soak, table


@requires_pid_control
def test_one_reboot_per_kind_of_holder_stock_fails_and_the_kit_always_starts_slon_and_loses_nothing():
    tallies = {}
    for kit in (False, True):
        with SlonyBed(nodes=2, cluster="soak") as bed:
            tallies[kit] = soak(bed, list(HOLDERS), kit, log=lambda line: None)
    stock, kit = tallies[False], tallies[True]
    summary = table(0, stock, kit)
    print(summary)
    assert kit.failures == [], summary
    assert (kit.cycles, kit.failed_starts, kit.double_slons, kit.live_locks_removed, kit.rows_lost) == (
        len(HOLDERS), 0, 0, 0, 0), summary
    # Every holder but nobody keeps kill(pid, 0) succeeding, which is when stock refuses slon.
    held = stock.cycles - stock.holders[NOBODY] - stock.holders[CLAIM_FAILED]
    assert held >= 1 and stock.failed_starts >= held, summary
    assert (stock.double_slons, stock.live_locks_removed, stock.rows_lost) == (0, 0, 0), summary
