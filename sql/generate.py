#!/usr/bin/env python3
"""Builds sql/install.sql and sql/uninstall.sql from their sources; `--check` fails if the
committed files differ from what the sources give now.

Sources: sql/src/*.sql (preamble, guard, locks, bootstrap; event_triggers and patch last),
sql/src/functions/*.sql (one function each), migrations/NNNN_*.sql (each wrapped so that it runs
once), the Python under plpython/, which is pasted where a `#@embed PATH` line stands, and the
expressions of sql/src/expressions/, written in where a source says @name(argument)@.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "sql" / "src"
MIGRATIONS = ROOT / "migrations"

MIN_SERVER_VERSION_NUM = 100000
# Where `make install` puts the scripts, so that messages can name them by an absolute path.
SHARE_DIR = re.search(r'^SHARE_DIR = "([^"]+)"$', (ROOT / "plpython" / "slony_nodelock" / "plpy_glue.py").read_text(),
                      re.M).group(1)
CHANGELOG = ROOT / "CHANGELOG.md"
RELEASE_HEADING = re.compile(r"^## (\d+\.\d+\.\d+)\b", re.M)
MIGRATIONS_LINE = re.compile(r"^Migrations: (.*)$", re.M)
PY_TAG = "slony_nodelock_py"
MIGRATION_TAG = "slony_nodelock_migration"
EMBED = re.compile(r"^#@embed (\S+)$", re.M)
# @name(argument)@: the expression sql/src/expressions/name.sql with @ARG@ set to the argument.
EXPRESSION = re.compile(r"@([a-z_]+)\(([^()@]*)\)@")
# Lines of a plpython/ module that only make sense when it is imported as a package.
DROP_WHEN_EMBEDDED = re.compile(r"^.*# embed: drop\n", re.M)
CALLED_BY_SQL_FUNCTIONS = ("logic_source.sql", "converts_to_utf8.sql", "cluster_candidates.sql", "patched_functions.sql")
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def version() -> str:
    init = (ROOT / "plpython" / "slony_nodelock" / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', init).group(1)


def migration_releases() -> dict[str, str]:
    """{migration name: the release that first applies it}, from CHANGELOG.md's `Migrations:` line
    of each release section, so that a refusal can name the release."""
    text = CHANGELOG.read_text()
    headings = list(RELEASE_HEADING.finditer(text))
    releases = {}
    for i, heading in enumerate(headings):
        section = text[heading.end():headings[i + 1].start() if i + 1 < len(headings) else len(text)]
        lines = MIGRATIONS_LINE.findall(section)
        if len(lines) != 1:
            raise SystemExit(f"generate: CHANGELOG.md release {heading.group(1)} needs exactly one 'Migrations:' line")
        for name in (n.strip() for n in lines[0].split(",")):
            if name and name != "none":
                releases[name] = heading.group(1)
    return releases


def dollar_quote(text: str, tag: str) -> str:
    if f"${tag}$" in text:
        raise SystemExit(f"generate: the dollar-quote tag ${tag}$ occurs in the text it would quote")
    return f"${tag}${text}${tag}$"


def embedded(match: re.Match) -> str:
    source = (ROOT / match.group(1)).read_text()
    source = DROP_WHEN_EMBEDDED.sub("", source)
    # The Python lands inside $PY_TAG$ quotes, themselves inside a function body's $fn$ quotes.
    for tag in (f"${PY_TAG}$", "$fn$"):
        if tag in source:
            raise SystemExit(f"generate: {match.group(1)} contains the dollar-quote tag {tag}")
    return f"# ---- {match.group(1)} ----\n{source.rstrip()}\n"


def migrations() -> list[tuple[int, str, str]]:
    steps = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        m = MIGRATION_NAME.match(path.name)
        if not m:
            raise SystemExit(f"generate: {path.name} is not named NNNN_lower_case_words.sql")
        steps.append((int(m.group(1)), path.stem, path.read_text()))
    numbers = [n for n, _, _ in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise SystemExit(f"generate: migrations must be numbered 1..N without gaps, found {numbers}")
    return steps


def migration_calls(upto: int | None = None) -> str:
    calls = ["-- Migrations: each runs once per database; the registry remembers it and its hash.",
             "-- (\\gset only keeps psql from printing the empty result.)"]
    releases = migration_releases()
    for number, name, text in migrations()[:upto]:
        if name not in releases:
            raise SystemExit(f"generate: migration {name} is in no release's 'Migrations:' line of CHANGELOG.md")
        sha = hashlib.sha256(text.encode()).hexdigest()
        calls.append(
            f"SELECT pg_temp.slony_nodelock_migrate({number}, '{name}', '{releases[name]}', '{sha}',\n"
            f"{dollar_quote(text, MIGRATION_TAG)}) AS migrated \\gset"
        )
    return "\n".join(calls) + "\n"


def expression(match: re.Match) -> str:
    source = SRC / "expressions" / f"{match.group(1)}.sql"
    if not source.exists():
        raise SystemExit(f"generate: no expression {source.relative_to(ROOT)} for {match.group(0)}")
    return source.read_text().strip().replace("@ARG@", match.group(2))


def substitute(text: str, latest: int | None = None) -> str:
    # Expressions first, so that nothing in the pasted Python can be taken for one.
    text = EMBED.sub(embedded, EXPRESSION.sub(expression, text))
    return (
        text.replace("@VERSION@", version())
        .replace("@MIN_SERVER_VERSION_NUM@", str(MIN_SERVER_VERSION_NUM))
        .replace("@MIN_SERVER_MAJOR@", str(MIN_SERVER_VERSION_NUM // 10000))
        .replace("@LATEST_MIGRATION@", str(latest or len(migrations())))
        .replace("@PY@", PY_TAG)
        .replace("@SHARE_DIR@", SHARE_DIR)
    )


def header(kind: str) -> str:
    return (
        f"-- slony-nodelock {version()}: {kind} script.\n"
        "-- GENERATED by sql/generate.py from sql/src/, migrations/ and plpython/; do not edit.\n"
        "-- Regenerate with `make sql`.\n\n"
    )


def function_sources() -> list[Path]:
    """sql/src/functions/*.sql, in name order except those that SQL-language functions call,
    which go first: PostgreSQL checks a SQL function's body when it is created."""
    called = [SRC / "functions" / name for name in CALLED_BY_SQL_FUNCTIONS]
    return called + [p for p in sorted((SRC / "functions").glob("*.sql")) if p not in called]


def build_install() -> str:
    parts = [(SRC / "preamble.sql").read_text(), (SRC / "guard.sql").read_text(), locks("install"),
             (SRC / "bootstrap.sql").read_text(), migration_calls()]
    parts += [p.read_text() for p in function_sources()]
    parts += [(SRC / "event_triggers.sql").read_text(), (SRC / "patch.sql").read_text()]
    return header("install") + "\n".join(substitute(p) for p in parts)


def build_migrations_only(upto: int) -> str:
    """The schema as migrations 1..upto leave it, with no functions: what an older release's
    install left behind, for testing the migration chain."""
    parts = [(SRC / "preamble.sql").read_text(), (SRC / "guard.sql").read_text(), locks("install"),
             (SRC / "bootstrap.sql").read_text(), migration_calls(upto), "COMMIT;\n"]
    return header(f"migrations 1..{upto} only (tests)") + "\n".join(substitute(p, upto) for p in parts)


def locks(script: str) -> str:
    """sql/src/locks.sql, the lock block that opens install.sql and uninstall.sql."""
    return (SRC / "locks.sql").read_text().replace("@LOCKS_FOR_UNINSTALL@", str(script == "uninstall").lower())


def build_uninstall() -> str:
    text = (SRC / "uninstall.sql").read_text()
    if text.count("-- @LOCKS@\n") != 1:
        raise SystemExit("generate: sql/src/uninstall.sql needs one '-- @LOCKS@' line")
    return header("uninstall") + substitute(text.replace("-- @LOCKS@\n", locks("uninstall")))


def build() -> dict[str, str]:
    return {"install.sql": build_install(), "uninstall.sql": build_uninstall()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed files are stale")
    args = parser.parse_args()
    stale = []
    for name, text in build().items():
        path = ROOT / "sql" / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"sql/{', sql/'.join(stale)} out of date with the sources: run `make sql` and commit",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
