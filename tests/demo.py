"""`make demo`: the stale sl_nodelock failure and its fix, end to end, on real servers and slons.

    make demo               run the story and clean up
    make demo ARGS=--keep   leave the cluster running and print how to reach and stop it
"""

from __future__ import annotations

import argparse
import sys
import time

from slonybed import SlonyBed
from slonybed.processes import command_line
from slonybed.slony import DUPLICATE_LOCK

START = time.monotonic()


def step(number: int, text: str) -> None:
    print(f"\n[{time.monotonic() - START:5.1f}s] {number}. {text}", flush=True)


def detail(text: str) -> None:
    print(f"         {text}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    args = parser.parse_args()

    with SlonyBed(nodes=2, cluster="demo", keep=args.keep) as bed:
        cluster = bed.cluster
        step(1, "Two PostgreSQL 15 servers, one per Slony node, on unix sockets")
        for n, server in cluster.nodes.items():
            detail(f"node {n}: {server.conninfo()}")

        step(2, "Build the Slony cluster with slonik, start a slon per node, subscribe node 2")
        bed.build_replicating()
        note = cluster.assert_replicates(1, 2)
        detail(f"inserted {note!r} on node 1; node 2 has it")
        stale = cluster.wait_slon_holds_lock(bed.slons[1])
        detail(f"node 1's sl_nodelock row (1, 0, {stale}) belongs to slon 1's local_listen backend")

        step(3, "Power cut on node 1's host: slons killed, the server crash-restarted")
        step(4, f"After the 'reboot', a postgres-owned process (sleep) gets the old PID {stale}")
        stale = bed.reboot_host_of(1, reuse_pid=bed.put_sleep_on)
        detail(f"the lock row survived the restart: {cluster.lock_rows(1)[0]}")
        detail(f"pid {stale} is now: {command_line(stale)}")

        step(5, "Start stock slon for node 1: kill(pid, 0) succeeds, so the stale row stays")
        slon = bed.start_slon(1)
        code = slon.wait_exit(timeout=30)
        fatal = [line for line in slon.log.splitlines() if "FATAL" in line]
        if code is None or DUPLICATE_LOCK not in slon.log:
            print("unexpected: stock slon did not fail the way the bug report says", file=sys.stderr)
            return 1
        detail(f"slon exited (status {code}); its log says:")
        for line in fatal:
            detail(f"  {line}")

        step(6, "Install the fix: psql -v ON_ERROR_STOP=1 -d DB -f sql/install.sql "
                "(/usr/share/slony-nodelock/install.sql once put in place by make install)")
        for line in bed.install_fix(1).splitlines():
            if "NOTICE" in line:
                detail(line.split("NOTICE:", 1)[1].strip())

        step(7, "Start slon for node 1 again, with the same PID still held by the sleep")
        slon = bed.start_slon(1)
        holder = cluster.wait_slon_holds_lock(slon)
        for line in slon.log.splitlines():
            if "slony-nodelock" in line and "(node 1, conncnt 0," in line:
                detail(line.split("NOTICE:", 1)[-1].strip())
        detail(f"slon is running; node 1's lock is now (1, 0, {holder}), its own backend")
        note = cluster.assert_replicates(1, 2)
        detail(f"inserted {note!r} on node 1; node 2 has it: replication resumed")

        if args.keep:
            script = bed.write_stop_script()
            step(8, "Kept running (--keep)")
            for n, server in cluster.nodes.items():
                detail(f"node {n}: psql '{server.conninfo()}'")
            detail(f"stop everything and remove it: sh {script}")
    print(f"\ndone in {time.monotonic() - START:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
