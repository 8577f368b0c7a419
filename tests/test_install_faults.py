"""install.sql killed part-way: its backend terminated, or the server crash-restarted, at chosen
points of the script. Each time the database is untouched, slon starts, and a later install
works. The points are held by an advisory lock that only the test's copy of the script takes."""

from __future__ import annotations

import subprocess
import time

from slonybed.bed import INSTALL_SQL
from test_install import fingerprint
from notices import PATCHED_BED

HOOK_LOCK = 7007
HOOK = f"SELECT pg_catalog.pg_advisory_xact_lock({HOOK_LOCK});  -- the test's hook\n"
# Where the script is stopped: before the line that starts with each of these.
POINTS = {
    "plpython3u created": "COMMENT ON SCHEMA slony_nodelock IS",
    "migrations applied": "CREATE OR REPLACE FUNCTION slony_nodelock.logic_source()",
    "event triggers created": "SELECT slony_nodelock.patch_all_clusters() AS patched",
    "clusters patched": "COMMIT;",
}
# After its COMMIT the script has nothing left to do: killed there, the kit is fully installed.
COMMITTED = "committed"


def hooked_script(bed, point: str):
    """A copy of install.sql that waits for the test's advisory lock just before point."""
    lines = INSTALL_SQL.read_text().splitlines(keepends=True)
    if point == COMMITTED:
        path = bed.root / "install-hooked-committed.sql"
        # A transaction of its own after the script's: the hook must not hold the install open.
        path.write_text("".join(lines) + "BEGIN;\n" + HOOK + "COMMIT;\n")
        return path
    [at] = [i for i, line in enumerate(lines) if line.startswith(POINTS[point])]
    path = bed.root / f"install-hooked-{at}.sql"
    path.write_text("".join(lines[:at]) + HOOK + "".join(lines[at:]))
    return path


def install_stopped_at(bed, point: str, fault) -> subprocess.CompletedProcess:
    """Run the hooked script while the test holds the lock, apply fault once the installer waits
    at the hook, and return how psql ended."""
    node = bed.node(1)
    holder = node.connect()
    installer = None
    try:
        holder.execute("select pg_catalog.pg_advisory_lock(%s)", (HOOK_LOCK,))
        installer = subprocess.Popen(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", node.conninfo(),
                                      "-f", str(hooked_script(bed, point))],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        fault(wait_for_hook(holder))
        out, err = installer.communicate(timeout=60)
        return subprocess.CompletedProcess(installer.args, installer.returncode, out, err)
    finally:
        # Whatever failed above, the installer must not wait on the hook, nor outlive the test.
        holder.close()
        if installer is not None and installer.poll() is None:
            installer.kill()
            installer.wait(timeout=10)


def wait_for_hook(holder, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        rows = holder.execute("select pid from pg_catalog.pg_locks where locktype = 'advisory' and objid = %s "
                              "and not granted", (HOOK_LOCK,)).fetchall()
        if rows:
            return rows[0][0]
        assert time.monotonic() < deadline, f"the installer did not reach the hook in {timeout}s"
        time.sleep(0.05)


def test_an_install_killed_at_any_point_leaves_the_database_untouched_and_slon_starting(bed):
    bed.build_replicating()
    node, cluster = bed.node(1), bed.cluster
    before = fingerprint(node)

    def terminate(pid: int) -> None:
        node.query("select pg_catalog.pg_terminate_backend(%s)", (pid,))

    def crash(_pid: int) -> None:
        node.crash_restart()

    faults = [(point, "terminated", terminate) for point in POINTS] + [("clusters patched", "crashed", crash)]
    for point, how, fault in faults:
        # Node 1's slon is down across the install; across a crash node 2's too, since a slon
        # whose provider went away waits a minute before it reconnects (see reboot_host_of).
        down = [1, 2] if how == "crashed" else [1]
        for n in down:
            bed.slons[n].stop()
        result = install_stopped_at(bed, point, fault)
        assert result.returncode != 0, f"{point}, {how}: {result.stderr}"
        assert fingerprint(node) == before, f"{point}, {how}: the database changed"
        for n in down:
            cluster.wait_lock_holder_gone(n)
            cluster.wait_slon_holds_lock(bed.start_slon(n))
        cluster.assert_replicates(1, 2)

    # Killed after its COMMIT: fully installed, and slon starts with it.
    bed.slons[1].stop()
    result = install_stopped_at(bed, COMMITTED, terminate)
    assert result.returncode != 0 and PATCHED_BED in result.stderr, result.stderr
    assert node.query("select patched, problems from slony_nodelock.verify()") == [(True, None)]
    cluster.wait_lock_holder_gone(1)
    cluster.wait_slon_holds_lock(bed.start_slon(1))
    cluster.assert_replicates(1, 2)
    assert 'cluster "bed" (schema "_bed") is already patched; nothing changed' in bed.install_fix(1)
