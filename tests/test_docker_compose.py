"""docker-compose.yml gives a node the kit installs into. Needs a Docker engine; skipped, with the
reason, where none answers (as on the project's CI machine)."""

from __future__ import annotations

import time

import pytest

from slonybed.bed import REPO
from slonybed.engine import answering_engine_problem


def test_install_sql_runs_in_the_compose_node():
    problem = answering_engine_problem()
    if problem:
        pytest.skip(f"no Docker engine: {problem}")
    from testcontainers.compose import DockerCompose

    with DockerCompose(str(REPO), compose_file_name="docker-compose.yml", build=True) as compose:
        deadline = time.monotonic() + 120
        while compose.exec_in_container(["pg_isready", "-U", "postgres"], service_name="db")[2] != 0:
            assert time.monotonic() < deadline, "the compose node did not accept connections"
            time.sleep(1)
        out, err, code = compose.exec_in_container(
            ["psql", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-f", "/kit/sql/install.sql"], service_name="db")
        assert code == 0, err
        assert "no Slony cluster in database postgres" in err
        out, err, code = compose.exec_in_container(
            ["psql", "-U", "postgres", "-Atc", "select slony_nodelock.version()"], service_name="db")
        assert code == 0 and out.strip(), err
