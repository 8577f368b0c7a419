"""A real Slony-I cluster over PostgresServer nodes: slonik to build it, slon daemons to run it."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from .postgres import PostgresServer
from .processes import SessionProcess, run

TABLE = "public.replicated"
TABLE_DDL = "create table public.replicated (id serial primary key, note text not null)"

# Short sync intervals so that a row replicates within a second or two instead of ten.
SLON_OPTIONS = ["-s", "200", "-t", "1000"]

DUPLICATE_LOCK = 'duplicate key value violates unique constraint "sl_nodelock-pkey"'


class SlonikError(RuntimeError):
    pass


@dataclass
class Slon:
    """One slon daemon for one node, in its own session."""

    node_id: int
    process: SessionProcess
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def log(self) -> str:
        return self.process.log_text()

    def alive(self) -> bool:
        return self.process.session_alive()

    def wait_exit(self, timeout: float = 30) -> int | None:
        code = self.process.wait_exit(timeout)
        if code is None:
            return None
        # The leader is the watchdog; its worker may still be on its way out.
        deadline = time.monotonic() + 10
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return code

    def stop(self) -> None:
        self.process.kill_session()

    def kill(self) -> None:
        """SIGKILL slon and its worker at once: what a power cut does to them."""
        self.process.kill_session(hard=True)

    def wait_log(self, text: str, timeout: float = 15) -> str:
        """The log once it holds text: slon writes a NOTICE to its log on its own time, which may
        come after the row change the NOTICE is about is visible."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log):
            assert time.monotonic() < deadline, f"{text!r} not in slon {self.node_id}'s log after {timeout}s:\n{log}"
            time.sleep(0.05)
        return log


