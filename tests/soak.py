"""make soak: the reboot soak (tests/slonybed/soak.py) against stock Slony and against the kit,
with the same draws of who gets the stale PID, and a table of what each came to; then the long
concurrency scenarios (tests/slonybed/concurrency.py) against the kit.

    make soak                                # 50 cycles each, a fresh seed
    make soak SOAK_CYCLES=200 SOAK_SEED=42   # replay or lengthen a run

Exits non-zero if the kit's row is not all zeros but for its cycles.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slonybed import SlonyBed  # noqa: E402
from slonybed.pidreuse import attempt_log, pid_control_refusal  # noqa: E402
from slonybed.concurrency import cleanup_storm, install_twice_at_once, slons_at_once  # noqa: E402
from slonybed.soak import draws, soak, table  # noqa: E402

START_TRIALS = 20
STORM_SECONDS = 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=int(os.environ.get("SOAK_CYCLES") or 50))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED") or random.randrange(10**6)))
    args = parser.parse_args()
    refusal = pid_control_refusal()
    if refusal is not None:
        print(f"make soak puts processes on chosen PIDs and cannot here: {refusal}", file=sys.stderr)
        return 2
    holders = draws(args.seed, args.cycles)
    print(f"reboot soak: seed {args.seed}, {args.cycles} cycles against stock Slony, then the same against the kit",
          flush=True)
    tallies = {}
    for name, kit in (("stock Slony", False), ("slony-nodelock", True)):
        print(f"{name}:", flush=True)
        with SlonyBed(nodes=2, cluster="soak") as bed:
            tallies[kit] = soak(bed, holders, kit, log=lambda line: print(line, flush=True))
    print()
    print(table(args.seed, tallies[False], tallies[True]))
    print(f"PID claims: {len(attempt_log)}, attempts max {max(attempt_log, default=0)}")
    kit = tallies[True]
    ok = (kit.failed_starts, kit.double_slons, kit.live_locks_removed, kit.rows_lost) == (0, 0, 0, 0) \
        and not kit.failures

    print("\nconcurrency, with the kit on both nodes:", flush=True)
    with SlonyBed(nodes=2, cluster="soak") as bed:
        bed.build_replicating()
        both = install_twice_at_once(bed)
        print(f"  install.sql twice at once on a fresh database: exit codes {both.exit_codes}, both waited "
              f"on the install lock: {both.waited}, verify() {both.verify}", flush=True)
        bed.install_fix(2)
        race = slons_at_once(bed, START_TRIALS)
        print(f"  4 slons for node 1 at once, {race.trials} trials: not exactly one running in "
              f"{race.not_exactly_one}; exits not on the duplicate key: {len(race.other_exits)}", flush=True)
        storm = cleanup_storm(bed, STORM_SECONDS)
        print(f"  cleanupNodelock() from 3 sessions per node for {storm.seconds:.0f}s while slons restarted "
              f"{storm.slon_restarts} times: {storm.cleanups} cleanups, {len(storm.errors)} errors, "
              f"{storm.live_locks_missing} of {storm.checks} checks found a running slon's lock missing", flush=True)
        for error in storm.errors[:5]:
            print(f"    {error}")
    ok = ok and race.not_exactly_one == 0 and not race.other_exits and not storm.errors \
        and storm.live_locks_missing == 0 and 0 in both.exit_codes and both.waited and both.verify == [(True, True, None)]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
