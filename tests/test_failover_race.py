"""Issue 18, part 2: failover must not terminate a backend that took the holder's PID meanwhile.

terminate() judges the failed node's lock rows from one read of the server's activity, then
raises one NOTICE per row before it reaches the next. If the holder's connection ends while the
failover is still on earlier rows, and a new backend gets the holder's PID, the check before
pg_terminate_backend() must see the new backend, not the activity data the rows were judged from
(pg_stat_get_activity() keeps what it read for the rest of the transaction).

The reproduction, on a one-node bed with the Slony cluster built and the kit installed, and no
slon running (a slon's cleanupEvent() would delete the leftover rows meanwhile):

- LEFTOVERS rows of failed node 2 naming PIDs above the kernel's pid_max, which no process can
  hold, inserted before the holder's row, so that failover judges them (one NOTICE each) first;
- the holder: a client backend named like a remote slon's connection that runs Slony's
  registerNodeConnection(2), so that the kit's trigger records its PID and start;
- failover: a psql runs "_bed".terminateNodeConnections(2) directly, as slonik's failover does on
  each surviving node (no slonik failover: nothing else it does matters here). psql's stderr,
  where it writes NOTICEs, is a 4 KB pipe that the test does not read yet, so psql stops reading
  its socket and the server backend blocks writing NOTICEs (wait_event ClientWrite) on leftover
  rows, before it reaches the holder's row;
- while it is blocked: the holder's connection ends, and a backend named innocent-app is put on
  its PID through ns_last_pid (BackendHolder);
- then the test drains psql. The innocent backend must still answer, with the same PID and
  backend_start, and the kit's NOTICE for the holder's row must say it did not signal it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg

from conftest import requires_pid_control
from notices import PATCHED_BED
from slony_nodelock.liveness import describe_row
from slonybed import SlonyBed
from slonybed.pidreuse import BackendHolder

FAILED = 2
# Enough NOTICEs for the failover backend to block before the holder's row. Each NOTICE (~325
# bytes with its fields) goes out in a write of its own, and a unix socket takes only ~54 KB of
# such small writes (Linux 6.18, net.core.wmem_default 212992). With psql's stderr pipe at 4 KB
# the backend blocked here after 180 to 190 leftover rows (~60 KB of NOTICEs); below that it
# wrote them all and terminated the holder before the test could act. 1000 leaves five times that.
LEFTOVERS = 1000
STDERR_PIPE_SIZE = 4096
FAILOVER_CLIENT = "slony-nodelock-failover"
INNOCENT = "innocent-app"
ANSWERED = "innocent-app, answering after the failover"
DEADLINE = 60


def wait_blocked_writing_notices(monitor: psycopg.Connection, client: subprocess.Popen) -> int:
    """The PID of the failover's backend once it waits to write to psql (ClientWrite)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        rows = monitor.execute(
            "select pid, state, wait_event, query from pg_catalog.pg_stat_activity where application_name = %s",
            (FAILOVER_CLIENT,)).fetchall()
        if rows:
            [(pid, state, wait_event, query)] = rows
            if wait_event == "ClientWrite":
                return pid
            assert not (state == "idle" and "terminatenodeconnections" in query.lower()), (
                f"the failover wrote all its NOTICEs without blocking: {LEFTOVERS} leftover rows are too few here")
        assert client.poll() is None, f"psql exited ({client.returncode}) before the failover blocked:\n" + \
            client.stderr.read().decode(errors="replace")[-3000:]
        assert time.monotonic() < deadline, f"the failover's backend did not block writing NOTICEs in {DEADLINE}s: {rows}"
        time.sleep(0.01)


