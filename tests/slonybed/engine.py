"""A Docker-API container engine for the container tests: one that already answers (Docker, say),
or else a podman service this run starts on a private socket and stops when it is done.

podman reads a private containers.conf named by CONTAINERS_CONF, the socket lives in a directory
of the run's own, and only the variables of this process point testcontainers at it. Its image
store is the system's (/var/lib/containers, as root), where the node images stay cached.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .processes import ProcessLedger, note_session

# Every container the suite starts carries this label, so that what is left can be found and
# removed (testcontainers' own reaper, Ryuk, needs an image from a registry).
RUN_LABEL = "org.slony-nodelock.test-run"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
# Set by tests/bin/with-container-engine for the whole suite, every xdist worker included: the
# run's id, the directory where workers list the containers they start, and why no engine could
# be had (then the container tests skip, saying so).
RUN_ID_VARIABLE = "SLONY_NODELOCK_TEST_RUN"
RUN_DIR_VARIABLE = "SLONY_NODELOCK_RUN_DIR"
ENGINE_PROBLEM_VARIABLE = "SLONY_NODELOCK_ENGINE_PROBLEM"
STARTED_IDS_FILE = "started-containers"
START_TIMEOUT = 30


class EngineUnavailable(RuntimeError):
    """No container engine can be had here; the message says why, in one line."""


def docker_client(base_url: str | None = None, timeout: float = 5):
    import docker

    return docker.DockerClient(base_url=base_url, timeout=timeout) if base_url else docker.from_env(timeout=timeout)


def answering_engine_problem(base_url: str | None = None) -> str | None:
    """None if the Docker-API engine at base_url (by default this environment's: DOCKER_HOST, or
    Docker's socket) answers within seconds, else why not. Never raises or hangs."""
    try:
        client = docker_client(base_url)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # the client raises several kinds; any of them means "no engine"
        return f"{type(exc).__name__}: {exc}"
    return None


def _ulimit(kind: int) -> int:
    """At most 4096, and never above the hard limit: podman's defaults are higher, and raising a
    limit past the hard one fails with EPERM."""
    hard = resource.getrlimit(kind)[1]
    return 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)


@dataclass
class PodmanService:
    """`podman system service` on a socket of our own, as the leader of its own session."""

    directory: Path
    process: subprocess.Popen
    ledger: ProcessLedger

    @property
    def base_url(self) -> str:
        return f"unix://{self.directory / 'podman.sock'}"

    @classmethod
    def start(cls, parent: Path | None = None) -> "PodmanService":
        """parent: where the service's own directory (socket, containers.conf, log) is made."""
        if os.geteuid() != 0:
            raise EngineUnavailable("no container engine answers, and starting podman's needs root")
        if shutil.which("podman") is None:
            raise EngineUnavailable("no container engine answers, and podman is not installed "
                                    "(as root: apt-get install podman runc)")
        if shutil.which("runc") is None:
            # Debian's podman is content with crun, which fails on this host's cgroup layout.
            raise EngineUnavailable("no container engine answers, and runc, podman's runtime here, is not "
                                    "installed (as root: apt-get install runc)")
        directory = Path(tempfile.mkdtemp(prefix="slony-nodelock-engine-", dir=parent))
        conf = directory / "containers.conf"
        # runc: crun fails on hosts with a hybrid cgroup layout.
        conf.write_text(
            '[engine]\nruntime = "runc"\n'
            f'[containers]\ndefault_ulimits = ["nofile={_ulimit(resource.RLIMIT_NOFILE)}:{_ulimit(resource.RLIMIT_NOFILE)}", '
            f'"nproc={_ulimit(resource.RLIMIT_NPROC)}:{_ulimit(resource.RLIMIT_NPROC)}"]\n')
        env = dict(os.environ, CONTAINERS_CONF=str(conf))
        log = open(directory / "podman-service.log", "wb")
        ledger = ProcessLedger(marker=str(directory))
        try:
            process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", f"unix://{directory / 'podman.sock'}"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        note_session(process.pid)
        service = cls(directory, process, ledger)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            problem = answering_engine_problem(service.base_url)
            if problem is None:
                return service
            if process.poll() is not None or time.monotonic() > deadline:
                text = (directory / "podman-service.log").read_text(errors="replace").strip().splitlines()
                service.stop()
                raise EngineUnavailable(f"podman's service did not answer in {START_TIMEOUT}s: "
                                        f"{text[-1] if text else problem}")
            time.sleep(0.2)

    def stop(self) -> list[str]:
        """Stop the service; return what of it (monitors it started among them) is still alive."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        left = self.ledger.wait_for_none(15)
        for survivor in left:
            try:
                os.kill(survivor.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.directory, ignore_errors=True)
        return [str(s) for s in left]


def worker_run_id() -> str:
    """The label value of this pytest process's containers: the suite run's id (set by
    tests/bin/with-container-engine for every worker), or a fresh one, and the xdist worker."""
    global _local_run_id
    if _local_run_id is None:
        _local_run_id = os.environ.get(RUN_ID_VARIABLE) or uuid.uuid4().hex
    return f"{_local_run_id}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


_local_run_id: str | None = None


def compose_project(run_id: str) -> str:
    """The Compose project name of a test run's compose stack; the leftover check finds it by it."""
    return f"slony-nodelock-{run_id}"


