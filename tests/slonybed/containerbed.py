"""The container bed: each Slony node is a container of its PostgreSQL major's node image, started
through testcontainers, with slon running inside it as the node's init starts it. A crash is a
kill and a start of the container; PID reuse comes from the container's fresh PID namespace, with
nothing forced.

Every connection stays on 127.0.0.1: the containers share the host's network, one port per node.
"""

from __future__ import annotations

import shlex
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from .bed import REPO
from .engine import RUN_LABEL, note_started
from .postgres import free_port
from .slony import DUPLICATE_LOCK, TABLE

DATABASE = "slony_test"
WAIT = 60

# One row per cluster of the container matrix: (cluster, stock restarts, stock refusals, kit
# restarts, kit restarts whose stale PID was in use, kit refusals), printed at the end of the run.
matrix_rows: list[tuple[str, int, int, int, int, int]] = []


@dataclass
class ContainerNode:
    """One node's container. Its /control directory is a directory of ours, through which its
    init is asked to start and stop slon and tells how slon ended (see node-entrypoint): no
    command is exec'd into the container, since each exec leaves an engine monitor process
    (podman's conmon) running for minutes after it."""

    node_id: int
    major: int
    image: str
    run_id: str
    control: Path
    port: int = field(default_factory=free_port)
    container: object = None

    def start(self) -> None:
        from testcontainers.core.container import DockerContainer

        self.control.mkdir(parents=True, exist_ok=True)
        self.container = (
            DockerContainer(self.image)
            .with_env("PGPORT", str(self.port))
            .with_volume_mapping(str(self.control), "/control", "rw")
            .with_kwargs(network_mode="host", labels={RUN_LABEL: self.run_id})
        )
        self.container.start()
        note_started(self.container.get_wrapped_container().id)
        self.wait_ready()

    def conninfo(self, dbname: str = DATABASE) -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, dbname=dbname, user="postgres")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                with psycopg.connect(self.conninfo("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"node {self.node_id} (PostgreSQL {self.major}) did not accept "
                                         f"connections in {WAIT}s: {exc}\n{self.logs()}") from exc
                time.sleep(0.2)

    def logs(self) -> str:
        out, err = self.container.get_logs()
        return (out or b"").decode(errors="replace") + (err or b"").decode(errors="replace")

    def query(self, sql: str, params: tuple | None = None, dbname: str = DATABASE) -> list[tuple]:
        with psycopg.connect(self.conninfo(dbname), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def psql_file(self, path: Path) -> subprocess.CompletedProcess:
        """Run a script as an operator does, with the host's psql over TCP."""
        return subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(), "-f", str(path)],
                              capture_output=True, text=True, timeout=120)

    def _ask(self, request: str, timeout: float = 30) -> None:
        """Leave a request file for the node's init and wait until it has taken it."""
        flag = self.control / request
        flag.touch()
        deadline = time.monotonic() + timeout
        while flag.exists():
            assert time.monotonic() < deadline, f"node {self.node_id}'s init did not take {request} in {timeout}s"
            time.sleep(0.05)

    def set_up_slon(self, cluster: str) -> None:
        """Give the node its slon, as its init config: started now, and at every boot."""
        (self.control / "slon.env").write_text(
            f"SLON_CLUSTER={shlex.quote(cluster)}\nSLON_CONNINFO={shlex.quote(self.conninfo())}\n")
        self._ask("slon.start")

    def stop_slon(self, timeout: float = 30) -> None:
        """Stop the node's slon if it runs."""
        if self.slon_exit() is None:
            self._ask("slon.stop")
            deadline = time.monotonic() + timeout
            while self.slon_exit() is None:
                assert time.monotonic() < deadline, f"node {self.node_id}'s slon did not stop in {timeout}s"
                time.sleep(0.05)

    def restart_slon(self) -> None:
        """Stop the node's slon if it runs, and have its init start it again."""
        self.stop_slon()
        self._ask("slon.start")

    def slon_log(self) -> str:
        path = self.control / "slon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def slon_exit(self) -> int | None:
        try:
            text = (self.control / "slon.exit").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text else None

    def crash_restart(self) -> None:
        """A power cut and a reboot: SIGKILL to everything in the container, then a fresh start.
        testcontainers has no kill or restart of a running container, so its docker-py object is
        used for these two calls."""
        wrapped = self.container.get_wrapped_container()
        wrapped.kill()
        wrapped.wait(timeout=WAIT)
        # How the killed boot's slon ended is void: this boot's is what counts.
        (self.control / "slon.exit").unlink(missing_ok=True)
        wrapped.start()
        self.wait_ready()

    def run_once(self, entrypoint: str, *args: str, timeout: float = 180) -> tuple[int, str]:
        """Run one of the node image's programs (slonik, slon) in a container of its own, which is
        removed afterwards: the program must be the node's Slony release. testcontainers has no
        wait for a container's exit, so docker-py's is used for it."""
        from testcontainers.core.container import DockerContainer

        once = (DockerContainer(self.image)
                .with_command(list(args))
                .with_volume_mapping(str(self.control), "/control", "rw")
                .with_kwargs(entrypoint=[entrypoint], network_mode="host", labels={RUN_LABEL: self.run_id}))
        once.start()
        try:
            note_started(once.get_wrapped_container().id)
            code = once.get_wrapped_container().wait(timeout=timeout)["StatusCode"]
            return code, once.get_wrapped_container().logs().decode(errors="replace")
        finally:
            once.stop()

    def stop(self) -> None:
        if self.container is not None:
            self.container.stop()


