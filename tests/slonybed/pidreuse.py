"""Putting a chosen process on a chosen PID, the way a reboot hands an old PID to a new process.

Linux gives the next fork the PID after /proc/sys/kernel/ns_last_pid. Root may write that file, so
writing N-1 just before a fork makes the fork get N, unless some other fork on the machine gets
there first; then we let the stray holder go and try again.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from .postgres import DATABASE, PostgresServer
from .processes import SessionProcess, exclusive_flock, process_args

if TYPE_CHECKING:
    from .slony import Slon, SlonyCluster

NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")
MAX_ATTEMPTS = 50
# Forks on this machine between slon's start and its local_listen backend's: the slon process,
# its worker, the worker's start-up connection, and what the server forks meanwhile. Measured
# (8 to 12 here); start_slon_on_pid adjusts from it.
FORKS_BEFORE_LOCAL_LISTEN = 9

# Attempts each successful claim needed, for the suite's closing summary.
attempt_log: list[int] = []


class PidUnavailable(RuntimeError):
    """The PID cannot be had for a test: other forks on the machine kept taking it."""


class PidBusy(PidUnavailable):
    """The PID to claim belongs to a live process already, so no fork can get it."""


# How long a PID may stay taken before a claim gives up: a miss we just killed, or a backend of
# one, takes a moment to be reaped.
BUSY_GRACE = 10
# How long a claim waits for another test process's claim to finish.
LOCK_WAIT = 300
# Set to any value, the suite behaves as where ns_last_pid cannot be written (a root container
# without CAP_SYS_ADMIN, say), so that what runs there can be checked here.
NO_PID_CONTROL_SWITCH = "SLONYBED_NO_PID_CONTROL"


def _prepare_next_fork(pid: int, forks_before: int = 0) -> None:
    """Make the fork that comes forks_before forks from now get pid, if nothing else forks.
    Waits a little for pid to be free; raises PidBusy if some live process keeps it."""
    deadline = time.monotonic() + BUSY_GRACE
    while (holder := process_args(pid)) is not None:
        if time.monotonic() > deadline:
            raise PidBusy(f"pid {pid} to be reused is held by another live process ({holder})")
        time.sleep(0.05)
    NS_LAST_PID.write_text(str(pid - 1 - forks_before))


class _CounterRestored:
    """Holds the PID counter for one claim, and puts it back where it was once the claim is done.
    Left rewound, the next forks would take PIDs that recently exited, such as another node's old
    slon backend still named in its lock row, and reproduce the bug where no scenario meant to.

    The hold is an flock on ns_last_pid itself, so that claims of other test processes (xdist
    workers, another run) wait: two interleaved claims would each restore the other's rewound
    counter."""

    def __enter__(self) -> None:
        self.lock = exclusive_flock(NS_LAST_PID, LOCK_WAIT, f"{NS_LAST_PID}, by another claim,")
        try:
            self.lock.__enter__()
        except RuntimeError as waited:
            raise PidUnavailable(str(waited)) from None
        self.counter = int(NS_LAST_PID.read_text())

    def __exit__(self, *exc) -> None:
        try:
            NS_LAST_PID.write_text(str(max(self.counter, int(NS_LAST_PID.read_text()))))
        finally:
            self.lock.__exit__(None, None, None)


def pid_control_refusal() -> str | None:
    """Why this run cannot put a process on a chosen PID, or None when it can."""
    if os.environ.get(NO_PID_CONTROL_SWITCH):
        return f"not writing {NS_LAST_PID}: {NO_PID_CONTROL_SWITCH} is set"
    try:
        NS_LAST_PID.write_text(NS_LAST_PID.read_text().strip())
    except OSError as exc:
        return f"cannot write {NS_LAST_PID}: {exc.strerror or exc}"
    return None


def start_unrecorded_on(pid: int, argv: list[str]) -> subprocess.Popen:
    """A process on pid, in a session of its own that no ledger records: what a server or slon of
    another test process looks like to this one."""
    with _CounterRestored():
        for _ in range(MAX_ATTEMPTS):
            _prepare_next_fork(pid)
            process = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if process.pid == pid:
                return process
            process.kill()
            process.wait(timeout=10)
    raise PidUnavailable(f"could not get pid {pid} in {MAX_ATTEMPTS} attempts: other forks took it first")


@dataclass
class SleepHolder:
    """A process owned by the server account that is not PostgreSQL: what a log collector such as
    svlogd looks like to kill(pid, 0)."""

    process: SessionProcess

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def claim(cls, pid: int, cwd: Path) -> "SleepHolder":
        with _CounterRestored():
            for attempt in range(1, MAX_ATTEMPTS + 1):
                _prepare_next_fork(pid)
                process = SessionProcess.start(["sleep", "infinity"], cwd=cwd)
                if process.pid == pid:
                    attempt_log.append(attempt)
                    return cls(process)
                process.kill_session()
        raise PidUnavailable(f"could not get pid {pid} in {MAX_ATTEMPTS} attempts: other forks took it first")

    def release(self) -> None:
        self.process.kill_session()


@dataclass
class BackendHolder:
    """A client backend of the node's server on a chosen PID, with a chosen application_name
    (empty, too: what most drivers leave it).

    Only the postmaster can fork a backend, so we keep one psql running and make it \\connect:
    the postmaster's fork for the new connection is the one that takes the prepared PID. Each
    attempt connects under a name of its own, so that its backend is told from every other; the
    winner then takes the chosen name with SET, as an application would.
    """

    server: PostgresServer
    psql: SessionProcess
    watch: psycopg.Connection
    application_name: str
    dbname: str
    pid: int | None = None

    @classmethod
    def open(cls, server: PostgresServer, application_name: str, dbname: str = DATABASE) -> "BackendHolder":
        """dbname: the database the backend is to serve (another one than the node's, say)."""
        psql = SessionProcess.start(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
             server.conninfo(application_name="slonybed.holder-idle", dbname=dbname)],
            cwd=server.home, log_path=server.home / "holder-psql.log", stdin=subprocess.PIPE,
        )
        # One connection opened up front to watch for the new backend: connecting anew on every
        # poll would make the postmaster fork, and that fork could take the prepared PID.
        return cls(server, psql, server.connect(), application_name, dbname)

    def _send(self, line: str) -> None:
        assert self.psql.popen.stdin is not None
        self.psql.popen.stdin.write(line.encode() + b"\n")
        self.psql.popen.stdin.flush()

    def _backend_named(self, name: str, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.watch.execute(
                "select pid from pg_catalog.pg_stat_activity where application_name = %s "
                "and backend_type = 'client backend' and pid <> pg_catalog.pg_backend_pid()",
                (name,),
            ).fetchall()
            if len(rows) == 1:
                return rows[0][0]
            if not self.psql.session_alive():
                raise RuntimeError(f"holder psql exited:\n{self.psql.log_text()}")
            time.sleep(0.02)
        raise RuntimeError(f"psql made no backend named {name!r} in {timeout}s")

    def claim(self, pid: int) -> "BackendHolder":
        with _CounterRestored():
            for attempt in range(1, MAX_ATTEMPTS + 1):
                trial = f"slonybed.claim-{uuid.uuid4()}"
                _prepare_next_fork(pid)
                self._send(f"\\connect '{self.server.conninfo(application_name=trial, dbname=self.dbname)}'")
                if self._backend_named(trial) == pid:
                    break
            else:
                raise PidUnavailable(f"could not get pid {pid} in {MAX_ATTEMPTS} attempts: other forks took it first")
        self._send("set application_name = %s;" % sql.quote(self.application_name))
        deadline = time.monotonic() + 10
        while self.watch.execute("select application_name from pg_catalog.pg_stat_activity where pid = %s",
                                 (pid,)).fetchall() != [(self.application_name,)]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"backend {pid} did not take the name {self.application_name!r}")
            time.sleep(0.02)
        self.pid = pid
        attempt_log.append(attempt)
        return self

    def send(self, statement: str) -> None:
        """Have the holder's backend run statement (psql reads it from its input)."""
        self._send(statement)

    def release(self) -> None:
        self.watch.close()
        self.psql.kill_session()


