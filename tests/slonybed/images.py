"""Node images for the container tests, one per PostgreSQL major, built without a registry.

The recipe is tests/containers/node.Dockerfile. Where a registry answers it starts FROM Debian's
image; here its base is a minimal Debian root made by debootstrap from Debian's archive and
imported into the engine. An image is reused while its recipe is unchanged: the recipe's hash is
kept in a label, so a second run builds nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .bed import REPO
from .processes import exclusive_flock, note_session

RECIPE_DIR = REPO / "tests" / "containers"
RECIPE_FILES = ("node.Dockerfile", "node-entrypoint")
# The Debian release that packages Slony-I for each PostgreSQL major.
RELEASE_OF_MAJOR = {13: "bullseye", 15: "bookworm", 17: "trixie"}
MIRROR = "http://deb.debian.org/debian"
RECIPE_LABEL = "org.slony-nodelock.recipe"
BUILD_TIMEOUT = 900


def build_problem() -> str | None:
    """Why images cannot be built on this machine, or None: what a skip may say. Anything else
    that fails a build is a fault of the recipe."""
    import urllib.request

    if os.geteuid() != 0:
        return "debootstrap needs root"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (as root: apt-get install debootstrap)"
    try:
        urllib.request.urlopen(f"{MIRROR}/dists/bookworm/Release", timeout=10).close()
    except OSError as exc:
        return f"Debian's archive {MIRROR} cannot be reached: {exc}"
    return None


def node_tag(major: int) -> str:
    return f"localhost/slony-nodelock/node:pg{major}"


def base_tag(release: str) -> str:
    # localhost/: a name no registry is asked for, by podman or by Docker.
    return f"localhost/slony-nodelock/base:{release}"


def recipe_hash(major: int) -> str:
    digest = hashlib.sha256(f"{major} {RELEASE_OF_MAJOR[major]}\n".encode())
    for name in RECIPE_FILES:
        digest.update((RECIPE_DIR / name).read_bytes())
    return digest.hexdigest()


def _image(client, tag: str):
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def _building(name: str):
    """One builder of an image at a time on this machine (the run's xdist workers, another run):
    the others wait, then find it built. The lock is a file in /run/lock, which is emptied at boot."""
    lock_dir = Path("/run/lock") if os.access("/run/lock", os.W_OK) else Path(tempfile.gettempdir())
    return exclusive_flock(lock_dir / f"slony-nodelock-{name}.lock", 2 * BUILD_TIMEOUT,
                           f"the build of {name}", poll=1)


class ImagesUnavailable(RuntimeError):
    """An image must be built and cannot be here; the message says why, in one line."""


def _must_build(what: str) -> None:
    """Raise ImagesUnavailable when what must be built and this machine cannot build it."""
    problem = build_problem()
    if problem is not None:
        raise ImagesUnavailable(f"{what} is not built and cannot be here: {problem}")


def base_image(client, release: str) -> str:
    """A minimal Debian root of release, as an image; made once, by debootstrap."""
    tag = base_tag(release)
    with _building(f"base-{release}"):
        _make_base_image(client, release, tag)
    return tag


def _make_base_image(client, release: str, tag: str) -> None:
    if _image(client, tag) is None:
        _must_build(tag)
        with tempfile.TemporaryDirectory(prefix="slony-nodelock-base-", dir="/var/tmp") as work:
            root, tar = Path(work) / "root", Path(work) / "root.tar"
            code, output = _run_in_session(["debootstrap", "--variant=minbase", release, str(root), MIRROR])
            if code != 0:
                raise RuntimeError(f"debootstrap {release} failed ({code}):\n{output[-4000:]}")
            subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True, timeout=BUILD_TIMEOUT)
            # docker-py has no wrapper for an import from a file; the low-level API call is it.
            # podman's Docker API ignores the name asked for, so the image is named afterwards.
            with open(tar, "rb") as data:
                reply = client.api.import_image_from_data(data)
            image_id = _imported_id(reply)
            client.images.get(image_id).tag(tag.rsplit(":", 1)[0], release)
            if not any(t == tag for t in client.images.get(image_id).tags):
                raise RuntimeError(f"the imported image {image_id} did not take the name {tag}")
            _untag_all_but(client, image_id, tag)


def _run_in_session(argv: list[str]) -> tuple[int, str]:
    """Run argv in a session of its own and return (exit code, output); at BUILD_TIMEOUT the whole
    session is killed, not only argv's process: debootstrap's dpkg and wget would outlive it."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    note_session(process.pid)
    try:
        output, _ = process.communicate(timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
        return -signal.SIGKILL, f"killed after {BUILD_TIMEOUT}s:\n{output}"
    return process.returncode, output


def _imported_id(reply) -> str:
    """The image id in an import's reply: JSON lines, one of which carries it."""
    import json

    text = reply if isinstance(reply, str) else reply.decode() if isinstance(reply, bytes) else str(reply)
    for line in reversed(text.strip().splitlines()):
        message = json.loads(line)
        for key in ("id", "Id", "status"):
            value = str(message.get(key, ""))
            if value.startswith("sha256:") or len(value) == 64:
                return value
    raise RuntimeError(f"no image id in the engine's reply to an import: {text[:300]}")


def _untag_all_but(client, image_id: str, keep: str) -> None:
    for other in client.images.get(image_id).tags:
        if other != keep:
            client.images.remove(other)


def node_image(client, major: int) -> str:
    """The node image for major, built unless one with the same recipe is there already."""
    from testcontainers.core.image import DockerImage

    tag, wanted = node_tag(major), recipe_hash(major)
    with _building(f"node-pg{major}"):
        image = _image(client, tag)
        if image is not None and image.labels.get(RECIPE_LABEL) == wanted:
            return tag
        _must_build(tag)
        base = base_image(client, RELEASE_OF_MAJOR[major])
        DockerImage(path=str(RECIPE_DIR), tag=tag, clean_up=False, dockerfile_path="node.Dockerfile",
                    docker_client_kw={"timeout": BUILD_TIMEOUT}, rm=True, forcerm=True, network_mode="host",
                    buildargs={"BASE": base, "PG_MAJOR": str(major)}, labels={RECIPE_LABEL: wanted}).build()
        if image is not None:
            _remove_unless_used(client, image.id)
    return tag


def _remove_unless_used(client, image_id: str) -> None:
    """Remove an image a rebuild superseded, so that recipe changes do not pile up nameless
    images; one a container still uses stays."""
    import docker.errors

    try:
        client.images.remove(image_id)
    except docker.errors.APIError:
        pass
