"""Today's install.sql run over release 0.2.0 on a live, replicating cluster.

Operators upgrade by running the newer sql/install.sql over whatever release a node already has,
with slon left running. Release 0.2.0 left things behind that today's release must replace rather
than trust: identity records with no row version, a stock_function table with no function_name, a
re-patch trigger that also listened to CREATE TABLE, a verify() with another result type, and its
own cleanupnodelock() where uninstall must later put Slony's back. 0.2.0 also left
terminatenodeconnections() as Slony's. Tests that start from today's release cannot see any of
this, so here the real 0.2.0 script, taken from git history, patches the cluster first.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from slony_nodelock import __version__ as CURRENT_RELEASE
from slony_nodelock.liveness import LOGIC_VERSION
from slonybed.bed import REPO

RELEASE_0_2_0 = "da0c39277b93502037eb4eb63809e68c25831c7c"
NODES = (1, 2)

# Everything uninstall has to give back, so that "the same" means byte for byte: source, language,
# owner, settings, comment, the full definition, and what CREATE OR REPLACE could quietly change.
SLONY_FUNCTIONS = """
select p.proname, p.prosrc, l.lanname, pg_catalog.pg_get_userbyid(p.proowner), p.proconfig,
       pg_catalog.obj_description(p.oid, 'pg_proc'), pg_catalog.pg_get_functiondef(p.oid),
       p.prosecdef, p.provolatile, p.proacl::text
  from pg_catalog.pg_proc p join pg_catalog.pg_language l on l.oid = p.prolang
 where p.pronamespace = '_bed'::pg_catalog.regnamespace
   and p.proname in ('cleanupnodelock', 'terminatenodeconnections')
 order by p.proname
"""


@pytest.fixture
def release_0_2_0_install_sql() -> str:
    """Release 0.2.0's sql/install.sql, read from git history. Requested before `bed`, so that a
    clone without the history skips before any server starts."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed, so release 0.2.0's sql/install.sql cannot be read from history")
    # safe.directory: the suite may run as the postgres user over a checkout root owns; we only read.
    result = subprocess.run(
        ["git", "-c", f"safe.directory={REPO}", "-C", str(REPO), "show", f"{RELEASE_0_2_0}:sql/install.sql"],
        capture_output=True, text=True, timeout=60,
    )
    if result.returncode != 0:
        pytest.skip(f"release 0.2.0 (commit {RELEASE_0_2_0}) is not in this git history (a shallow clone?): "
                    f"{result.stderr.strip()}")
    assert result.stdout.startswith("-- slony-nodelock 0.2.0"), result.stdout[:200]
    return result.stdout


def run_release_0_2_0_install(server, script: str):
    """psql -f release 0.2.0's install.sql (script, from the fixture above) on a server of the bed."""
    path = server.home / "install-0.2.0.sql"
    path.write_text(script)
    return server.psql_file(path)


def live_backend(server, pid: int) -> bool:
    return bool(server.query("select 1 from pg_catalog.pg_stat_activity where pid = %s", (pid,)))


def cleanup_notices(server) -> list[str]:
    """Call the cluster's cleanupnodelock() as slon does; return the NOTICEs and WARNINGs it raised."""
    seen: list[str] = []
    with server.connect() as conn:
        conn.add_notice_handler(lambda d: seen.append(f"{d.severity}: {d.message_primary}"))
        conn.execute('select "_bed".cleanupnodelock()')
    return seen


