"""The kit removed the wrong way, in any order a tired operator might: DROP SCHEMA slony_nodelock
CASCADE, DROP EXTENSION plpython3u CASCADE, install again, uninstall. Whatever the sequence, a slon
killed before it (its lock row left behind, naming a PID no process holds) starts again after it,
and after an uninstall each cluster's functions are exactly what slonik's update functions loads.

One one-node cluster serves every sequence: between sequences it goes back to stock (the kit's
schema and copies dropped, update functions) and the kit is installed afresh."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from slonybed import SlonyBed
from slonybed.bed import REPO

DROP_SCHEMA = "drop schema slony_nodelock cascade"
DROP_PLPYTHON = "drop extension plpython3u cascade"
UPDATE_FUNCTIONS = "update functions (id = 1);"

# Every attribute of the cluster's two functions that uninstall must put back as Slony made them.
SLONY_FUNCTIONS = """
select p.proname, p.prosrc, l.lanname, pg_catalog.pg_get_userbyid(p.proowner), p.proconfig, p.provolatile,
       p.prosecdef, pg_catalog.obj_description(p.oid, 'pg_proc')
  from pg_catalog.pg_proc p join pg_catalog.pg_language l on l.oid = p.prolang
 where p.pronamespace = '"_bed"'::pg_catalog.regnamespace
   and p.proname in ('cleanupnodelock', 'terminatenodeconnections')
 order by 1
"""
# What the kit leaves in the database: after an uninstall, nothing.
KIT_OBJECTS = """
select 'schema' from pg_catalog.pg_namespace where nspname = 'slony_nodelock'
union all select 'function ' || proname from pg_catalog.pg_proc where proname like 'slony\\_nodelock\\_%'
union all select 'event trigger ' || evtname from pg_catalog.pg_event_trigger where evtname like 'slony\\_nodelock%'
union all select 'trigger ' || tgname from pg_catalog.pg_trigger where tgname like 'slony\\_nodelock%'
"""


@pytest.fixture(scope="module")
def one_node() -> Iterator[SlonyBed]:
    with SlonyBed(nodes=1) as bed:
        bed.cluster.build()
        bed.start_slon(1)
        bed.cluster.wait_slon_holds_lock(bed.slons[1])
        yield bed


def back_to_stock(bed: SlonyBed) -> list[tuple]:
    """The node as slonik left it, with no trace of the kit; returns its functions' state."""
    node = bed.node(1)
    node.query(DROP_SCHEMA.replace("schema", "schema if exists"))
    for (fn,) in node.query("select p.oid::pg_catalog.regprocedure::text from pg_catalog.pg_proc p"
                            " where p.proname like 'slony\\_nodelock\\_%'"):
        node.query(f"drop function {fn} cascade")
    bed.cluster.slonik(UPDATE_FUNCTIONS)
    assert node.query(KIT_OBJECTS) == []
    return node.query(SLONY_FUNCTIONS)


def slon_restarts(bed: SlonyBed) -> None:
    """slon killed as by a power cut starts again: its old row names a PID no process holds."""
    bed.slons[1].kill()
    bed.cluster.wait_lock_holder_gone(1)
    assert bed.cluster.own_lock_pid(1) is not None, "the killed slon's lock row should still be there"
    slon = bed.start_slon(1)
    bed.cluster.wait_slon_holds_lock(slon)
    assert slon.alive(), slon.log


SEQUENCES = [
    ("drop_schema",),
    ("drop_schema", "drop_plpython"),
    ("drop_schema", "install", "drop_plpython"),
    ("drop_schema", "uninstall"),
    ("drop_schema", "install", "uninstall"),
    ("drop_plpython", "drop_schema"),
    ("drop_plpython", "uninstall"),
    ("drop_plpython", "drop_schema", "uninstall"),
    ("drop_schema", "drop_plpython", "install", "uninstall"),
    ("drop_plpython", "install", "drop_schema", "drop_plpython", "uninstall"),
]


@pytest.mark.parametrize("steps", SEQUENCES, ids=["-".join(s) for s in SEQUENCES])
def test_any_way_of_removing_the_kit_leaves_slon_starting_and_slonys_functions_intact(one_node, steps):
    bed, node = one_node, one_node.node(1)
    stock = back_to_stock(bed)
    bed.install_fix(1)
    slon_restarts(bed)  # the kit's cleanup

    for step in steps:
        if step == "drop_schema":
            node.query(DROP_SCHEMA)
        elif step == "drop_plpython":
            node.query(DROP_PLPYTHON)
        elif step == "install":
            bed.install_fix(1)
        else:
            bed.uninstall_fix(1)
        slon_restarts(bed)

    if steps[-1] == "uninstall":
        assert node.query(KIT_OBJECTS) == []
        assert node.query(SLONY_FUNCTIONS) == stock
        bed.cluster.slonik(UPDATE_FUNCTIONS)
        assert node.query(SLONY_FUNCTIONS) == stock


RELEASE_0_4_0 = "e3206954c21e06ca4202382625bf203a650aa9dc"


def test_an_orphan_left_by_release_0_4_0_gets_slonys_functions_from_sloniks_own_file(one_node):
    # Release 0.4.0 kept no copy in the cluster's schema: DROP SCHEMA slony_nodelock CASCADE under
    # it left the kit's functions and no copy of Slony's anywhere in the database.
    result = subprocess.run(["git", "-c", f"safe.directory={REPO}", "-C", str(REPO), "show",
                             f"{RELEASE_0_4_0}:sql/install.sql"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.skip(f"release 0.4.0 (commit {RELEASE_0_4_0}) is not in this git history: {result.stderr.strip()}")
    bed, node = one_node, one_node.node(1)
    stock = back_to_stock(bed)
    old_install = node.home / "install-0.4.0.sql"
    old_install.write_text(result.stdout)
    assert node.psql_file(old_install).returncode == 0
    node.query(DROP_SCHEMA)
    slon_restarts(bed)

    output = bed.install_fix(1)

    version = node.query('select "_bed".slonyversion()')[0][0]
    for function in ("cleanupnodelock", "terminatenodeconnections"):
        assert (f"took Slony's own {function}() from Slony's /usr/share/slony1/slony1_funcs.{version}.sql, "
                "for uninstall to put back") in output, output
    slon_restarts(bed)
    bed.uninstall_fix(1)
    assert node.query(KIT_OBJECTS) == []
    assert node.query(SLONY_FUNCTIONS) == stock
    slon_restarts(bed)