def note_started(container_id: str) -> None:
    """Remember a container this process started, so that the engine processes that serve it
    can be found after it is removed; the suite's wrapper reads the run directory's list."""
    _started_ids.add(container_id)
    run_dir = os.environ.get(RUN_DIR_VARIABLE)
    if run_dir:
        with open(Path(run_dir) / STARTED_IDS_FILE, "a") as ids:
            ids.write(container_id + "\n")


# Ids of the containers this process started.
_started_ids: set[str] = set()


def engine_pods(client) -> set[str]:
    """Names of the engine's pods: podman's own API has them, Docker's has none. Neither
    testcontainers nor docker-py knows pods, so the engine's API is asked directly."""
    reply = client.api.get(client.api.base_url + "/libpod/pods/json", timeout=30)
    if reply.status_code == 404:
        return set()
    reply.raise_for_status()
    return {pod["Name"] for pod in reply.json() or []}


def _of_run(value: str, run_id: str, whole_run: bool) -> bool:
    """Whether a label value names run_id: exactly, or, for the whole run, any of its workers
    (run_id-gw0, ...)."""
    return value == run_id or (whole_run and value.startswith(run_id + "-"))


def remove_run_leftovers(client, run_id: str, ids: set[str] | None = None, whole_run: bool = False,
                         timeout: float = 30) -> list[str]:
    """Remove every container and volume of run_id (labelled ones, and the compose stack named
    by compose_project), wait until no host process (the engine's conmon monitors among them)
    names a container in ids (by default, the ones this process started), and kill those that
    stay; return what was left behind. testcontainers removes only the containers it started
    itself and has no listing by label, so docker-py does this."""
    ids = set(_started_ids if ids is None else ids)
    project = compose_project(run_id)
    ours = [c for c in client.containers.list(all=True, filters={"label": RUN_LABEL})
            if _of_run(c.labels.get(RUN_LABEL, ""), run_id, whole_run)]
    ours += [c for c in client.containers.list(all=True, filters={"label": COMPOSE_PROJECT_LABEL})
             if _of_run(c.labels.get(COMPOSE_PROJECT_LABEL, ""), project, whole_run)]
    left = [f"container {c.name}" for c in ours]
    for container in ours:
        ids.add(container.id)
        container.remove(force=True, v=True)
    volumes = [v for v in client.volumes.list(filters={"label": COMPOSE_PROJECT_LABEL})
               if _of_run((v.attrs.get("Labels") or {}).get(COMPOSE_PROJECT_LABEL, ""), project, whole_run)]
    for volume in volumes:
        left.append(f"volume {volume.name}")
        volume.remove(force=True)
    deadline = time.monotonic() + timeout
    while (processes := processes_naming(ids)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid, _ in processes:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left + [f"process {pid}: {args}" for pid, args in processes]


def processes_naming(ids: set[str]) -> list[tuple[int, str]]:
    """(PID, command line) of the host processes whose command line or control group names one
    of the container ids: a container's own processes, and the engine's monitors of it."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and ids:
            try:
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                groups = (entry / "cgroup").read_text(errors="replace")
            except OSError:
                continue
            if any(i in args or i in groups for i in ids):
                found.append((int(entry.name), args[:120]))
    return found