@dataclass
class ContainerCluster:
    """A Slony cluster over container nodes: node 1 is the origin."""

    nodes: dict[int, ContainerNode]
    name: str = "bed"

    @property
    def schema(self) -> str:
        return "_" + self.name

    def slonik(self, body: str) -> str:
        preamble = [f"cluster name = {self.name};"] + [
            f"node {n} admin conninfo = '{node.conninfo()}';" for n, node in self.nodes.items()]
        script = "\n".join(preamble) + "\n" + body
        (self.nodes[1].control / "script.slonik").write_text(script)
        code, out = self.nodes[1].run_once("slonik", "/control/script.slonik")
        assert code == 0, f"slonik failed ({code}):\n{script}\n{out}"
        return out

    def build_replicating(self) -> None:
        for node in self.nodes.values():
            node.query(f"create database {DATABASE}", dbname="postgres")
            node.query(f"create table {TABLE} (id serial primary key, note text)")
        others = [n for n in self.nodes if n != 1]
        self.slonik("init cluster (id = 1, comment = 'node 1');\n" + "".join(
            f"store node (id = {n}, comment = 'node {n}', event node = 1);\n"
            f"store path (server = 1, client = {n}, conninfo = '{self.nodes[1].conninfo()}');\n"
            f"store path (server = {n}, client = 1, conninfo = '{self.nodes[n].conninfo()}');\n" for n in others)
            + f"create set (id = 1, origin = 1, comment = 'bed set');\n"
              f"set add table (set id = 1, origin = 1, id = 1, fully qualified name = '{TABLE}');\n")
        for node in self.nodes.values():
            node.set_up_slon(self.name)
        for n in others:
            self.slonik(f"subscribe set (id = 1, provider = 1, receiver = {n}, forward = no);\n"
                        f"sync (id = 1);\nwait for event (origin = 1, confirmed = {n}, wait on = 1, timeout = 120);\n")
        for n in others:
            self.assert_replicates(1, n)

    def own_lock_pid(self, node_id: int) -> int | None:
        row = self.own_lock(node_id)
        return row[0] if row else None

    def own_lock(self, node_id: int) -> tuple[int, str] | None:
        """(PID, row version) of the node's own lock row, if there is one."""
        rows = self.nodes[node_id].query(
            f"select nl_backendpid, xmin::text from {self.schema}.sl_nodelock where nl_nodeid = %s and nl_conncnt = 0",
            (node_id,))
        return rows[0] if rows else None

    def wait_slon_outcome(self, node_id: int, since: str, stale_row: str | None, log_from: int,
                          timeout: float = WAIT) -> str:
        """'runs' once the node's slon holds a lock row it took itself (not stale_row, the row
        version left before the crash) with a backend started after since (the node's boot), or
        'refused' once it has exited on the duplicate key, as its log from log_from says."""
        node = self.nodes[node_id]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.slon_exit() is not None:
                assert DUPLICATE_LOCK in node.slon_log()[log_from:], node.slon_log()[log_from:][-3000:]
                return "refused"
            lock = self.own_lock(node_id)
            if lock is not None and lock[1] != stale_row and node.query(
                    "select 1 from pg_catalog.pg_stat_activity where pid = %s and application_name = "
                    "'slon.local_listen' and backend_start >= %s::timestamptz", (lock[0], since)):
                return "runs"
            time.sleep(0.2)
        raise AssertionError(f"node {node_id}'s slon neither ran nor gave up in {timeout}s:\n"
                             f"{node.slon_log()[-3000:]}")

    def assert_replicates(self, origin: int, subscriber: int, timeout: float = 120) -> None:
        note = f"probe-{uuid.uuid4()}"
        self.nodes[origin].query(f"insert into {TABLE} (note) values (%s)", (note,))
        deadline = time.monotonic() + timeout
        while not self.nodes[subscriber].query(f"select 1 from {TABLE} where note = %s", (note,)):
            assert time.monotonic() < deadline, (
                f"{note} did not reach node {subscriber} in {timeout}s:\n"
                + "\n".join(f"--- node {n}:\n{node.slon_log()[-2000:]}" for n, node in self.nodes.items()))
            time.sleep(0.3)
