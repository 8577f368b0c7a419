"""A release says one version everywhere: the package, the generated scripts, CHANGELOG.md and its
git tag; every migration belongs to one release; the licence is there. No database."""

from __future__ import annotations

import ast
import datetime
import re
import shutil
import subprocess
from collections import Counter
from typing import NamedTuple

import pytest

from slony_nodelock import __version__
from slonybed.bed import REPO

SECTION = re.compile(r"^## (\d+\.\d+\.\d+) \((.+)\)$", re.MULTILINE)
MIGRATIONS_LINE = re.compile(r"^Migrations: (.*)$", re.MULTILINE)


class Release(NamedTuple):
    version: str
    date: str
    migrations: list[str]


def changelog() -> list[Release]:
    """CHANGELOG.md's sections, newest first as written; each must have one Migrations: line."""
    parts = SECTION.split((REPO / "CHANGELOG.md").read_text())[1:]
    releases = []
    for version, date, body in zip(parts[0::3], parts[1::3], parts[2::3]):
        lines = MIGRATIONS_LINE.findall(body)
        assert len(lines) == 1, f"section {version} has {len(lines)} 'Migrations: ' lines, not one"
        names = [] if lines[0].strip() == "none" else [n.strip() for n in lines[0].split(",")]
        releases.append(Release(version, date, names))
    assert releases, "CHANGELOG.md has no '## X.Y.Z (date)' section"
    return releases


def key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def version_in(source: str) -> str:
    """The literal assigned to __version__ in a module's source."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("no __version__ assignment")


def test_generated_scripts_install_the_package_version():
    """`select slony_nodelock.version()` is what a DBA reads to know the installed release, and
    uninstall.sql's header what they read to know which release removes it."""
    install = (REPO / "sql" / "install.sql").read_text()
    body = re.search(r"FUNCTION slony_nodelock\.version\(\)[^;]*?AS \$fn\$ SELECT '([^']*)'::text \$fn\$;", install)
    assert body, "sql/install.sql has no CREATE FUNCTION slony_nodelock.version() returning a literal"
    assert body.group(1) == __version__
    header = (REPO / "sql" / "uninstall.sql").read_text().splitlines()[0]
    assert header == f"-- slony-nodelock {__version__}: uninstall script."


def test_changelog_sections_are_newest_first_and_dated():
    """A program reads the newest release from the top: versions must go down, each dated (only
    the top one may still be unreleased)."""
    releases = changelog()
    versions = [key(r.version) for r in releases]
    assert versions == sorted(set(versions), reverse=True), [r.version for r in releases]
    for release in releases[1:]:
        datetime.date.fromisoformat(release.date)
    if releases[0].date != "unreleased":
        datetime.date.fromisoformat(releases[0].date)


def test_newest_changelog_section_is_the_package_version():
    """The top section describes the package as it is. Between a release and the version bump of
    the next one, the top section may be the coming release, written down as unreleased."""
    releases = changelog()
    allowed = [releases[0].version]
    if releases[0].date == "unreleased" and len(releases) > 1:
        allowed.append(releases[1].version)
    assert __version__ in allowed, f"package {__version__}, CHANGELOG.md's newest: {allowed}"


def test_every_migration_is_in_exactly_one_release():
    """An operator reads which release first changes their tables; a migration in no section, or
    in two, or a name that is no file, would mislead them."""
    files = {path.stem for path in (REPO / "migrations").glob("*.sql")}
    listed = Counter(name for release in changelog() for name in release.migrations)
    assert {name: listed[name] for name in sorted(files) if listed[name] != 1} == {}
    assert sorted(set(listed) - files) == []


def test_license_is_bsd_3_clause():
    """pyproject.toml says BSD-3-Clause; the text that grants it must ship beside it."""
    text = " ".join((REPO / "LICENSE").read_text().split())
    assert text.startswith("BSD 3-Clause License Copyright (c) 2026 the slony-nodelock authors")
    for clause in (
        "Redistributions of source code must retain the above copyright notice",
        "Redistributions in binary form must reproduce the above copyright notice",
        "Neither the name of the copyright holder nor the names of its contributors may be used "
        "to endorse or promote products derived from this software without specific prior written permission",
        'THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"',
    ):
        assert clause in text


def git(*args: str) -> subprocess.CompletedProcess:
    # safe.directory: the suite may run as the postgres user over a checkout root owns; we only read.
    return subprocess.run(["git", "-c", f"safe.directory={REPO}", "-C", str(REPO), *args],
                          capture_output=True, text=True, timeout=60)


def test_every_released_version_is_a_commit_on_main():
    """Tags do not travel with a clone, so a release is what main's history says it is: each
    version the CHANGELOG gives a date has a commit on main whose package says that version
    (`git log` finds it, and `git show COMMIT:sql/install.sql` gives that release's script)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed, so the history cannot be read")
    top = git("rev-parse", "--show-toplevel")
    if top.returncode != 0 or top.stdout.strip() != str(REPO):
        pytest.skip(f"{REPO} is not a git checkout of its own, so it has no history to read")
    path = "plpython/slony_nodelock/__init__.py"
    commits = git("log", "--format=%H", "HEAD", "--", path).stdout.split()
    versions_on_main = {version_in(git("show", f"{commit}:{path}").stdout) for commit in commits}
    released = [release.version for release in changelog() if release.date != "unreleased"]
    assert released, "CHANGELOG.md names no released version"
    missing = [version for version in released if version not in versions_on_main]
    assert not missing, f"released in CHANGELOG.md but no commit on main has that version: {missing}"


def test_make_install_puts_the_scripts_where_the_messages_say_they_are(tmp_path):
    """Every repair command the kit prints names /usr/share/slony-nodelock/install.sql: make
    install must put the very scripts there."""
    subprocess.run(["make", "-s", "install", f"DESTDIR={tmp_path}"], cwd=REPO, check=True, timeout=60,
                   capture_output=True)

    share = tmp_path / "usr" / "share" / "slony-nodelock"
    for name in ("install.sql", "uninstall.sql"):
        assert (share / name).read_bytes() == (REPO / "sql" / name).read_bytes()
    from slony_nodelock.plpy_glue import SHARE_DIR
    assert SHARE_DIR == str(share).removeprefix(str(tmp_path))
    assert "-f /usr/share/slony-nodelock/%s" in (REPO / "sql" / "install.sql").read_text()