@dataclass
class AuxiliaryHolder:
    """The server's autovacuum launcher on a chosen PID: a PostgreSQL auxiliary process, what a
    reboot may hand a stale lock's PID to. The launcher exits on SIGTERM and the postmaster forks
    a new one at once, so each attempt stops the current launcher with the counter prepared."""

    server: PostgresServer
    pid: int | None = None

    def claim(self, pid: int, timeout: float = 10) -> "AuxiliaryHolder":
        # One connection, opened before the counter is set: a connection per poll would make the
        # postmaster fork a backend, which could take the prepared PID.
        with self.server.connect() as watch, _CounterRestored():
            for attempt in range(1, MAX_ATTEMPTS + 1):
                # Right after a restart, or the previous attempt, the postmaster may not have
                # started the launcher yet.
                deadline = time.monotonic() + timeout
                while (current := _launcher(watch)) is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the server has had no autovacuum launcher for {timeout}s")
                    time.sleep(0.02)
                _prepare_next_fork(pid)
                os.kill(current, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while (new := _launcher(watch)) in (None, current):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the postmaster started no new autovacuum launcher in {timeout}s")
                    time.sleep(0.02)
                if new == pid:
                    attempt_log.append(attempt)
                    self.pid = pid
                    return self
        raise PidUnavailable(f"could not get pid {pid} in {MAX_ATTEMPTS} attempts: other forks took it first")

    def release(self) -> None:
        """Nothing to stop: the launcher is the server's own, and goes with it."""


def _launcher(watch: psycopg.Connection) -> int | None:
    rows = watch.execute(
        "select pid from pg_catalog.pg_stat_activity where backend_type = 'autovacuum launcher'").fetchall()
    return rows[0][0] if rows else None


def start_slon_on_pid(cluster: "SlonyCluster", node_id: int, pid: int) -> "Slon":
    """Start node_id's slon so that its local_listen backend, the one that takes the node's lock
    row, gets pid: what a reboot or a container restart does by chance.

    slon's start-up forks in a fixed order (slon, its worker, the worker's start-up connection,
    then local_listen's, with the server's own forks between), so each miss is stopped and the
    lead adjusted by how far it landed from pid. A miss's backends must be gone before the next
    try, or the PIDs they still hold would shift it.
    """
    server = cluster.node(node_id)
    lead = FORKS_BEFORE_LOCAL_LISTEN
    # The largest lead seen to land above pid, and the smallest seen to land below it.
    short, long_ = None, None
    with _CounterRestored():
        for attempt in range(1, MAX_ATTEMPTS + 1):
            cluster.wait_lock_holder_gone(node_id)
            before = _slon_backends(server)
            _prepare_next_fork(pid, forks_before=lead)
            slon = cluster.start_slon(node_id)
            got = cluster.wait_slon_holds_lock(slon)
            if got == pid:
                attempt_log.append(attempt)
                return slon
            slon.stop()
            deadline = time.monotonic() + 15
            while not _slon_backends(server) <= before:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"slon {node_id}'s backends did not exit after it was stopped")
                time.sleep(0.05)
            if got > pid:
                short = lead if short is None else max(short, lead)
            else:
                long_ = lead if long_ is None else min(long_, lead)
            # local_listen was fork number lead + (got - pid) after the counter was set, but other
            # forks on the machine vary that count from one try to the next: once pid lies
            # between two tries, halve the gap; when no lead is left between them, start over.
            lead = max(0, lead + got - pid)
            if short is not None and long_ is not None:
                if long_ - short > 1:
                    lead = (short + long_) // 2
                else:
                    lead = random.choice((short, long_))
                    short, long_ = None, None
    raise PidUnavailable(f"could not start slon {node_id} on pid {pid} in {MAX_ATTEMPTS} attempts: "
                         "other forks kept shifting it")


def _slon_backends(server: PostgresServer) -> set[int]:
    return {pid for (pid,) in server.query(
        "select pid from pg_catalog.pg_stat_activity where application_name like 'slon.%'")}
