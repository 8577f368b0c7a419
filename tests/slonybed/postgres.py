"""Independent PostgreSQL 15 servers, one per Slony node, run by the postgres OS user.

We drive pg_ctl ourselves instead of pytest-postgresql's PostgreSQLExecutor: that executor is a
mirakuru TCPExecutor, so it waits for a TCP port, while our servers listen on unix sockets only;
and it runs pg_ctl as the calling user, which PostgreSQL refuses when that user is root. We still
use pytest-postgresql's DatabaseJanitor to create each node's database.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from .processes import run, server_account

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE = "slony_test"

# Settings that make the servers private to the bed and quick to start and stop.
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
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
    """initdb once per bed; every node's data directory is a copy of it, which is much faster."""
    datadir = directory / "template-data"
    run(
        [str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
         "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
        cwd=directory,
    )
    return datadir


@dataclass
class PostgresServer:
    """One node's server: its own data directory, socket directory and port."""

    name: str
    home: Path
    port: int

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
    def create(cls, name: str, parent: Path, template: Path) -> "PostgresServer":
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
        server.start()
        DatabaseJanitor(user="postgres", host=str(server.socket_dir), port=server.port,
                        dbname=DATABASE).init()
        return server

    def conninfo(self, dbname: str = DATABASE, **extra) -> str:
        return make_conninfo(host=str(self.socket_dir), port=self.port, dbname=dbname,
                             user="postgres", **extra)

    def connect(self, **extra) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(**extra), autocommit=True)

    def query(self, sql: str, params: tuple | dict | None = None) -> list[tuple]:
        with self.connect() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def _pg_ctl(self, *args: str) -> None:
        run([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile), "-w",
             *args], cwd=self.home)

    def start(self) -> None:
        self._pg_ctl("start")

    def crash_restart(self) -> None:
        """Kill the server without a shutdown checkpoint and start it again: to the database, this
        is what a power cut and reboot look like. Every backend PID dies with it."""
        self._pg_ctl("-m", "immediate", "restart")

    def is_running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def stop(self) -> None:
        if not self.is_running():
            return
        try:
            self._pg_ctl("-m", "fast", "stop")
        except RuntimeError:
            self._pg_ctl("-m", "immediate", "stop")
