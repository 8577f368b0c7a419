"""The test bed: N PostgreSQL servers with a Slony cluster over them, torn down without a trace."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .pidreuse import AuxiliaryHolder, BackendHolder, SleepHolder, start_slon_on_pid
from .postgres import DATABASE, PostgresServer, shared_template
from .processes import ProcessLedger, SessionProcess, server_account
from .slony import Slon, SlonyCluster

TEMP_PREFIX = "slony-nodelock-bed-"
# Every bed directory this process made, for the suite's final check.
created_roots: list[Path] = []
REPO = Path(__file__).resolve().parents[2]
INSTALL_SQL = REPO / "sql" / "install.sql"
UNINSTALL_SQL = REPO / "sql" / "uninstall.sql"


class BedLeftovers(AssertionError):
    """Something the bed started, or a directory it made, outlived the teardown."""


class SlonyBed:
    """Context manager owning everything a scenario starts.

    On exit it stops slons, holders and servers, removes its directory, and then fails if any
    process it started is still alive or the directory is still there.
    """

    def __init__(self, nodes: int = 2, cluster: str = "bed", keep: bool = False,
                 exit_grace: float = 15.0):
        """exit_grace: how long teardown waits for stopped processes to be gone before it
        declares them survivors."""
        self.node_count = nodes
        self.exit_grace = exit_grace
        self.cluster_name = cluster
        self.keep = keep
        self.root: Path | None = None
        self.cluster: SlonyCluster | None = None
        self.holders: list[SleepHolder | BackendHolder | AuxiliaryHolder] = []
        self.ledger: ProcessLedger | None = None
        self.slons: dict[int, Slon] = {}
        self.standbys: list[PostgresServer] = []

    def __enter__(self) -> "SlonyBed":
        # /tmp rather than pytest's tmp_path: the postgres account must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir="/tmp"))
        created_roots.append(self.root)
        self.ledger = ProcessLedger(marker=str(self.root))
        try:
            self.root.chmod(0o755)
            account = server_account()
            shutil.chown(self.root, account.pw_uid, account.pw_gid)
            self.cluster = SlonyCluster(self.cluster_name, {}, self.root)
            for n in range(1, self.node_count + 1):
                self.add_server(n)
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if not self.keep:
            self.teardown()

    # -- building --------------------------------------------------------------------------------

    def add_server(self, node_id: int, hidden_extensions: tuple[str, ...] = ()) -> PostgresServer:
        """Start one more server (node_id names it; slonik only sees it if the cluster is built
        after). hidden_extensions: see PostgresServer.create."""
        assert self.root is not None and self.cluster is not None
        server = PostgresServer.create(f"node{node_id}", self.root, shared_template(), hidden_extensions)
        self.cluster.nodes[node_id] = server
        return server

    def add_standby(self, of_node: int, name: str = "standby") -> PostgresServer:
        """A hot standby streaming from of_node's server; not a Slony node."""
        assert self.root is not None and self.cluster is not None
        standby = PostgresServer.create_standby(name, self.root, self.node(of_node))
        self.standbys.append(standby)
        return standby

    def install_fix(self, node_id: int) -> str:
        """Run sql/install.sql on the node with psql, as an operator would; return psql's output."""
        return self._run_script(node_id, INSTALL_SQL)

    def uninstall_fix(self, node_id: int) -> str:
        return self._run_script(node_id, UNINSTALL_SQL)

    def _run_script(self, node_id: int, path: Path) -> str:
        result = self.node(node_id).psql_file(path)
        if result.returncode != 0:
            raise AssertionError(f"{path.name} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result.stdout + result.stderr

    # -- the scenario steps ---------------------------------------------------------------------

    def node(self, node_id: int) -> PostgresServer:
        assert self.cluster is not None
        return self.cluster.node(node_id)

    def build_replicating(self, forward: bool = False) -> dict[int, Slon]:
        """Build the cluster, start one slon per node, subscribe (forwarding, if asked), and prove
        a row replicates."""
        assert self.cluster is not None
        self.cluster.build()
        self.slons = {n: self.cluster.start_slon(n) for n in self.cluster.nodes}
        self.cluster.subscribe(forward=forward)
        for n in self.cluster.nodes:
            if n != 1:
                self.cluster.assert_replicates(1, n)
        return self.slons

    def reboot_host_of(self, node_id: int, reuse_pid: Callable[[int], object] | None = None) -> int:
        """What a power cut on the host that runs node_id's server and every slon looks like:
        the slons die, the server crash-restarts, and the other nodes' slons come back (as their
        supervisor would start them). node_id's slon is left for the caller to start.

        reuse_pid, if given, is called with the stale PID right after the server is back and
        before anything else starts, so that it can put a holder on the PID (see put_sleep_on
        and put_backend_on).

        Returns the PID left in node_id's sl_nodelock row, which now belongs to no process.
        A remote slon could ride out the crash too, but it waits a minute before reconnecting,
        which would make every scenario a minute slower.
        """
        assert self.cluster is not None
        for slon in self.slons.values():
            slon.kill()
        stale = self.cluster.own_lock_pid(node_id)
        assert stale is not None, f"node {node_id}'s slon holds no lock to leave behind"
        self.node(node_id).crash_restart()
        assert self.cluster.own_lock_pid(node_id) == stale, "the lock row did not survive"
        if reuse_pid is not None:
            reuse_pid(stale)
        others = [n for n in self.cluster.nodes if n != node_id]
        # A supervisor restarts slon after a pause; restarting it while its old backend is still
        # exiting would make stock Slony refuse it (the race its FATAL "residual idle backend"
        # message is about), which is not what these scenarios are about.
        for n in others:
            self.cluster.wait_lock_holder_gone(n)
        self.slons = {n: self.cluster.start_slon(n) for n in others}
        return stale

    def start_slon(self, node_id: int) -> Slon:
        """Start a slon for node_id; it becomes the node's current slon in self.slons."""
        assert self.cluster is not None
        self.slons[node_id] = self.cluster.start_slon(node_id)
        return self.slons[node_id]

    # -- PID reuse -------------------------------------------------------------------------------

    def start_sleep(self) -> SleepHolder:
        """A postgres-owned process that is no PostgreSQL process, on whatever PID it gets."""
        assert self.root is not None
        holder = SleepHolder(SessionProcess.start(["sleep", "infinity"], cwd=self.root))
        self.holders.append(holder)
        return holder

    def put_sleep_on(self, pid: int) -> SleepHolder:
        assert self.root is not None
        holder = SleepHolder.claim(pid, cwd=self.root)
        self.holders.append(holder)
        return holder

    def start_slon_on_pid(self, node_id: int, pid: int) -> Slon:
        """Start node_id's slon with its local_listen backend on pid (see start_slon_on_pid)."""
        assert self.cluster is not None
        self.slons[node_id] = start_slon_on_pid(self.cluster, node_id, pid)
        return self.slons[node_id]

    def put_backend_on(self, node_id: int, pid: int, application_name: str,
                       dbname: str = DATABASE) -> BackendHolder:
        holder = BackendHolder.open(self.node(node_id), application_name, dbname)
        self.holders.append(holder)
        return holder.claim(pid)

    def put_autovacuum_launcher_on(self, node_id: int, pid: int) -> AuxiliaryHolder:
        """The node's server's autovacuum launcher, an auxiliary process, restarted onto pid."""
        holder = AuxiliaryHolder(self.node(node_id))
        self.holders.append(holder)
        return holder.claim(pid)

    def release_holders(self) -> None:
        for holder in self.holders:
            holder.release()
        self.holders.clear()

    def write_stop_script(self) -> Path:
        """For a kept bed: a script that stops everything the bed started and removes its
        directory, the same steps as teardown."""
        assert self.root is not None and self.cluster is not None
        lines = ["#!/bin/sh", "# Stops the kept slony-nodelock bed and removes its directory."]
        sessions = [s.process for s in self.cluster.slons] + [
            h.process if isinstance(h, SleepHolder) else h.psql for h in self.holders
            if not isinstance(h, AuxiliaryHolder)
        ]
        lines += [f"kill -TERM -{p.pid}" for p in sessions if p.session_alive()]
        for server in self.cluster.nodes.values():
            lines.append(f"runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D {server.datadir} -m fast stop")
        lines.append(f"rm -rf {self.root}")
        script = self.root / "stop.sh"
        script.write_text("\n".join(lines) + "\n")
        script.chmod(0o755)
        return script

    # -- teardown --------------------------------------------------------------------------------

    def teardown(self) -> None:
        problems: list[str] = []
        if self.cluster is not None:
            self.cluster.stop_all_slons()
        for holder in self.holders:
            holder.release()
        if self.cluster is not None:
            for server in [*self.standbys, *self.cluster.nodes.values()]:
                try:
                    server.stop()
                except Exception as exc:  # keep tearing down the rest; report at the end
                    problems.append(f"{server.name} did not stop: {exc}")
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            if self.root.exists():
                problems.append(f"directory {self.root} is still there")
        if self.ledger is not None:
            problems += [f"survived teardown: {s}" for s in self.ledger.wait_for_none(self.exit_grace)]
        if problems:
            raise BedLeftovers("\n".join(problems))
