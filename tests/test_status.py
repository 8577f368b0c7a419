"""slony_nodelock.status(): the judgement as a dry run, with what each PID really is now."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from conftest import requires_pid_control, requires_mount_namespace
from slonybed.bed import INSTALL_SQL, REPO
from psycopg import sql

from slonybed import SlonyBed
from slonybed.pidreuse import SleepHolder
from slonybed.processes import SessionProcess, note_session
from test_install import STOCK_LIKE, add_stock_like_cluster, server  # noqa: F401  (fixture)
from notices import removal

STATUS = ("select cluster, node, conncnt, pid, recorded_backend_start, holder_backend_type, holder_datname,"
          " holder_application_name, holder_backend_start, os_process, verdict, reason"
          " from slony_nodelock.status(%s)")


@requires_pid_control
def test_status_and_the_removal_notice_say_what_the_stale_pid_is_now(fixed_bed):
    bed, node = fixed_bed, fixed_bed.node(1)
    lock_taken = node.query("select backend_start from slony_nodelock.lock_identity"
                            " where cluster_schema = '_bed' and nl_nodeid = 1 and nl_conncnt = 0")[0][0]
    stale = bed.reboot_host_of(1, reuse_pid=bed.put_sleep_on)

    rows = {(r[1], r[2]): r for r in node.query(STATUS, ("bed",))}
    (cluster, _, _, pid, recorded, holder_type, _, _, _, os_process, verdict, reason) = rows[(1, 0)]

    assert (cluster, pid, recorded, holder_type, verdict) == ("_bed", stale, lock_taken, None, "stale")
    assert os_process.startswith('"sleep infinity" (user postgres, started ')
    started = datetime.strptime(os_process.split("started ")[1], "%Y-%m-%d %H:%M:%S UTC)").replace(tzinfo=timezone.utc)
    assert started >= lock_taken.replace(microsecond=0)
    # The reason, which the NOTICE repeats, names the program only; status() shows the command.
    assert reason == f"pid {stale} is now {os_process.replace('sleep infinity', 'sleep')}, which is no backend of this server"
    # A dry run: the row is still there.
    assert bed.cluster.own_lock_pid(1) == stale

    slon = bed.start_slon(1)
    bed.cluster.wait_slon_holds_lock(slon)
    assert removal("_bed", 1, 0, stale, reason) in slon.log


def test_status_is_for_pg_monitor_members_who_see_full_rows(server):  # noqa: F811
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("create role watcher login in role pg_monitor; create role stranger login")
    with server.connect(application_name="slon.local_listen") as holder:
        holder.execute("insert into _c1.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())")

        as_superuser = server.query(STATUS, (None,))
        with server.connect(user="watcher") as watcher:
            as_watcher = watcher.execute(STATUS, (None,)).fetchall()
        with server.connect(user="stranger") as stranger:
            with pytest.raises(Exception, match="permission denied for function status"):
                stranger.execute(STATUS, (None,))

    assert as_watcher == as_superuser
    [(_, _, _, _, recorded, holder_type, datname, name, holder_start, os_process, verdict, _)] = as_watcher
    assert (holder_type, datname, name, verdict, os_process) == (
        "client backend", "slony_test", "slon.local_listen", "live", None)
    assert recorded == holder_start is not None


def test_status_reads_no_file_but_the_proc_entries_of_integer_pids(server):  # noqa: F811
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    # PIDs no process can have: status() says so, and fails on none of them.
    server.query("insert into _c1.sl_nodelock values (1, 0, 0), (2, 0, -1), (3, 0, 2147483647)")

    rows = server.query(STATUS, ("_c1",))

    assert [(r[3], r[9], r[10]) for r in rows] == [
        (0, "no such process", "stale"), (-1, "no such process", "stale"), (2147483647, "no such process", "stale")]
    # The only text it takes is a cluster name, looked up among the clusters, never a path.
    for name in ("../../etc/passwd", "_c1/../..", "/proc/self/environ"):
        with pytest.raises(Exception) as raised:
            server.query(STATUS, (name,))
        assert raised.value.diag.message_primary.startswith("slony-nodelock: no Slony cluster ")


def test_a_role_that_may_not_clean_up_gets_one_line_saying_so(server):  # noqa: F811
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("create role alice login; grant usage on schema _c1 to alice")
    with server.connect(user="alice") as alice:
        with pytest.raises(Exception) as raised:
            alice.execute("select _c1.cleanupnodelock()")
    assert raised.value.diag.message_primary == (
        'slony-nodelock: role "alice" may not clean up the locks of cluster "c1" (schema "_c1"); nothing changed: '
        "run cleanupNodelock() as a superuser, as slon does")


@requires_mount_namespace
def test_without_a_readable_proc_the_description_is_unknown_with_a_reason_not_an_error():
    # A private mount namespace whose /proc is an empty tmpfs: what another OS, or a container
    # without procfs, looks like to the server. The glue's own code runs there, unmocked.
    probe = ("import json, sys; sys.path.insert(0, 'plpython');"
             "from slony_nodelock.plpy_glue import os_processes;"
             "print(json.dumps(os_processes([1, 2225])))")
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
         'mount -t tmpfs none /proc && exec "$0" -c "$1"', sys.executable, probe],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "unshare" in result.stderr:
        pytest.skip(f"unshare refused: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr

    found, full, unknown = json.loads(result.stdout)

    assert found == full == {}
    assert set(unknown) == {"1", "2225"}
    assert all(reason.startswith("/proc cannot be read here") for reason in unknown.values())


def test_a_hostile_command_line_is_escaped_cut_and_never_fails_a_latin1_database():
    # Any OS user picks a command line: bytes no encoding has, a forged log line, great length.
    weird = os.fsdecode(b"x\xff\xfe\xe2\x82\xac\nNOTICE:  slony-nodelock: forged " + b"y" * 3000)
    with SlonyBed(nodes=1) as bed:
        server = bed.node(1)
        server.query("create database latin1 encoding 'LATIN1' lc_collate 'C' lc_ctype 'C' template template0")
        assert server.psql_file_in(INSTALL_SQL, "latin1").returncode == 0
        with server.connect(dbname="latin1") as db:
            db.execute(sql.SQL(STOCK_LIKE).format(schema=sql.Identifier("_c1")))
        assert server.psql_file_in(INSTALL_SQL, "latin1").returncode == 0
        holder = SessionProcess.start(["bash", "-c", 'exec -a "$0" sleep infinity', weird], cwd=bed.root)
        bed.holders.append(SleepHolder(holder))
        with server.connect(dbname="latin1") as db:
            db.execute("insert into _c1.sl_nodelock values (1, 0, %s), (2, 0, %s)", (holder.pid, holder.pid))
            [(os_process,), _] = db.execute("select os_process from slony_nodelock.status('_c1')").fetchall()
            notices: list[str] = []
            db.add_notice_handler(lambda d: notices.append(d.message_primary))
            db.execute("select _c1.terminatenodeconnections(2)")
            db.execute("select _c1.cleanupnodelock()")

    assert os_process.startswith('"x\\xff\\xfe\\u20ac\\nNOTICE:  slony-nodelock: forged yyy')
    assert os_process.isascii() and "\n" not in os_process and len(os_process) < 300
    # NOTICEs go to every log: they name the program (what the kernel calls it), never the
    # command line, which can carry secrets.
    program = os_process.replace(os_process[1:os_process.index('" (user ')], "sleep")
    assert len(notices) == 2 and all(program in n and "forged" not in n and "\n" not in n for n in notices), notices


def test_notices_name_another_users_process_by_program_never_by_its_command_line(server):  # noqa: F811
    # A backup run by root with its password on the command line reuses a stale lock's PID:
    # slon's log (every NOTICE) must not get the password; status(), kept to superusers and
    # pg_monitor, shows the command line.
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    secret = "backup --password=Sup3rS3cret"
    backup = subprocess.Popen(["bash", "-c", 'exec -a "$0" sleep infinity', secret], start_new_session=True,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    note_session(backup.pid)
    try:
        server.query("insert into _c1.sl_nodelock values (1, 0, %s)", (backup.pid,))
        [(os_process,)] = server.query("select os_process from slony_nodelock.status('_c1')")
        with server.connect() as slon_like:
            notices: list[str] = []
            slon_like.add_notice_handler(lambda d: notices.append(d.message_primary))
            slon_like.execute("select _c1.cleanupnodelock()")
    finally:
        os.killpg(backup.pid, 9)
        backup.wait(timeout=30)

    user = pwd.getpwuid(os.geteuid()).pw_name
    assert os_process.startswith(f'"{secret} infinity" (user {user}, started ')
    [notice] = notices
    assert f'pid {backup.pid} is now "sleep" (user {user}, started ' in notice
    assert "Sup3rS3cret" not in notice and "backup" not in notice
