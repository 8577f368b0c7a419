"""Concurrency, short (make soak runs the long version): slons of one node started at once,
cleanupNodelock() from several sessions while slons come and go, and install.sql twice at once."""

from __future__ import annotations

from slonybed.concurrency import cleanup_storm, install_twice_at_once, slons_at_once


def test_four_slons_started_at_once_for_one_node_leave_exactly_one_running(fixed_bed):
    race = slons_at_once(fixed_bed, trials=3)
    assert (race.trials, race.not_exactly_one, race.other_exits) == (3, 0, [])
    fixed_bed.cluster.assert_replicates(1, 2)


def test_cleanups_from_several_sessions_while_slons_come_and_go_never_remove_a_live_lock(fixed_bed):
    fixed_bed.install_fix(2)
    storm = cleanup_storm(fixed_bed, seconds=15)
    assert storm.errors == []
    assert storm.live_locks_missing == 0
    # The storm did happen: cleanups ran, slons restarted, and the watcher looked.
    assert storm.cleanups > 100 and storm.slon_restarts >= 4 and storm.checks > 50, storm


def test_install_run_twice_at_once_on_a_fresh_database_ends_in_one_correct_installation(bed):
    bed.build_replicating()
    both = install_twice_at_once(bed)
    outputs = "\n---\n".join(both.outputs)
    # Each ends without error, or fails cleanly: psql's ON_ERROR_STOP exit 3, with an ERROR line.
    for code, output in zip(both.exit_codes, both.outputs):
        assert code == 0 or (code == 3 and "ERROR:" in output), outputs
    assert 0 in both.exit_codes, outputs
    assert both.verify == [(True, True, None)], outputs
    # Both waited on the scripts' own lock, and were let go together.
    assert both.waited, outputs
    bed.cluster.assert_replicates(1, 2)