def wait_gone(monitor: psycopg.Connection, pid: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while monitor.execute("select 1 from pg_catalog.pg_stat_activity where pid = %s", (pid,)).fetchall():
        assert time.monotonic() < deadline, f"the holder's backend {pid} did not exit in {DEADLINE}s"
        time.sleep(0.01)


def answers(monitor: psycopg.Connection, innocent: BackendHolder, backend_start) -> bool:
    """Whether the innocent backend, same PID and start, still runs a statement sent now. A backend
    that was sent SIGTERM before exits at its next read from the client, without running it."""
    innocent.send(f"set application_name = '{ANSWERED}';")
    deadline = time.monotonic() + DEADLINE
    while True:
        if monitor.execute(
                "select 1 from pg_catalog.pg_stat_activity where pid = %s and backend_start = %s"
                " and application_name = %s", (innocent.pid, backend_start, ANSWERED)).fetchall():
            return True
        if not innocent.psql.session_alive():
            return False  # psql exits when it finds its connection gone
        assert time.monotonic() < deadline, f"{INNOCENT} neither answered nor ended in {DEADLINE}s"
        time.sleep(0.02)


@requires_pid_control
def test_failover_spares_a_backend_that_took_the_holders_pid_while_it_ran():
    with SlonyBed(nodes=1) as bed:
        bed.cluster.build()
        assert PATCHED_BED in bed.install_fix(1)
        server = bed.node(1)
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        server.query('insert into "_bed".sl_nodelock (nl_nodeid, nl_backendpid)'
                     ' select %s, %s + i from pg_catalog.generate_series(1, %s) i', (FAILED, pid_max, LEFTOVERS))

        holder = server.connect(application_name="slon.node_2_listen")
        client = None
        try:
            pid, holder_start = holder.execute("select pid, backend_start from pg_catalog.pg_stat_activity"
                                               " where pid = pg_catalog.pg_backend_pid()").fetchone()
            holder.execute('select "_bed".registerNodeConnection(%s)', (FAILED,))
            [(conncnt,)] = holder.execute('select nl_conncnt from "_bed".sl_nodelock where nl_backendpid = %s',
                                          (pid,)).fetchall()
            assert server.query(
                "select pid, backend_start, adopted from slony_nodelock.lock_identity"
                " where cluster_schema = '_bed' and nl_nodeid = %s and nl_conncnt = %s",
                (FAILED, conncnt)) == [(pid, holder_start, False)]
            holders_row = describe_row("_bed", {"nl_nodeid": FAILED, "nl_conncnt": conncnt, "nl_backendpid": pid})

            with server.connect() as monitor:
                client = subprocess.Popen(
                    ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                     "-d", server.conninfo(application_name=FAILOVER_CLIENT),
                     "-c", f'select "_bed".terminateNodeConnections({FAILED})'],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    pipesize=STDERR_PIPE_SIZE)
                started = time.monotonic()
                wait_blocked_writing_notices(monitor, client)
                blocked_after = time.monotonic() - started
                # Not signalled yet: a terminated backend would fail this round trip.
                assert holder.execute("select 1").fetchone() == (1,), "the failover reached the holder's row"

                holder.close()
                wait_gone(monitor, pid)
                innocent = bed.put_backend_on(1, pid, INNOCENT)
                [(innocent_start,)] = monitor.execute(
                    "select backend_start from pg_catalog.pg_stat_activity where pid = %s and application_name = %s",
                    (pid, INNOCENT)).fetchall()
                assert innocent_start > holder_start

                out, err = client.communicate(timeout=DEADLINE)
                assert client.returncode == 0, err.decode(errors="replace")[-3000:]
                assert out.decode().strip() == "0"
                lines = err.decode().splitlines()
                notices = [line.removeprefix("NOTICE:  ") for line in lines if line.startswith("NOTICE:  ")]
                assert len(notices) == len(lines) == LEFTOVERS + 1, lines[-5:]
                [holder_notice] = [n for n in notices if holders_row + ":" in n]
                print(f"blocked writing NOTICEs {blocked_after:.2f}s after psql started; "
                      f"the holder's NOTICE, #{notices.index(holder_notice) + 1} of {len(notices)}:\n{holder_notice}")

                alive = answers(monitor, innocent, innocent_start)
                fatal = f"[{pid}] {INNOCENT} FATAL:  terminating connection due to administrator command"
                logged = [line for line in server.logfile.read_text().splitlines() if fatal in line]
                assert alive and not logged, (
                    f"the failover terminated {INNOCENT}, the backend that got pid {pid} after the holder's "
                    f"connection ended; the kit said: {holder_notice!r}; server log: {logged}")

            assert notices.index(holder_notice) == LEFTOVERS, "the holder's row was not judged last"
            assert "terminated the holder" not in holder_notice
            assert holder_notice.startswith(f"slony-nodelock: failover: did not signal the holder of the {holders_row}: ")
            assert str(pid) in holder_notice.split(holders_row + ": ", 1)[1]  # the reason names the PID
            assert server.query('select count(*) from "_bed".sl_nodelock where nl_nodeid = %s', (FAILED,)) == [(0,)]
        finally:
            holder.close()
            if client is not None and client.poll() is None:
                client.kill()
                client.communicate(timeout=DEADLINE)
