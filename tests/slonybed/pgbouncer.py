"""A real pgbouncer in session mode in front of one node's server, as sites put one in front of slon.

It runs as the postgres OS user, as the leader of its own session (like slon), with its
configuration, auth file, log and pid file in a directory of the bed's own, and listens on
127.0.0.1 only, on a free port; it reaches the node's server through the server's unix socket.
Stopping it kills its whole session; the bed's directory, removed at teardown, takes its files.

The pool's size is start()'s pool_size (default_pool_size). By default it is made small on
purpose, 1, so that a client arriving while the one pooled server connection is being reset
(DISCARD ALL, what session mode runs when a client leaves) waits for it instead of getting a new
one. slon's start-up connection closes just before its local_listen thread connects; with a pool
of 1 local_listen gets the very server connection that start-up used. Further clients (slon's
other threads) get connections from the reserve pool once they have waited reserve_pool_timeout.
A site's pool is bigger (pool_size=20, say): each client then gets an idle server connection if
there is one (the one that went idle last), else a new one.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from .postgres import DATABASE, PostgresServer, free_port
from .processes import SessionProcess, server_account

PGBOUNCER = Path("/usr/sbin/pgbouncer")
LISTEN_ADDRESS = "127.0.0.1"
ADMIN_DATABASE = "pgbouncer"
USER = "postgres"


class PoolerError(RuntimeError):
    pass


@dataclass
class PgBouncer:
    """One pgbouncer for one node's server (and its DATABASE only)."""

    server: PostgresServer
    home: Path
    port: int
    process: SessionProcess | None = None

    @property
    def ini(self) -> Path:
        return self.home / "pgbouncer.ini"

    @property
    def logfile(self) -> Path:
        return self.home / "pgbouncer.log"

    @classmethod
    def start(cls, server: PostgresServer, home: Path, *, pool_size: int = 1, reserve_pool_size: int = 10,
              reserve_pool_timeout: float = 0.5, timeout: float = 30) -> "PgBouncer":
        """Write the configuration into home (made here) and start pgbouncer; return once its admin
        console answers, or raise with its log after timeout. pool_size: default_pool_size."""
        if not PGBOUNCER.exists():
            raise PoolerError(f"{PGBOUNCER} is missing (Debian package pgbouncer: apt-get install pgbouncer)")
        home.mkdir(mode=0o755)
        account = server_account()
        shutil.chown(home, account.pw_uid, account.pw_gid)
        pooler = cls(server, home, free_port())
        target = f"host={server.socket_dir} port={server.port} dbname={DATABASE} user={USER}"
        settings = {
            "listen_addr": LISTEN_ADDRESS,
            "listen_port": str(pooler.port),
            # No unix socket: nothing of ours in /tmp or /var/run/postgresql.
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(home / "userlist.txt"),
            "admin_users": USER,
            "pool_mode": "session",
            "server_reset_query": "DISCARD ALL",
            "default_pool_size": str(pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": str(reserve_pool_size),
            "reserve_pool_timeout": str(reserve_pool_timeout),
            "max_client_conn": "100",
            # Idle server connections stay pooled for the whole test (0: no idle timeout). The
            # default server_lifetime (3600s) stays: 0 there would close each after one use.
            "server_idle_timeout": "0",
            # A refused server connection is tried again at once, not after 15s.
            "server_login_retry": "1",
            "logfile": str(pooler.logfile),
            "pidfile": str(home / "pgbouncer.pid"),
            "log_connections": "1",
            "log_disconnections": "1",
            "ignore_startup_parameters": "extra_float_digits",
        }
        lines = ["[databases]", f"{DATABASE} = {target}", "", "[pgbouncer]"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        pooler.ini.write_text("\n".join(lines) + "\n")
        (home / "userlist.txt").write_text(f'"{USER}" ""\n')
        pooler.process = SessionProcess.start([str(PGBOUNCER), str(pooler.ini)], cwd=home,
                                              log_path=home / "pgbouncer.out")
        try:
            pooler._wait_ready(timeout)
        except BaseException:
            pooler.release()
            raise
        return pooler

    def _wait_ready(self, timeout: float) -> None:
        # The admin console, not the node's database: a connection to that would leave a server
        # connection in the pool, and which one a client gets next is what the tests are about.
        deadline = time.monotonic() + timeout
        while True:
            if not self.process.session_alive():
                raise PoolerError(f"pgbouncer exited at start:\n{self.log_text()}")
            try:
                self.show("VERSION")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PoolerError(f"pgbouncer did not answer in {timeout}s: {exc}\n{self.log_text()}") from None
            time.sleep(0.05)

    def conninfo(self, dbname: str = DATABASE, **extra) -> str:
        """libpq connection string for the node's database through the pooler."""
        base = make_conninfo(host=LISTEN_ADDRESS, port=self.port, dbname=dbname, user=USER)
        return make_conninfo(base, **extra)

    def show(self, what: str) -> list[dict]:
        """SHOW what on the admin console (SERVERS, CLIENTS, POOLS, ...), as dicts by column.
        The console speaks the simple query protocol only, hence the client-side cursor."""
        with psycopg.connect(self.conninfo(ADMIN_DATABASE), autocommit=True,
                             cursor_factory=psycopg.ClientCursor, connect_timeout=5) as admin:
            cur = admin.execute(f"SHOW {what}")
            names = [c.name for c in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def servers(self) -> list[dict]:
        """The pool's server connections to the node's database (remote_pid: the backend's PID)."""
        return [s for s in self.show("SERVERS") if s["database"] == DATABASE]

    def clients(self) -> list[dict]:
        """The clients connected to the node's database (the admin console's are left out)."""
        return [c for c in self.show("CLIENTS") if c["database"] == DATABASE]

    def wait_pooled(self, timeout: float = 15) -> list[int]:
        """Wait until no client is connected to the node's database and every server connection
        left is idle in the pool (reset and ready for the next client); their backends' PIDs."""
        deadline = time.monotonic() + timeout
        while True:
            clients, servers = self.clients(), self.servers()
            if not clients and all(s["state"] == "idle" for s in servers):
                return sorted(s["remote_pid"] for s in servers)
            if time.monotonic() > deadline:
                raise PoolerError(f"pgbouncer did not settle in {timeout}s: clients {clients}, servers {servers}")
            time.sleep(0.05)

    def keep_only(self, pid: int, timeout: float = 15) -> None:
        """End every pooled server connection but the one whose backend is pid (from the server
        side, pg_terminate_backend, as an operator would), and wait until the pool holds that one
        only, idle: the next client is then handed that backend."""
        others = [p for p in self.wait_pooled(timeout) if p != pid]
        for other in others:
            self.server.query("select pg_catalog.pg_terminate_backend(%s)", (other,))
        deadline = time.monotonic() + timeout
        while (servers := [(s["remote_pid"], s["state"]) for s in self.servers()]) != [(pid, "idle")]:
            if time.monotonic() > deadline:
                raise PoolerError(f"the pool still holds {servers} {timeout}s after ending {others}")
            time.sleep(0.05)

    def log_text(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.logfile, self.home / "pgbouncer.out") if p.exists()]
        return "\n".join(parts)

    def release(self) -> None:
        """Stop pgbouncer: its whole session, SIGTERM (immediate shutdown) then SIGKILL."""
        if self.process is not None:
            self.process.kill_session()


def start_pgbouncer(bed, node_id: int, **settings) -> PgBouncer:
    """A pgbouncer in front of node_id's server, in the bed's directory; the bed stops it at
    teardown (after the slons, before the servers), as it releases its holders."""
    pooler = PgBouncer.start(bed.node(node_id), bed.root / f"pgbouncer-node{node_id}", **settings)
    bed.holders.append(pooler)
    return pooler
