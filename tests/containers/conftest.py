"""The container engine and node images, shared by every container test of the run."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from slonybed.engine import (EngineUnavailable, PodmanService, answering_engine_problem, docker_client,
                             remove_run_containers)
from slonybed.containerbed import matrix_rows
from slonybed.images import build_problem, node_image

def pytest_collection_modifyitems(items) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.containers)


@pytest.fixture(scope="session")
def engine() -> Iterator[tuple[object, str]]:
    """(docker client, run id): the engine that answers, else podman's service started here.
    Every container the run starts carries the run id, and is removed at the end."""
    service = None
    if answering_engine_problem() is not None:
        try:
            service = PodmanService.start()
        except EngineUnavailable as exc:
            pytest.skip(str(exc))
        # testcontainers finds the engine through DOCKER_HOST; Ryuk, its reaper, would pull an
        # image from a registry, so the run removes its containers itself.
        os.environ["DOCKER_HOST"] = service.base_url
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    client = docker_client(service.base_url if service else None, timeout=900)
    run_id = uuid.uuid4().hex
    try:
        yield client, run_id
    finally:
        left = remove_run_containers(client, run_id)
        client.close()
        if service is not None:
            service.stop()
        assert not left, "the container tests left behind:\n" + "\n".join(left)


@pytest.fixture(scope="session")
def images(engine):
    """node_image(major) for the run: built once, reused while the recipe is unchanged."""
    client, _ = engine
    built: dict[int, str] = {}
    # Only causes checked beforehand are skips; any other build failure is the recipe's, and fails.
    problem = build_problem()
    if problem is not None:
        pytest.skip(f"node images cannot be built here: {problem}")

    def image(major: int) -> str:
        if major not in built:
            built[major] = node_image(client, major)
        return built[major]

    return image


@pytest.fixture
def control_root() -> Iterator[Path]:
    """A directory for the test's nodes' /control directories, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="slony-nodelock-containers-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter) -> None:
    if matrix_rows:
        terminalreporter.write_line("container matrix: cluster | stock: restarts, slon refused | kit: restarts, slon refused")
        for row in matrix_rows:
            terminalreporter.write_line("  %-10s | %d, %d | %d, %d" % row)