@dataclass
class SlonyCluster:
    name: str
    nodes: dict[int, PostgresServer]
    workdir: Path
    slons: list[Slon] = field(default_factory=list)

    @property
    def schema(self) -> str:
        return f"_{self.name}"

    def node(self, node_id: int) -> PostgresServer:
        return self.nodes[node_id]

    def slonik(self, body: str, timeout: float = 180, pgoptions: str | None = None) -> str:
        """Run a slonik script with the cluster preamble; raise with slonik's output on failure.
        pgoptions: server settings for slonik's sessions (libpq's PGOPTIONS)."""
        preamble = [f"cluster name = {self.name};"]
        for node_id, server in self.nodes.items():
            conninfo = server.conninfo()
            assert "'" not in conninfo, conninfo
            preamble.append(f"node {node_id} admin conninfo = '{conninfo}';")
        script = "\n".join(preamble) + "\n" + body + "\n"
        result = run(["slonik"], cwd=self.workdir, input=script, timeout=timeout, check=False,
                     extra_env={"PGOPTIONS": pgoptions} if pgoptions else None)
        if result.returncode != 0:
            raise SlonikError(f"slonik failed ({result.returncode}):\n{script}\n{result.stdout}{result.stderr}")
        return result.stdout + result.stderr

    def build(self, origin: int = 1) -> None:
        """init cluster, store nodes and paths both ways, and a set with one table on the origin."""
        for server in self.nodes.values():
            server.query(TABLE_DDL)
        others = [n for n in self.nodes if n != origin]
        lines = [f"init cluster (id = {origin}, comment = 'node {origin}');"]
        lines += [f"store node (id = {n}, comment = 'node {n}', event node = {origin});" for n in others]
        for a in self.nodes:
            for b in self.nodes:
                if a != b:
                    lines.append(
                        f"store path (server = {a}, client = {b}, conninfo = '{self.nodes[a].conninfo()}');"
                    )
        lines += [
            f"create set (id = 1, origin = {origin}, comment = 'bed set');",
            f"set add table (set id = 1, origin = {origin}, id = 1, "
            f"fully qualified name = '{TABLE}', comment = 'replicated');",
        ]
        self.slonik("\n".join(lines))

    def subscribe(self, origin: int = 1, timeout: int = 120, forward: bool = False) -> None:
        """Subscribe every other node to the set; needs the slons running. Returns once slonik's
        wait for event has seen every node confirm. forward: the subscribers keep the log a
        failover to one of them needs."""
        lines = [
            f"subscribe set (id = 1, provider = {origin}, receiver = {n}, forward = {'yes' if forward else 'no'});"
            for n in self.nodes if n != origin
        ]
        lines += [
            f"sync (id = {origin});",
            f"wait for event (origin = {origin}, confirmed = all, wait on = {origin}, timeout = {timeout});",
        ]
        self.slonik("\n".join(lines), timeout=timeout + 30)

    def start_slon(self, node_id: int) -> Slon:
        server = self.nodes[node_id]
        log_path = server.home / f"slon-{node_id}-{len(self.slons)}.log"
        # Taken before the fork: taken after, a loaded machine could let slon's backends start
        # first, and no backend of this slon would count as started after it.
        started_at = datetime.now(timezone.utc)
        process = SessionProcess.start(
            ["slon", *SLON_OPTIONS, self.name, server.conninfo()], cwd=server.home, log_path=log_path
        )
        slon = Slon(node_id, process, started_at)
        self.slons.append(slon)
        return slon

    def start_slon_via(self, node_id: int, conninfo: str, *options: str) -> Slon:
        """Start a slon for node_id that reaches its own node through conninfo (a pooler's, say)
        instead of the server's own; options go before SLON_OPTIONS (-d 1 names each backend)."""
        log_path = self.nodes[node_id].home / f"slon-{node_id}-{len(self.slons)}.log"
        started_at = datetime.now(timezone.utc)  # before the fork, as in start_slon
        process = SessionProcess.start(["slon", *options, *SLON_OPTIONS, self.name, conninfo],
                                       cwd=self.nodes[node_id].home, log_path=log_path)
        slon = Slon(node_id, process, started_at)
        self.slons.append(slon)
        return slon

    def stop_all_slons(self) -> None:
        for slon in self.slons:
            slon.stop()

    def lock_rows(self, node_id: int) -> list[tuple[int, int, int]]:
        """(nl_nodeid, nl_conncnt, nl_backendpid) of node_id's sl_nodelock."""
        return self.node(node_id).query(
            sql.SQL("select nl_nodeid, nl_conncnt, nl_backendpid from {}.sl_nodelock order by 1, 2")
            .format(sql.Identifier(self.schema))
        )

    def own_lock_pid(self, node_id: int) -> int | None:
        """The PID in the node's own slon lock row (nl_conncnt = 0), if there is one."""
        rows = [r for r in self.lock_rows(node_id) if r[0] == node_id and r[1] == 0]
        return rows[0][2] if rows else None

    def point_lock_at(self, node_id: int, pid: int) -> None:
        """Make the node's own lock row name pid: what cleanupNodelock() sees after a reboot that
        handed the old slon backend's PID to that process, without needing ns_last_pid to put the
        process there. An UPDATE makes a new row version, so the row has no identity record, like
        a row taken before the kit was installed."""
        self.node(node_id).query(
            sql.SQL("update {}.sl_nodelock set nl_backendpid = %s where nl_nodeid = %s and nl_conncnt = 0")
            .format(sql.Identifier(self.schema)), (pid, node_id))
        assert self.own_lock_pid(node_id) == pid

    def lock_held_by(self, slon: Slon) -> int | None:
        """The PID of the node's own lock row if slon's local_listen backend holds it, else None.

        A backend started before slon cannot be slon's, whatever its application_name says:
        that is exactly the impostor the PID-reuse scenarios plant.
        """
        pid = self.own_lock_pid(slon.node_id)
        if pid is not None and self.node(slon.node_id).query(
            "select 1 from pg_catalog.pg_stat_activity where pid = %s "
            "and application_name = 'slon.local_listen' and backend_start >= %s",
            (pid, slon.started_at),
        ):
            return pid
        return None

    def wait_slon_holds_lock(self, slon: Slon, timeout: float = 30) -> int:
        """Wait until slon's local_listen backend holds the node's lock row; return its PID."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not slon.alive():
                raise AssertionError(f"slon for node {slon.node_id} exited:\n{slon.log}")
            pid = self.lock_held_by(slon)
            if pid is not None:
                return pid
            time.sleep(0.1)
        raise AssertionError(f"slon for node {slon.node_id} took no lock in {timeout}s:\n{slon.log}")

    def wait_lock_holder_gone(self, node_id: int, timeout: float = 15) -> None:
        """Wait until the backend named in the node's own lock row has exited."""
        pid = self.own_lock_pid(node_id)
        deadline = time.monotonic() + timeout
        while pid is not None and self.node(node_id).query(
            "select 1 from pg_catalog.pg_stat_activity where pid = %s", (pid,)
        ):
            assert time.monotonic() < deadline, f"node {node_id}'s lock holder {pid} did not exit"
            time.sleep(0.05)

    def assert_replicates(self, origin: int, subscriber: int, timeout: float = 60) -> str:
        """Insert a row on origin and return once subscriber has it; fail after timeout."""
        note = f"probe-{uuid.uuid4()}"
        self.node(origin).query(f"insert into {TABLE} (note) values (%s)", (note,))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.node(subscriber).query(f"select 1 from {TABLE} where note = %s", (note,)):
                return note
            time.sleep(0.2)
        latest = {slon.node_id: slon for slon in self.slons}  # the last slon started per node
        logs = "\n".join(
            f"--- slon for node {slon.node_id} (alive: {slon.alive()}):\n" + "\n".join(
                line for line in slon.log.splitlines() if " CONFIG " not in line)[-2500:]
            for slon in latest.values())
        raise AssertionError(f"row {note!r} did not reach node {subscriber} within {timeout}s\n{logs}")
