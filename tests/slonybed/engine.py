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
from dataclasses import dataclass
from pathlib import Path

from .processes import started_sessions

# Every container the suite starts carries this label, so that what is left can be found and
# removed (testcontainers' own reaper, Ryuk, needs an image from a registry).
RUN_LABEL = "org.slony-nodelock.test-run"
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

    @property
    def base_url(self) -> str:
        return f"unix://{self.directory / 'podman.sock'}"

    @classmethod
    def start(cls) -> "PodmanService":
        if os.geteuid() != 0:
            raise EngineUnavailable("no container engine answers, and starting podman's needs root")
        if shutil.which("podman") is None:
            raise EngineUnavailable("no container engine answers, and podman is not installed "
                                    "(as root: apt-get install podman runc)")
        directory = Path(tempfile.mkdtemp(prefix="slony-nodelock-engine-"))
        conf = directory / "containers.conf"
        # runc: crun fails on hosts with a hybrid cgroup layout.
        conf.write_text(
            '[engine]\nruntime = "runc"\n'
            f'[containers]\ndefault_ulimits = ["nofile={_ulimit(resource.RLIMIT_NOFILE)}:{_ulimit(resource.RLIMIT_NOFILE)}", '
            f'"nproc={_ulimit(resource.RLIMIT_NPROC)}:{_ulimit(resource.RLIMIT_NPROC)}"]\n')
        env = dict(os.environ, CONTAINERS_CONF=str(conf))
        log = open(directory / "podman-service.log", "wb")
        try:
            process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", f"unix://{directory / 'podman.sock'}"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        started_sessions.append(process.pid)
        service = cls(directory, process)
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

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def remove_run_containers(client, run_id: str, timeout: float = 30) -> list[str]:
    """Remove every container of this run, running or not, and wait until no host process
    (the engine's conmon monitors among them) names one; return what was left behind."""
    containers = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})
    left = [f"container {c.name}" for c in containers]
    ids = [c.id for c in containers] + list(_started_ids.get(run_id, ()))
    for container in containers:
        container.remove(force=True)
    deadline = time.monotonic() + timeout
    while (processes := _processes_naming(ids)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left + [f"process {p}" for p in processes]


# Ids of the containers each run started, kept so that processes can be checked after removal.
_started_ids: dict[str, set[str]] = {}


def note_started(run_id: str, container_id: str) -> None:
    _started_ids.setdefault(run_id, set()).add(container_id)


def _processes_naming(ids: list[str]) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(i in args for i in ids):
                found.append(f"{entry.name}: {args[:120]}")
    return found
