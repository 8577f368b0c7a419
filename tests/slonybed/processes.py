"""Starting processes as the postgres OS user, in sessions we can kill whole, and proving none survive."""

from __future__ import annotations

import fcntl
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SERVER_USER = "postgres"

# (session id, its leader's start time) of every session the bed started (slons, holders,
# postmasters), in order. The start time tells our session from a later one whose leader got
# the same PID, in this test process or another.
started_sessions: list[tuple[int, int | None]] = []


@contextmanager
def exclusive_flock(path: Path, timeout: float, what: str, poll: float = 0.05) -> Iterator[None]:
    """Hold an exclusive flock on path (created if missing) for the with block; other processes
    wait for it, up to timeout, then RuntimeError names what they waited for."""
    with open(path, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} was held elsewhere for {timeout}s") from None
                time.sleep(poll)
        yield


def note_session(pid: int) -> None:
    """Record a session we started, led by pid."""
    started_sessions.append((pid, start_time(pid)))


def _stat(pid: int) -> tuple[str, list[str]] | None:
    """(command name, the fields after it) of /proc/PID/stat, or None if the process is gone: field
    3 (the state) is the first of those. The name may hold spaces and parentheses, so the fields
    are counted after its last ')'."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """When a live process started (clock ticks since boot, /proc/PID/stat field 22), or None."""
    stat = _stat(pid)
    return int(stat[1][19]) if stat else None


def session_states(session: int) -> dict[int, str]:
    """{pid: state letter (R, S, T, ...)} of the live processes in a session."""
    states = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and int(stat[1][3]) == session:
            states[int(entry.name)] = stat[1][0]
    return states


def server_account() -> pwd.struct_passwd:
    """The OS account every bed process runs as: postgres when we are root, else ourselves."""
    if os.geteuid() == 0:
        return pwd.getpwnam(SERVER_USER)
    return pwd.getpwuid(os.geteuid())


def as_server_user() -> dict:
    """Popen keyword arguments that drop root to the postgres account in the forked child.

    Dropping privileges inside the child (rather than through runuser) keeps the fork count at one,
    which is what lets a PID-reuse holder land exactly on the PID we prepared.
    """
    account = server_account()
    env = {
        "PATH": "/usr/lib/postgresql/15/bin:/usr/bin:/bin",
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    kwargs: dict = {"env": env}
    if os.geteuid() == 0:
        kwargs.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    return kwargs


def run(
    argv: list[str], *, cwd: Path, input: str | None = None, timeout: float = 120,
    check: bool = True, keep_root: bool = False, extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a short-lived command as the server user and return its captured output.

    keep_root runs it as ourselves with the server user's environment, for a launcher that must
    do something as root (such as a mount) before it drops to the server user itself.
    extra_env adds variables to that environment (PGOPTIONS, say).
    """
    identity = as_server_user()
    identity["env"].update(extra_env or {})
    if keep_root:
        identity = {"env": identity["env"]}
    result = subprocess.run(
        argv, cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout, **identity
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@dataclass
class SessionProcess:
    """A long-running command started as the leader of its own session (setsid).

    slon forks a worker and the worker opens connections; killing the whole session is the only
    way to be sure nothing it started is left behind.
    """

    popen: subprocess.Popen
    log_path: Path | None = None

    @classmethod
    def start(
        cls, argv: list[str], *, cwd: Path, log_path: Path | None = None, stdin=subprocess.DEVNULL
    ) -> "SessionProcess":
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **as_server_user(),
            )
        finally:
            if log_path:
                log.close()
        note_session(popen.pid)
        return cls(popen, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def session_alive(self) -> bool:
        """True while any process of the session (leader or a child it forked) is alive."""
        self.popen.poll()
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the leader to exit; return its exit code, or None if it is still running."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_session(self, grace: float = 5.0, hard: bool = False) -> None:
        """SIGTERM the whole session, then SIGKILL whatever is left, and reap the leader. hard:
        SIGKILL at once, as a power cut ends it."""
        steps = ((signal.SIGKILL, 10.0),) if hard else ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0))
        for sig, wait in steps:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while self.session_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.session_alive():
                break
        self.popen.poll()
        if self.popen.returncode is None:
            self.popen.wait(timeout=10)
        if self.popen.stdin:
            self.popen.stdin.close()


@dataclass(frozen=True)
class Survivor:
    pid: int
    user: str
    args: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.user}): {self.args}"


def process_info(pid: int) -> tuple[int, int, int, str] | None:
    """(uid, parent pid, session id, command line) of a live process, or None if it is gone."""
    stat = _stat(pid)
    try:
        uid = Path(f"/proc/{pid}").stat().st_uid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if stat is None:
        return None
    name, fields = stat
    parent, session = int(fields[1]), int(fields[3])
    args = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return uid, parent, session, args or name


def process_args(pid: int) -> str | None:
    """The command line of a live process, or None when pid is free."""
    info = process_info(pid)
    return info[3] if info else None


def command_line(pid: int) -> str:
    """The command line of a live process, for messages."""
    return process_args(pid) or "(no such process)"


@dataclass
class ProcessLedger:
    """Names every process still alive that the bed started since the ledger opened.

    Each slon and holder leads a session of its own, and so does each postmaster (pg_ctl sees to
    that); a postmaster's children open sessions of their own too, but stay its children. So a
    process is ours if it is in one of those sessions, or descends from a process that is, or
    names the bed's directory on its command line. Other work on the machine, even another bed,
    is left out.
    """

    marker: str | None = None
    first_session: int = field(default_factory=lambda: len(started_sessions))

    def survivors(self) -> list[Survivor]:
        # A session whose leader's PID now belongs to a process started at another time is no
        # longer ours: a new session leader (a backend of another test process, say) has the number.
        sessions = {pid for pid, started in started_sessions[self.first_session :]
                    if start_time(pid) in (None, started)}
        me = os.getpid()
        table = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != me:
                info = process_info(int(entry.name))
                if info is not None:
                    table[int(entry.name)] = info
        ours = {pid for pid, (_, _, sid, args) in table.items() if sid in sessions or (self.marker and self.marker in args)}
        grew = True
        while grew:
            children = {pid for pid, (_, ppid, _, _) in table.items() if ppid in ours} - ours
            ours |= children
            grew = bool(children)
        return [Survivor(pid, pwd.getpwuid(table[pid][0]).pw_name, table[pid][3]) for pid in sorted(ours)]

    def wait_for_none(self, timeout: float = 15.0) -> list[Survivor]:
        """Survivors still present after waiting up to timeout for exiting processes to go."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.survivors()
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.2)
