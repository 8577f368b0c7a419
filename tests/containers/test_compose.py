"""docker-compose.yml for real: `up` gives a patched, replicating pair of a PostgreSQL 15 origin
and a PostgreSQL 17 subscriber, and a power cut of the origin's container leaves slon coming back.

testcontainers drives Compose v2's command line; Debian packages Compose v1 (docker-compose), so a
shim (tests/bin/docker-compose-as-plugin) stands in for `docker compose`, and puts a time limit on it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from slonybed.bed import REPO
from slonybed.engine import compose_project
from slonybed.images import base_tag
from slonybed.postgres import free_port

UP_TIMEOUT = 600


def conninfo(port: int) -> str:
    return make_conninfo(host="127.0.0.1", port=port, dbname="app", user="postgres")


def query(port: int, sql: str, params: tuple | None = None) -> list[tuple]:
    with psycopg.connect(conninfo(port), autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def wait_for(what: str, check, timeout: float = UP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except psycopg.Error:
            pass
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(1)


def replicates(p15: int, p17: int) -> None:
    note = f"probe-{uuid.uuid4()}"
    query(p15, "insert into public.accounts (note) values (%s)", (note,))
    wait_for(f"{note} on node 2", lambda: query(p17, "select 1 from public.accounts where note = %s", (note,)), 180)


def compose_problem() -> str | None:
    """Why no Compose can run here, or None: the shim runs Docker's plugin or Debian's v1."""
    if shutil.which("docker-compose"):
        return None
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 timeout=30).returncode == 0:
        return None
    return "no Compose: neither `docker compose` nor docker-compose (as root: apt-get install docker-compose)"


def test_compose_up_gives_a_patched_replicating_pair_that_comes_back_after_a_power_cut(engine, images, monkeypatch):
    from testcontainers.compose import DockerCompose

    client, run_id = engine
    if (problem := compose_problem()) is not None:
        pytest.skip(problem)
    images(15), images(17)  # the local base images the build below starts from
    p15, p17 = free_port(), free_port()
    project = compose_project(run_id)
    for name, value in {"BASE_BOOKWORM": base_tag("bookworm"), "BASE_TRIXIE": base_tag("trixie"),
                        "PORT_15": str(p15), "PORT_17": str(p17), "COMPOSE_PROJECT_NAME": project}.items():
        monkeypatch.setenv(name, value)
    compose = DockerCompose(str(REPO), compose_file_name="docker-compose.yml", build=True, wait=False,
                            docker_command_path=str(REPO / "tests" / "bin" / "docker-compose-as-plugin"))
    try:
        compose.start()
        for port in (p15, p17):
            wait_for(f"the kit on port {port}", lambda port=port: query(
                port, "select patched, problems from slony_nodelock.verify()") == [(True, None)])
        assert query(p15, "select pg_catalog.current_setting('server_version_num')::int / 10000") == [(15,)]
        assert query(p17, "select pg_catalog.current_setting('server_version_num')::int / 10000") == [(17,)]
        replicates(p15, p17)

        # A power cut of the origin: testcontainers' compose has no kill, so docker-py's is used.
        [node15] = client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                              "com.docker.compose.service=node15"]})
        node15.kill()
        node15.wait(timeout=60)
        node15.start()
        wait_for("slon back on node 1", lambda: query(
            p15, "select 1 from _demo.sl_nodelock l join pg_catalog.pg_stat_activity a on a.pid = l.nl_backendpid"
                 " where l.nl_nodeid = 1 and l.nl_conncnt = 0 and a.application_name = 'slon.local_listen'"), 120)
        replicates(p15, p17)
    finally:
        compose.stop()
    assert client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}) == []
    assert client.volumes.list(filters={"label": f"com.docker.compose.project={project}"}) == []
