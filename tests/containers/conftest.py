"""The container engine and node images, shared by every container test of the run."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from slonybed.engine import (ENGINE_PROBLEM_VARIABLE, EngineUnavailable, PodmanService,
                             answering_engine_problem, docker_client, remove_run_leftovers, worker_run_id)
from slonybed.images import ImagesUnavailable, node_image

def pytest_collection_modifyitems(items) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.containers)


@pytest.fixture(scope="session")
def engine() -> Iterator[tuple[object, str]]:
    """(docker client, run id): the engine that answers (make test's wrapper,
    tests/bin/with-container-engine, starts podman's when none does), else, for a bare pytest run,
    podman's service started here. Every container this process starts carries the run id, and is
    removed at the end."""
    if os.environ.get(ENGINE_PROBLEM_VARIABLE):
        pytest.skip(f"no container engine: {os.environ[ENGINE_PROBLEM_VARIABLE]}")
    service = None
    if answering_engine_problem() is not None:
        try:
            service = PodmanService.start()
        except EngineUnavailable as exc:
            pytest.skip(str(exc))
        os.environ["DOCKER_HOST"] = service.base_url
    # Ryuk, testcontainers' reaper, would pull an image from a registry; the run removes its
    # containers itself.
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    client = docker_client(service.base_url if service else None, timeout=900)
    run_id = worker_run_id()
    try:
        yield client, run_id
    finally:
        left = remove_run_leftovers(client, run_id)
        client.close()
        if service is not None:
            left += [f"engine process {p}" for p in service.stop()]
        assert not left, "the container tests left behind:\n" + "\n".join(left)


@pytest.fixture(scope="session")
def images(engine):
    """node_image(major) for the run: built once, reused while the recipe is unchanged. Only the
    causes images.build_problem() checks (not root, no debootstrap, Debian's archive out of reach)
    make a test skip, and only when an image is missing; any other build failure is the recipe's,
    and fails."""
    client, _ = engine
    built: dict[int, str] = {}

    def image(major: int) -> str:
        if major not in built:
            try:
                built[major] = node_image(client, major)
            except ImagesUnavailable as exc:
                pytest.skip(str(exc))
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
