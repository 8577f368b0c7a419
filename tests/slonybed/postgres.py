"""Independent PostgreSQL 15 servers, one per Slony node, run by the postgres OS user.

We drive pg_ctl ourselves instead of pytest-postgresql's PostgreSQLExecutor: that executor is a
mirakuru TCPExecutor, so it waits for a TCP port, while our servers listen on unix sockets only;
and it runs pg_ctl as the calling user, which PostgreSQL refuses when that user is root. We still
use pytest-postgresql's DatabaseJanitor to create each node's database.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from .processes import note_session, run, server_account

PG_BIN = Path("/usr/lib/postgresql/15/bin")
EXTENSION_DIR = Path("/usr/share/postgresql/15/extension")
DATABASE = "slony_test"
TEMPLATE_DIR = "template-data"
TEMPLATE_PREFIX = "slony-nodelock-template-"

# Settings that make the servers private to the bed and quick to start and stop. fsync off is
# safe for a crash-restart (the OS keeps the page cache); synchronous_commit stays on, or an
# immediate shutdown would lose the last commits, such as the install we are about to test.
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "'16MB'",
    "max_connections": "100",
    "logging_collector": "off",
    "log_line_prefix": "'%m [%p] %a '",
}


def free_port() -> int:
    """A port nobody listens on. Our servers use it only to name their socket file, but a free
    port keeps them from colliding if someone later turns TCP on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_template(directory: Path) -> Path:
    """An initdb'd data directory in directory, for servers to copy."""
    datadir = directory / TEMPLATE_DIR
    run(
        [str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
         "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
        cwd=directory,
    )
    return datadir


_shared_template: Path | None = None


def shared_template() -> Path:
    """initdb once per test process (each xdist worker, the demo): every node's data directory
    is a copy of this one, which takes a fraction of an initdb. Removed at exit, or earlier by
    remove_shared_template()."""
    global _shared_template
    if _shared_template is None or not _shared_template.exists():
        root = Path(tempfile.mkdtemp(prefix=TEMPLATE_PREFIX, dir="/tmp"))
        # The postgres account copies it, so it must reach it.
        root.chmod(0o755)
        account = server_account()
        shutil.chown(root, account.pw_uid, account.pw_gid)
        _shared_template = make_template(root)
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    return _shared_template


def remove_shared_template() -> Path | None:
    """Remove the shared template now; return its directory, which must be gone afterwards."""
    global _shared_template
    if _shared_template is None:
        return None
    root, _shared_template = _shared_template.parent, None
    shutil.rmtree(root, ignore_errors=True)
    return root


@dataclass
class PostgresServer:
    """One node's server: its own data directory, socket directory and port."""

    name: str
    home: Path
    port: int
    # Prefix for every pg_ctl command line; see hide_extensions.
    launcher: list[str] = field(default_factory=list)

    @property
    def datadir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home

    @property
    def logfile(self) -> Path:
        return self.home / "postgres.log"

    @classmethod
    def create(cls, name: str, parent: Path, template: Path,
               hidden_extensions: tuple[str, ...] = ()) -> "PostgresServer":
        """A started server with the bed's database. hidden_extensions: extension names this
        server must not find, as on a host where their Debian package is not installed."""
        home = parent / name
        server = cls(name, home, free_port())
        # Copy as the server user so ownership and the 0700 mode PostgreSQL insists on are kept.
        home.mkdir(mode=0o755)
        account = server_account()
        shutil.chown(home, account.pw_uid, account.pw_gid)
        run(["cp", "-a", str(template), str(server.datadir)], cwd=home)
        settings = dict(SERVER_SETTINGS, port=str(server.port),
                        unix_socket_directories=f"'{server.socket_dir}'")
        conf = "".join(f"{k} = {v}\n" for k, v in settings.items())
        (server.datadir / "postgresql.auto.conf").write_text(conf)
        shutil.chown(server.datadir / "postgresql.auto.conf", account.pw_uid, account.pw_gid)
        if hidden_extensions:
            server.hide_extensions(hidden_extensions)
        server.start()
        DatabaseJanitor(user="postgres", host=str(server.socket_dir), port=server.port,
                        dbname=DATABASE).init()
        return server

    @classmethod
    def create_standby(cls, name: str, parent: Path, primary: "PostgresServer") -> "PostgresServer":
        """A started hot standby of primary, streaming from it: pg_basebackup -R, then its own
        port and socket directory."""
        home = parent / name
        server = cls(name, home, free_port())
        home.mkdir(mode=0o755)
        account = server_account()
        shutil.chown(home, account.pw_uid, account.pw_gid)
        run([str(PG_BIN / "pg_basebackup"), "-D", str(server.datadir), "-R", "-X", "stream", "--no-sync",
             "-d", primary.conninfo(dbname="postgres")], cwd=home)
        # The copy carries the primary's own settings; this server's port and socket go after them.
        with open(server.datadir / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {server.port}\nunix_socket_directories = '{server.socket_dir}'\n")
        server.start()
        return server

    def hide_extensions(self, names: tuple[str, ...]) -> None:
        """Start the server in a private mount namespace whose extension directory lacks the
        named extensions' files. Only this server sees the difference; the host is untouched."""
        view = self.home / "extension-view"
        view.mkdir()
        for f in EXTENSION_DIR.iterdir():
            if not any(f.name.startswith(n + ".") or f.name.startswith(n + "--") for n in names):
                shutil.copy2(f, view / f.name)
        account = server_account()
        self.launcher = [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c",
            'mount --bind "$1" "$2" && u="$3" && shift 3 && '
            'exec setpriv --reuid "$u" --regid "$u" --clear-groups -- "$@"',
            "extension-view", str(view), str(EXTENSION_DIR), account.pw_name,
        ]

    def conninfo(self, dbname: str = DATABASE, **extra) -> str:
        """libpq connection string for this server; extra keywords (user, application_name, ...)
        override the defaults."""
        base = make_conninfo(host=str(self.socket_dir), port=self.port, dbname=dbname, user="postgres")
        return make_conninfo(base, **extra)

    def connect(self, **extra) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(**extra), autocommit=True)

    def query(self, sql: str, params: tuple | dict | None = None) -> list[tuple]:
        with self.connect() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def pid_of(self, backend_type: str) -> int:
        """The PID of this server's process of backend_type ('checkpointer', 'walwriter', ...)."""
        [(pid,)] = self.query("select pid from pg_catalog.pg_stat_activity where backend_type = %s",
                              (backend_type,))
        return pid

    def psql_file(self, path: Path, *, user: str = "postgres", cwd: Path = Path("/"),
                  timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a script the way an operator does: psql -v ON_ERROR_STOP=1 -d DB -f PATH.
        psql runs as us (the repository need not be readable by the postgres user). Past timeout
        seconds psql is killed and subprocess.TimeoutExpired raised."""
        return self.psql_file_in(path, DATABASE, user=user, cwd=cwd, timeout=timeout)

    def psql_file_in(self, path: Path, dbname: str, *, user: str = "postgres",
                     cwd: Path = Path("/"), timeout: float = 120) -> subprocess.CompletedProcess:
        """psql_file against another database of this server."""
        return subprocess.run(
            ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(dbname=dbname, user=user), "-f", str(path)],
            cwd=cwd, capture_output=True, text=True, timeout=timeout,
        )

    def _pg_ctl(self, *args: str) -> None:
        argv = [str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile), "-w", *args]
        if self.launcher:
            # The launcher mounts as root, then becomes the server user itself.
            run(self.launcher + argv, cwd=self.home, keep_root=True)
        else:
            run(argv, cwd=self.home)

    def start(self) -> None:
        self._pg_ctl("start")
        self._note_session()

    def crash_restart(self) -> None:
        """Kill the server without a shutdown checkpoint and start it again: to the database, this
        is what a power cut and reboot look like. Every backend PID dies with it."""
        self._pg_ctl("-m", "immediate", "restart")
        self._note_session()

    def _note_session(self) -> None:
        # pg_ctl starts the postmaster in a session of its own; the teardown check follows it.
        note_session(int((self.datadir / "postmaster.pid").read_text().split()[0]))

    def is_running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def stop(self) -> None:
        if not self.is_running():
            return
        try:
            self._pg_ctl("-m", "fast", "stop")
        except RuntimeError:
            self._pg_ctl("-m", "immediate", "stop")