def test_todays_install_over_release_0_2_0_repatches_a_live_cluster_and_uninstall_restores_stock(
        release_0_2_0_install_sql, bed):
    bed.build_replicating()
    stock = {n: bed.node(n).query(SLONY_FUNCTIONS) for n in NODES}
    assert [(f[0], f[2]) for f in stock[1]] == [("cleanupnodelock", "plpgsql"), ("terminatenodeconnections", "plpgsql")]

    # Inside the bed's directory, which the bed removes itself.
    old_install = bed.root / "install-0.2.0.sql"
    old_install.write_text(release_0_2_0_install_sql)
    for n in NODES:
        result = bed.node(n).psql_file(old_install)
        assert result.returncode == 0, result.stdout + result.stderr
        # The starting point this test is about: 0.2.0 runs, and it replaced cleanupnodelock() only.
        assert bed.node(n).query("select slony_nodelock.version()") == [("0.2.0",)]
        assert [(f[0], f[2]) for f in bed.node(n).query(SLONY_FUNCTIONS)] == [
            ("cleanupnodelock", "plpython3u"), ("terminatenodeconnections", "plpgsql")]
    slon_lock = bed.cluster.wait_slon_holds_lock(bed.slons[1])

    for n in NODES:
        node = bed.node(n)
        output = bed.install_fix(n)  # raises with psql's output if the script fails

        # Both are replaced: 0.2.0's logic must not pass for "already patched", and
        # terminatenodeconnections() was still Slony's. (0.2.0's function is ours, so it is not
        # saved as Slony's: the uninstall below would show that.)
        assert ('patched cluster "bed" (schema "_bed"): replaced cleanupnodelock() and terminatenodeconnections()'
                in output), output
        assert node.query("select cluster, patched, failover_patched, logic_version, identity_recording, "
                          "stock_saved, problems from slony_nodelock.verify()") == [
            ("_bed", True, True, LOGIC_VERSION, True, True, None)]
        assert node.query("select slony_nodelock.assert_ok()") == [(1,)]
        assert node.query("select slony_nodelock.version()") == [(CURRENT_RELEASE,)]
        assert node.query("select version from slony_nodelock.migration order by 1") == [(1,), (2,), (3,), (4,), (5,)]
        # 0.2.0's trigger also re-patched on CREATE TABLE, which raced pg_restore.
        assert node.query("select evttags from pg_catalog.pg_event_trigger "
                          "where evtname = 'slony_nodelock_repatch'") == [(["CREATE FUNCTION", "COMMENT"],)]

    # The upgrade must not have taught the new logic to take slon's running lock, nor the
    # registrations node 2's slon holds on node 1, for stale. Rows whose backend has exited
    # (node 2's finished copy connections) go, as with stock Slony.
    held = [row for row in bed.cluster.lock_rows(1) if live_backend(bed.node(1), row[2])]
    assert (1, 0, slon_lock) in held and any(conncnt > 0 for _, conncnt, _ in held), held
    notices = cleanup_notices(bed.node(1))
    assert set(held) <= set(bed.cluster.lock_rows(1)), notices
    assert all(live_backend(bed.node(1), pid) for _, _, pid in bed.cluster.lock_rows(1)), notices
    assert bed.slons[1].alive()

    # slon's start-up runs cleanupNodelock() and then takes the lock afresh: a new record of
    # today's kind (bound to the row version), by the trigger rather than a guess.
    bed.slons[1].stop()
    bed.cluster.wait_lock_holder_gone(1)
    restarted = bed.start_slon(1)
    new_lock = bed.cluster.wait_slon_holds_lock(restarted)
    assert bed.node(1).query(
        "select i.pid, i.row_xmin = l.xmin, i.adopted from slony_nodelock.lock_identity i "
        'join "_bed".sl_nodelock l using (nl_nodeid, nl_conncnt) '
        "where i.cluster_schema = '_bed' and i.nl_nodeid = 1 and i.nl_conncnt = 0") == [(new_lock, True, False)]
    bed.cluster.assert_replicates(1, 2)

    for n in NODES:
        node = bed.node(n)
        bed.uninstall_fix(n)

        # cleanupnodelock() was saved by 0.2.0, terminatenodeconnections() by today's release;
        # both must come back as Slony made them, not as the release that saved them.
        assert node.query(SLONY_FUNCTIONS) == stock[n]
        assert node.query("select pg_catalog.to_regnamespace('slony_nodelock')") == [(None,)]
        assert node.query("select count(*) from pg_catalog.pg_event_trigger where evtname like 'slony_nodelock%'") == [(0,)]
        assert node.query("select count(*) from pg_catalog.pg_trigger where tgname like 'slony_nodelock%'") == [(0,)]
