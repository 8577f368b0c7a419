"""Names that are not valid UTF-8 (issue 18): a database whose name is not valid UTF-8, and a Slony
database that is SQL_ASCII or has such a name.

A role with only CREATEDB can create a SQL_ASCII database and, from it, a database whose name is
any bytes, such as b"b\\xfccher" ("bücher" in LATIN1). pg_database is shared by every database of
the server, so that name reaches every database, UTF8 ones too, unconverted. PL/Python turns text
into a Python str without checking it in a UTF8 database, and dies with signal 11 on such bytes:
the postmaster then ends every session of the server and runs crash recovery. In a SQL_ASCII
database it checks them, and fails the call instead. Stock Slony's cleanupNodelock() reads no
names (it asks kill()), so it crashes and fails nothing.

Every test here checks that the server did not crash: the postmaster keeps its PID through a
crash of one of its children (it reinitialises), so CrashWatch looks at the server log and at the
checkpointer, which crash recovery replaces. No test claims a PID: lock rows are pointed at the
backend of the odd database, which is what cleanupNodelock() sees after a reboot handed the PID on.

psycopg encodes every conninfo string it is given as UTF-8, and libpq's percent-escapes come back
through psycopg's decoding, so a connection to a database with such a name is made from a libpq
connection opened with the raw bytes (connect_raw), and psql and slon get them as raw argv bytes.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import pq, sql

from notices import PATCHED_BED, removal
from slonybed import SlonyBed
from slonybed.bed import INSTALL_SQL
from slonybed.pidreuse import SleepHolder
from slonybed.postgres import DATABASE, PostgresServer
from slonybed.processes import SessionProcess, as_server_user
from slonybed.slony import SLON_OPTIONS, TABLE_DDL, Slon
from test_install import STOCK_LIKE, add_stock_like_cluster

# "bücher" in LATIN1: not valid UTF-8 (0xfc starts no UTF-8 sequence).
ODD = b"b\xfccher"
# The SQL_ASCII database the odd names are created from.
ASCII_DB = b"ascii"
# The role that creates them: CREATEDB and nothing else.
MAKER = "maker"

STATUS = ("select cluster, node, conncnt, pid, recorded_backend_start, holder_backend_type, holder_datname,"
          " holder_application_name, holder_backend_start, os_process, verdict, reason"
          " from slony_nodelock.status(%s)")

# What the server log says when a backend crashes and the postmaster reinitialises.
CRASH_SIGNS = ("was terminated by signal", "terminating any other active server processes",
               "all server processes terminated; reinitializing")


@pytest.fixture
def lone_bed() -> Iterator[SlonyBed]:
    """One server, no Slony cluster built."""
    with SlonyBed(nodes=1) as b:
        yield b


# -- connecting with names that are bytes ---------------------------------------------------------

def raw_conninfo(server: PostgresServer, dbname: bytes, user: bytes = b"postgres", **extra) -> bytes:
    """server's libpq conninfo with dbname and user as raw bytes."""
    for value in (dbname, user):
        assert not any(c in value for c in b" '\\\t\n\r\0"), value  # none needs conninfo quoting
    base = server.conninfo(dbname="DBNAME-PLACEHOLDER", user="USER-PLACEHOLDER", **extra).encode()
    assert b"dbname=DBNAME-PLACEHOLDER" in base and b"user=USER-PLACEHOLDER" in base, base
    return base.replace(b"dbname=DBNAME-PLACEHOLDER", b"dbname=" + dbname).replace(
        b"user=USER-PLACEHOLDER", b"user=" + user)


def connect_raw(server: PostgresServer, dbname: bytes, user: bytes = b"postgres", **extra) -> psycopg.Connection:
    """An autocommit psycopg connection to a database (as a role) named by raw bytes: libpq opens it,
    psycopg wraps it, as psycopg.connect() itself does once libpq has connected."""
    pgconn = pq.PGconn.connect(raw_conninfo(server, dbname, user, **extra))
    if pgconn.status != pq.ConnStatus.OK:
        message = pgconn.error_message.decode("utf-8", "backslashreplace")
        pgconn.finish()
        raise AssertionError(f"cannot connect to {dbname!r} as {user!r}: {message}")
    conn = psycopg.Connection(pgconn)
    conn.autocommit = True
    return conn


def psql_raw(server: PostgresServer, dbname: bytes, *args: str) -> tuple[int, str]:
    """psql -X -v ON_ERROR_STOP=1 -d <raw conninfo> ARGS, as an operator runs it: (exit code,
    stdout and stderr, bytes that are not UTF-8 shown as \\xNN)."""
    result = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", raw_conninfo(server, dbname), *args],
                            capture_output=True, timeout=180, cwd="/")
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", "backslashreplace")


def database_names(server: PostgresServer) -> list[bytes]:
    """The names in pg_database, as the bytes stored."""
    return [bytes(n) for (n,) in server.query(
        "select pg_catalog.textsend(datname::pg_catalog.text) from pg_catalog.pg_database order by 1")]


def make_odd_database(server: PostgresServer) -> None:
    """As a role with only CREATEDB: a SQL_ASCII database, and from it the UTF8 database ODD."""
    server.query(sql.SQL("create role {} login createdb").format(sql.Identifier(MAKER)))
    with server.connect(user=MAKER, dbname="postgres") as maker:
        maker.execute(sql.SQL("create database {} encoding 'SQL_ASCII' template template0"
                              " lc_collate 'C' lc_ctype 'C'").format(sql.Identifier(ASCII_DB.decode())))
    create_database_from_ascii(server, ODD, "UTF8")


def create_database_from_ascii(server: PostgresServer, name: bytes, encoding: str) -> None:
    """As MAKER, from the SQL_ASCII database, where any bytes pass: create database "name"."""
    with connect_raw(server, ASCII_DB, MAKER.encode()) as maker:
        maker.execute(b'create database "' + name + b'" encoding \'' + encoding.encode()
                      + b"' template template0 lc_collate 'C' lc_ctype 'C'")


# -- holders and crash checks ---------------------------------------------------------------------

@dataclass
class RawHolder:
    """An idle psql connected to a database named by raw bytes: a client backend of that database
    on whatever PID it got, with a chosen application_name. The bed stops it at teardown."""

    server: PostgresServer
    process: SessionProcess
    pid: int

    @classmethod
    def open(cls, bed: SlonyBed, server: PostgresServer, dbname: bytes, application_name: str) -> "RawHolder":
        tag = f"slonybed.encodings-{uuid.uuid4()}"
        process = SessionProcess.start(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", raw_conninfo(server, dbname, application_name=tag)],
            cwd=server.home, log_path=server.home / f"{tag}.log", stdin=subprocess.PIPE)
        bed.holders.append(SleepHolder(process))
        pid = _wait_for_backend(server, process, tag)
        if application_name != tag:
            assert process.popen.stdin is not None
            process.popen.stdin.write(b"set application_name = " + sql.quote(application_name).encode() + b";\n")
            process.popen.stdin.flush()
            assert _wait_for_backend(server, process, application_name, pid) == pid
        return cls(server, process, pid)

    def database(self) -> bytes | None:
        """The name of the database this holder's backend is connected to now, or None once it
        is gone."""
        rows = self.server.query("select pg_catalog.textsend(datname::pg_catalog.text)"
                                 " from pg_catalog.pg_stat_activity where pid = %s", (self.pid,))
        return bytes(rows[0][0]) if rows and self.process.session_alive() else None


def _wait_for_backend(server: PostgresServer, process: SessionProcess, name: str, pid: int | None = None,
                      timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while True:
        rows = server.query("select pid from pg_catalog.pg_stat_activity where application_name = %s"
                            " and backend_type = 'client backend'" + (" and pid = %s" if pid else ""),
                            (name, pid) if pid else (name,))
        if len(rows) == 1:
            return rows[0][0]
        assert process.session_alive(), f"holder psql exited:\n{process.log_text()}"
        assert time.monotonic() < deadline, f"no backend named {name!r} after {timeout}s:\n{process.log_text()}"
        time.sleep(0.02)


class ServerCrashed(AssertionError):
    """A backend died of a signal and the postmaster reinitialised the server."""


class CrashWatch:
    """Whether the server crashed since the watch began: a backend's crash makes the postmaster
    log it and reinitialise, which replaces the checkpointer (the postmaster itself keeps its PID).

    As a context manager it checks on leaving, and when the block fails because the server
    crashed (a lost connection, a refused one), it fails as ServerCrashed, naming the crash from
    the log, instead of with the symptom. Each check first waits for the server to accept
    connections: a client can see its connection lost before the postmaster has logged why, and
    the bed's teardown then finds a server that stops at once."""

    def __init__(self, server: PostgresServer):
        self.server = server
        self.postmaster = self._postmaster()
        self.checkpointer = server.pid_of("checkpointer")
        self.log_from = server.logfile.stat().st_size

    def __enter__(self) -> "CrashWatch":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.assert_not_crashed()
        elif not isinstance(exc, ServerCrashed):
            self._settle()
            if self._crash_lines():
                raise ServerCrashed(self._report()) from exc
        return False

    def _postmaster(self) -> int:
        return int((self.server.datadir / "postmaster.pid").read_text().split()[0])

    def log(self) -> str:
        return self.server.logfile.read_bytes()[self.log_from:].decode("utf-8", "backslashreplace")

    def _crash_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if any(sign in line for sign in CRASH_SIGNS)]

    def _settle(self, timeout: float = 30) -> None:
        """Wait until the server accepts connections: at once, unless it is in crash recovery."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.server.query("select 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.1)

    def _report(self) -> str:
        return "the server crashed:\n" + "\n".join(
            line for line in self.log().splitlines() if " LOG: " in line or "DETAIL:" in line)

    def assert_not_crashed(self) -> None:
        self._settle()
        if self._crash_lines():
            raise ServerCrashed(self._report())
        assert self._postmaster() == self.postmaster, "the postmaster was restarted"
        assert self.server.pid_of("checkpointer") == self.checkpointer, "the server was reinitialised:\n" + self.log()


def notices_and_result(conn: psycopg.Connection, statement, params: tuple = ()) -> tuple[list[str], list[tuple]]:
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(d.message_primary))
    cursor = conn.execute(statement, params)
    return seen, (cursor.fetchall() if cursor.description else [])


UNNAMED = "(its name is not valid text in this database)"


def odd_oid(server: PostgresServer) -> int:
    """The OID of the database named ODD, by which the kit names it."""
    [(oid,)] = server.query("select oid from pg_catalog.pg_database where pg_catalog.octet_length(datname::text) = %s"
                            " and datname::text like 'b%%cher'", (len(ODD),))
    return oid


def readable(text: str) -> bool:
    """Printable ASCII only: what the kit makes of names it cannot trust."""
    return all(" " <= ch <= "~" for ch in text)


# -- 1. the odd database --------------------------------------------------------------------------

def test_a_createdb_role_makes_a_database_whose_name_is_not_utf8(lone_bed):
    server = lone_bed.node(1)

    make_odd_database(server)

    assert server.query("select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
                        " from pg_catalog.pg_roles where rolname = %s",
                        (MAKER,)) == [(False, False, True, False, False)]
    assert ODD in database_names(server)
    with pytest.raises(UnicodeDecodeError):
        ODD.decode("utf-8")
    with connect_raw(server, ODD) as odd:
        assert odd.execute("select pg_catalog.textsend(pg_catalog.current_database()::pg_catalog.text),"
                           " pg_catalog.getdatabaseencoding()").fetchall() == [(ODD, "UTF8")]


# -- 2. slon's start and cleanupEvent() on a real bed ---------------------------------------------

def test_slon_starts_when_its_lock_names_a_backend_of_a_database_whose_name_is_not_utf8(fixed_bed):
    bed, node = fixed_bed, fixed_bed.node(1)
    make_odd_database(node)
    # Even slon's own name makes no backend of another database the holder.
    holder = RawHolder.open(bed, node, ODD, "slon.local_listen")
    bed.slons[1].stop()
    bed.cluster.wait_lock_holder_gone(1)
    bed.cluster.point_lock_at(1, holder.pid)

    with CrashWatch(node):
        slon = bed.start_slon(1)
        own = bed.cluster.wait_slon_holds_lock(slon)

    assert own != holder.pid
    assert holder.database() == ODD, "the odd database's client lost its connection"
    removed = removal("_bed", 1, 0, holder.pid)
    [line] = [line for line in slon.wait_log(removed).splitlines() if removed in line]
    assert f"pid {holder.pid} is a client backend of database with OID {odd_oid(node)} {UNNAMED}" in line, line
    bed.cluster.assert_replicates(1, 2)


def test_cleanup_event_removes_a_lock_naming_a_backend_of_a_database_whose_name_is_not_utf8(fixed_bed):
    bed, node = fixed_bed, fixed_bed.node(1)
    make_odd_database(node)
    holder = RawHolder.open(bed, node, ODD, "slon.node_2_listen")
    # A lock of a node that is gone, whose PID went to the odd database's client.
    node.query("insert into _bed.sl_nodelock values (9, 0, %s)", (holder.pid,))

    with CrashWatch(node), node.connect() as caller:
        notices, _ = notices_and_result(caller, "select _bed.cleanupEvent('10 minutes'::interval)")

    prefix = removal("_bed", 9, 0, holder.pid)
    [reason] = [n[len(prefix):] for n in notices if n.startswith(prefix)] or [notices]
    assert reason.startswith(f"pid {holder.pid} is a client backend of database with OID {odd_oid(node)} {UNNAMED}"), reason
    assert (9, 0, holder.pid) not in bed.cluster.lock_rows(1)
    assert holder.database() == ODD
    assert bed.slons[1].alive() and bed.slons[2].alive()
    bed.cluster.assert_replicates(1, 2)


# -- 3. install's adoption on a real bed ----------------------------------------------------------

def test_install_and_reinstall_judge_a_lock_naming_a_backend_of_a_database_whose_name_is_not_utf8(bed):
    bed.build_replicating()
    node = bed.node(1)
    make_odd_database(node)
    holder = RawHolder.open(bed, node, ODD, "slon.local_listen")
    # Taken before the install, by no backend install could adopt: it serves another database.
    node.query("insert into _bed.sl_nodelock values (9, 0, %s)", (holder.pid,))

    with CrashWatch(node) as watch:
        first = node.psql_file(INSTALL_SQL)
        watch.assert_not_crashed()
        again = node.psql_file(INSTALL_SQL)

    assert first.returncode == 0, first.stdout + first.stderr
    assert PATCHED_BED in first.stdout + first.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    # Not adopted, and install deletes nothing: the next cleanup removes it.
    assert node.query("select count(*) from slony_nodelock.lock_identity"
                      " where cluster_schema = '_bed' and nl_nodeid = 9") == [(0,)]
    assert (9, 0, holder.pid) in bed.cluster.lock_rows(1)
    assert holder.database() == ODD
    assert bed.slons[1].alive() and bed.slons[2].alive()
    bed.cluster.assert_replicates(1, 2)


# -- 4. status(), and a failover ------------------------------------------------------------------

def test_status_names_a_holders_database_that_is_not_utf8_escaped(lone_bed):
    server = lone_bed.node(1)
    make_odd_database(server)
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    holder = RawHolder.open(lone_bed, server, ODD, "slon.local_listen")
    server.query("insert into _c1.sl_nodelock values (1, 0, %s)", (holder.pid,))

    with CrashWatch(server):
        rows = server.query(STATUS, ("_c1",))

    [(cluster, node, conncnt, pid, recorded, holder_type, datname, name, _, os_process, verdict, reason)] = rows
    assert (cluster, node, conncnt, pid, recorded, holder_type, name, os_process, verdict) == (
        "_c1", 1, 0, holder.pid, None, "client backend", "slon.local_listen", None, "stale")
    # A name that is not valid text here is not read into Python at all: the database is named by
    # its OID, by which the operator finds it (select datname from pg_database where oid = ...).
    assert datname is None
    assert readable(reason) and reason.startswith(
        f"pid {holder.pid} is a client backend of database with OID {odd_oid(server)} {UNNAMED}, not of this one"), reason
    # A dry run: the row is still there, and the holder still connected.
    assert server.query("select nl_backendpid from _c1.sl_nodelock") == [(holder.pid,)]
    assert holder.database() == ODD


def test_a_failover_on_a_lock_naming_a_backend_of_a_database_whose_name_is_not_utf8(lone_bed):
    # terminateNodeConnections() judges the failed node's rows the same way before it signals.
    server = lone_bed.node(1)
    make_odd_database(server)
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    holder = RawHolder.open(lone_bed, server, ODD, "slon.local_listen")
    server.query("insert into _c1.sl_nodelock values (2, 0, %s)", (holder.pid,))

    with CrashWatch(server), server.connect() as caller:
        notices, _ = notices_and_result(caller, "select _c1.terminatenodeconnections(2)")

    assert len(notices) == 1 and notices[0].startswith("slony-nodelock: failover: did not signal the holder"), notices
    assert f"pid {holder.pid} is a client backend of database with OID {odd_oid(server)} {UNNAMED}" in notices[0], notices
    assert server.query("select count(*) from _c1.sl_nodelock") == [(0,)]
    assert holder.database() == ODD


# -- 5. a Slony database that is SQL_ASCII, or whose own name is not UTF-8 -------------------------

CLUSTER = "enc"
SCHEMA = sql.Identifier("_" + CLUSTER)


def slonik_raw(server: PostgresServer, dbname: bytes, body: str) -> str:
    """slonik with node 1 in the database named by raw bytes (slonik takes them in its script)."""
    script = (f"cluster name = {CLUSTER};\n".encode() + b"node 1 admin conninfo = '"
              + raw_conninfo(server, dbname) + b"';\n" + body.encode() + b"\n")
    result = subprocess.run(["slonik"], input=script, capture_output=True, cwd=server.home, timeout=180,
                            **as_server_user())
    output = (result.stdout + result.stderr).decode("utf-8", "backslashreplace")
    assert result.returncode == 0, f"slonik failed ({result.returncode}):\n{output}"
    return output


def start_slon_raw(bed: SlonyBed, server: PostgresServer, dbname: bytes) -> Slon:
    """slon for node 1 of CLUSTER in the database named by raw bytes; the bed stops it."""
    assert bed.cluster is not None
    log = server.home / f"slon-{dbname.hex()}.log"
    slon = Slon(1, SessionProcess.start(["slon", *SLON_OPTIONS, CLUSTER, raw_conninfo(server, dbname)],
                                         cwd=server.home, log_path=log))
    bed.cluster.slons.append(slon)
    return slon


def lock_rows(conn: psycopg.Connection) -> list[tuple[int, int, int]]:
    return conn.execute(sql.SQL("select nl_nodeid, nl_conncnt, nl_backendpid from {}.sl_nodelock order by 1, 2")
                        .format(SCHEMA)).fetchall()


def wait_slon_holds_lock(server: PostgresServer, conn: psycopg.Connection, slon: Slon, timeout: float = 30) -> int:
    """The PID of node 1's own lock once slon's local_listen backend holds it."""
    deadline = time.monotonic() + timeout
    while True:
        assert slon.alive(), f"slon exited:\n{slon.log}"
        own = [pid for node, conncnt, pid in lock_rows(conn) if (node, conncnt) == (1, 0)]
        if own and server.query("select 1 from pg_catalog.pg_stat_activity where pid = %s and"
                                " application_name = 'slon.local_listen' and backend_start >= %s",
                                (own[0], slon.started_at)):
            return own[0]
        assert time.monotonic() < deadline, f"slon took no lock in {timeout}s:\n{slon.log}"
        time.sleep(0.1)


@pytest.mark.parametrize("dbname, encoding", [
    pytest.param(b"slony_ascii", "SQL_ASCII", id="sql_ascii"),
    pytest.param(b"m\xfcnchen", "UTF8", id="utf8-name-not-utf8"),
    pytest.param(b"k\xf6ln", "SQL_ASCII", id="sql_ascii-name-not-utf8"),
])
def test_slony_in_a_database_that_is_sql_ascii_or_named_not_utf8(lone_bed, dbname, encoding):
    bed, server = lone_bed, lone_bed.node(1)
    make_odd_database(server)
    create_database_from_ascii(server, dbname, encoding)
    # UTF8, so that psycopg gives str from a SQL_ASCII database too (it gives bytes for SQL_ASCII),
    # and fails to decode any byte of a name the kit sends back unescaped.
    with connect_raw(server, dbname, client_encoding="UTF8") as db:
        db.execute(TABLE_DDL)
    slonik_raw(server, dbname, "init cluster (id = 1, comment = 'node 1');")
    # A reboot handed node 1's lock PID to a client of the odd database.
    stale = RawHolder.open(bed, server, ODD, "slon.local_listen")

    with CrashWatch(server) as watch, connect_raw(server, dbname, client_encoding="UTF8") as db:
        code, output = psql_raw(server, dbname, "-f", str(INSTALL_SQL))
        assert code == 0, output
        assert f'patched cluster "{CLUSTER}" (schema "_{CLUSTER}")' in output, output
        db.execute(sql.SQL("insert into {}.sl_nodelock values (1, 0, %s)").format(SCHEMA), (stale.pid,))

        # slon's start-up cleanup removes it.
        slon = start_slon_raw(bed, server, dbname)
        own = wait_slon_holds_lock(server, db, slon)
        slon.wait_log(removal("_" + CLUSTER, 1, 0, stale.pid))
        watch.assert_not_crashed()

        # A direct call, with slon's own (live, recorded) lock and another stale one beside it.
        db.execute(sql.SQL("insert into {}.sl_nodelock values (9, 0, %s)").format(SCHEMA), (stale.pid,))
        notices, _ = notices_and_result(db, sql.SQL("select {}.cleanupnodelock()").format(SCHEMA))
        assert lock_rows(db) == [(1, 0, own)]
        assert [n for n in notices if n.startswith(removal("_" + CLUSTER, 9, 0, stale.pid))], notices
        watch.assert_not_crashed()

        # status() there, and its refusal of a cluster that is not there.
        db.execute(sql.SQL("insert into {}.sl_nodelock values (9, 0, %s)").format(SCHEMA), (stale.pid,))
        rows = db.execute("select node, pid, verdict from slony_nodelock.status(%s) order by 1",
                          (CLUSTER,)).fetchall()
        assert rows == [(1, own, "live"), (9, stale.pid, "stale")]
        with pytest.raises(psycopg.errors.UndefinedObject) as raised:
            db.execute("select * from slony_nodelock.status('nosuch')")
        message = raised.value.diag.message_primary
        assert message and message.startswith("slony-nodelock: no Slony cluster \"nosuch\" in database "), message

    assert slon.alive() and stale.database() == ODD


# -- beyond the list: other names from shared catalogs, and schema names -----------------

def test_a_role_whose_name_is_not_utf8_gets_the_refusal_not_a_crash(lone_bed):
    # Role names live in a shared catalog too; a role with CREATEROLE can make one from a
    # SQL_ASCII database. The refusal names the role: current_user crosses into Python.
    server = lone_bed.node(1)
    make_odd_database(server)
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    server.query("grant usage on schema _c1 to public")
    role = b"r\xfcdiger"
    with connect_raw(server, ASCII_DB) as ascii_db:
        ascii_db.execute(b'create role "' + role + b'" login')

    with CrashWatch(server), connect_raw(server, DATABASE.encode(), role) as caller:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised:
            caller.execute("select _c1.cleanupnodelock()")

    message = raised.value.diag.message_primary
    [(oid,)] = server.query("select oid from pg_catalog.pg_roles where rolname like 'r%diger'")
    assert message == (f'slony-nodelock: role "<the role with OID {oid}, whose name is not valid text here>" may not '
                       'clean up the locks of cluster "c1" (schema "_c1"); nothing changed: run cleanupNodelock() as a '
                       "superuser, as slon does"), message


def test_install_in_a_sql_ascii_database_with_a_cluster_like_schema_named_not_utf8(lone_bed):
    # In a SQL_ASCII database no name is checked, so a schema (here one shaped like a Slony
    # cluster's, which slonik never names so) can be any bytes; the cluster beside it must still
    # be patched and cleaned up, and nothing may crash.
    server = lone_bed.node(1)
    make_odd_database(server)
    with connect_raw(server, ASCII_DB) as db:
        db.execute(STOCK_LIKE.replace("{schema}", "_c1").encode())
        db.execute(STOCK_LIKE.replace("{schema}", '"_\xfcber"').encode("latin-1"))
    holder = RawHolder.open(lone_bed, server, ODD, "slon.local_listen")

    with CrashWatch(server) as watch, connect_raw(server, ASCII_DB, client_encoding="UTF8") as db:
        code, output = psql_raw(server, ASCII_DB, "-f", str(INSTALL_SQL))
        assert code == 0, output
        assert 'patched cluster "c1" (schema "_c1")' in output, output
        watch.assert_not_crashed()
        db.execute("insert into _c1.sl_nodelock values (1, 0, %s)", (holder.pid,))
        notices, _ = notices_and_result(db, "select _c1.cleanupnodelock()")
        assert [n for n in notices if n.startswith(removal("_c1", 1, 0, holder.pid))], notices
        assert db.execute("select count(*) from _c1.sl_nodelock").fetchall() == [(0,)]
        db.execute("select * from slony_nodelock.status()").fetchall()

    assert holder.database() == ODD


def test_a_failover_setting_whose_value_is_not_utf8_gets_the_warning_not_a_crash(lone_bed):
    # Settings made with ALTER ROLE/DATABASE ... SET live in a shared catalog too: set from a
    # SQL_ASCII database, the value is any bytes in every database. terminate() reads it as text.
    server = lone_bed.node(1)
    make_odd_database(server)
    add_stock_like_cluster(server, "_c1")
    assert server.psql_file(INSTALL_SQL).returncode == 0
    with connect_raw(server, ASCII_DB) as ascii_db:
        ascii_db.execute(b"alter role postgres in database " + DATABASE.encode()
                         + b" set slony_nodelock.failover_terminate = 'st\xfcck'")
    server.query("insert into _c1.sl_nodelock values (2, 0, 0)")

    warnings: list[str] = []
    with CrashWatch(server), server.connect() as caller:
        caller.add_notice_handler(lambda d: warnings.append(d.message_primary) if d.severity == "WARNING" else None)
        caller.execute("select _c1.terminatenodeconnections(2)")

    [warning] = warnings
    assert warning.startswith("slony-nodelock: slony_nodelock.failover_terminate is '(a value that is not valid text "
                              "here)', which means nothing") and readable(warning), warning
    assert server.query("select count(*) from _c1.sl_nodelock") == [(0,)]


# -- multibyte server encodings other than UTF8: EUC_JP, EUC_TW --------------------------------------
# (a hostile review, findings F3 and F4, and a crash of PL/Python on a failed call repeated in one
# session.) Other databases' names and setting values are bytes written by any database; in these
# encodings neither PostgreSQL's replace() (which walks by character) nor Python's codecs (whose
# tables differ from PostgreSQL's, or are missing) may touch them. MULE_INTERNAL is not here:
# PostgreSQL converts it to no UTF8, so PL/Python, and install.sql with it, cannot run there at all.

EUC_DB = b"slony_euc"
# "テスト～" as PostgreSQL stores it in EUC_JP: the last character, 0xA1C1, is U+FF5E (FULLWIDTH
# TILDE) to PostgreSQL but U+301C (WAVE DASH) to Python's euc_jp codec, which PostgreSQL cannot
# convert back.
WAVE_DASH_NAME = bytes.fromhex("a5c6a5b9a5c8a1c1")
# "é\q" in LATIN1; in EUC_JP, 0xE9 starts a two-byte character and 0x5C cannot end one.
BACKSLASH_NAME = b"\xe9\\q"


def make_cluster_database(server: PostgresServer, encoding: str) -> None:
    """EUC_DB in encoding, with a stock-like cluster (schema SCHEMA) and the kit installed."""
    server.query(sql.SQL("create database {} encoding {} lc_collate 'C' lc_ctype 'C' template template0")
                 .format(sql.Identifier(EUC_DB.decode()), sql.Literal(encoding)))
    with connect_raw(server, EUC_DB, client_encoding="UTF8") as db:
        db.execute(STOCK_LIKE.replace("{schema}", SCHEMA.as_string(None)))
    code, output = psql_raw(server, EUC_DB, "-f", str(INSTALL_SQL))
    assert code == 0 and f'patched cluster "{CLUSTER}" (schema "_{CLUSTER}")' in output, output


def quoted_conninfo(server: PostgresServer, dbname: bytes) -> bytes:
    """server's libpq conninfo with dbname as raw bytes in a quoted value: for a name holding a
    backslash or a quote, which raw_conninfo() does not take."""
    base = server.conninfo(dbname="DBNAME-PLACEHOLDER").encode()
    value = b"'" + dbname.replace(b"\\", b"\\\\").replace(b"'", b"\\'") + b"'"
    return base.replace(b"dbname=DBNAME-PLACEHOLDER", b"dbname=" + value)


def connect_quoted(server: PostgresServer, dbname: bytes) -> psycopg.Connection:
    pgconn = pq.PGconn.connect(quoted_conninfo(server, dbname))
    if pgconn.status != pq.ConnStatus.OK:
        message = pgconn.error_message.decode("utf-8", "backslashreplace")
        pgconn.finish()
        raise AssertionError(f"cannot connect to {dbname!r}: {message}")
    conn = psycopg.Connection(pgconn)
    conn.autocommit = True
    return conn


def database_oid(server: PostgresServer, name: bytes) -> int:
    [(oid,)] = server.query("select oid from pg_catalog.pg_database"
                            " where pg_catalog.textsend(datname::pg_catalog.text) = %s", (name,))
    return oid


def clean_twice_then_status_then_failover(server: PostgresServer, pid: int, datname: str | None,
                                          reason: str) -> None:
    """In one session of EUC_DB, with a lock row on pid before each call: cleanupNodelock() twice,
    status(), terminateNodeConnections(). No call fails, the row is judged stale for reason
    (status() shows datname as the holder's database), and the server does not crash: a failed
    call does not end the sequence, since a PL/Python call after a failed one in the same session
    is what crashed it."""
    locks = sql.SQL("{}.sl_nodelock").format(SCHEMA)
    failover = (f"slony-nodelock: failover: did not signal the holder of the lock row (node 1, conncnt 0, pid {pid}) "
                f'of cluster "{CLUSTER}" (schema "_{CLUSTER}"): {reason}')

    def cleanup(db: psycopg.Connection) -> None:
        notices, _ = notices_and_result(db, sql.SQL("select {}.cleanupnodelock()").format(SCHEMA))
        assert notices == [removal("_" + CLUSTER, 1, 0, pid, reason)], notices
        assert lock_rows(db) == []

    def status(db: psycopg.Connection) -> None:
        rows = db.execute("select node, pid, holder_datname, verdict, reason from slony_nodelock.status(%s)",
                          (CLUSTER,)).fetchall()
        assert rows == [(1, pid, datname, "stale", reason)], rows

    def terminate(db: psycopg.Connection) -> None:
        notices, _ = notices_and_result(db, sql.SQL("select {}.terminatenodeconnections(1)").format(SCHEMA))
        assert notices == [failover], notices
        assert lock_rows(db) == []

    failed: list[str] = []
    with CrashWatch(server), connect_raw(server, EUC_DB, client_encoding="UTF8") as db:
        for step in (cleanup, cleanup, status, terminate):
            db.execute(sql.SQL("delete from {}").format(locks))
            db.execute(sql.SQL("insert into {} values (1, 0, %s)").format(locks), (pid,))
            try:
                step(db)
            except psycopg.Error as error:
                failed.append(f"{step.__name__}: {type(error).__name__}: {str(error).splitlines()[0]}")
    assert failed == []
    assert server.query("select 1 from pg_catalog.pg_stat_activity where pid = %s", (pid,)) == [(1,)]


@pytest.mark.parametrize("other", ["wave-dash", "backslash"])
def test_an_euc_jp_cluster_judges_locks_naming_backends_of_databases_with_any_name(lone_bed, other):
    server = lone_bed.node(1)
    make_cluster_database(server, "EUC_JP")
    if other == "wave-dash":
        # An ordinary Japanese name, typed in a UTF-8 terminal in the EUC_JP database: valid EUC_JP.
        with connect_raw(server, EUC_DB, client_encoding="UTF8") as db:
            db.execute(sql.SQL("create database {} encoding 'EUC_JP' lc_collate 'C' lc_ctype 'C' template template0")
                       .format(sql.Identifier("テスト～")))
        name = WAVE_DASH_NAME
        datname = "\\u30c6\\u30b9\\u30c8\\uff5e"
        described = f'"{datname}"'
    else:
        # Made by a role with only CREATEDB, from its SQL_ASCII database.
        make_odd_database(server)
        create_database_from_ascii(server, BACKSLASH_NAME, "UTF8")
        name = BACKSLASH_NAME
        datname = None
        described = f"with OID {database_oid(server, name)} {UNNAMED}"
    assert name in database_names(server)

    with connect_quoted(server, name) as holder:
        pid = holder.info.backend_pid
        clean_twice_then_status_then_failover(
            server, pid, datname, f"pid {pid} is a client backend of database {described}, not of this one")


def test_an_euc_tw_cluster_judges_a_lock_naming_a_backend_of_cafe(lone_bed):
    # Python has no codec for EUC_TW. An ordinary UTF-8 name of another database ("café", made in
    # a UTF8 database) is no valid text here: the kit names that database by its OID.
    server = lone_bed.node(1)
    make_cluster_database(server, "EUC_TW")
    server.query('create database "café"')

    with server.connect(dbname="café") as holder:
        pid = holder.info.backend_pid
        clean_twice_then_status_then_failover(
            server, pid, None, f"pid {pid} is a client backend of database with OID "
            f"{database_oid(server, 'café'.encode())} {UNNAMED}, not of this one")


def test_a_failover_setting_that_is_not_valid_euc_jp_gets_the_warning(lone_bed):
    # 0xE9 0x5C: a backslash where EUC_JP wants the second byte of a character. Set from a
    # SQL_ASCII database, where any bytes pass, on the Slony database itself.
    server = lone_bed.node(1)
    make_cluster_database(server, "EUC_JP")
    make_odd_database(server)
    with connect_raw(server, ASCII_DB) as ascii_db:
        ascii_db.execute(b"alter database " + EUC_DB + b" set slony_nodelock.failover_terminate = '"
                         + BACKSLASH_NAME + b"'")

    warnings: list[str] = []
    with CrashWatch(server), connect_raw(server, EUC_DB, client_encoding="UTF8") as db:
        db.execute(sql.SQL("insert into {}.sl_nodelock values (2, 0, 0)").format(SCHEMA))
        db.add_notice_handler(lambda d: warnings.append(d.message_primary) if d.severity == "WARNING" else None)
        db.execute(sql.SQL("select {}.terminatenodeconnections(2)").format(SCHEMA))
        assert lock_rows(db) == []

    [warning] = warnings
    assert warning.startswith("slony-nodelock: slony_nodelock.failover_terminate is '(a value that is not valid text "
                              "here)', which means nothing") and readable(warning), warning


# -- cluster names that PL/Python's own quoting or PostgreSQL's conversions get wrong ---------------
# (a second hostile review.) plpy.quote_ident() took the name as Python's UTF-8 bytes and handed
# them back as if they were in the database's encoding: in LATIN1 "_café" became "_cafÃ©", a schema
# that is not there; in WIN1252 "_Ágora" is UTF-8 0xC3 0x81, and 0x81 is no WIN1252 character, so
# the conversion failed inside Python and the next PL/Python call of that backend crashed the server.
# Made by a superuser in a database of locale C, as slonik makes one where the site's locale takes
# the letter (Slony checks the name with [[:alpha:]]).

from notices import no_process  # noqa: E402
from test_install import gone_backend_pid  # noqa: E402

SINGLE_BYTE_DB = "slony_sb"


def psql_utf8(server: PostgresServer, dbname: str, path) -> tuple[int, str]:
    """psql -X -v ON_ERROR_STOP=1 -f path in dbname, client_encoding UTF8: (exit code, output)."""
    result = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d",
                             server.conninfo(dbname=dbname, client_encoding="UTF8"), "-f", str(path)],
                            capture_output=True, timeout=180, cwd="/")
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", "backslashreplace")


@pytest.mark.parametrize("encoding, name", [("WIN1252", "Ágora"), ("LATIN1", "café")], ids=["win1252", "latin1"])
def test_a_cluster_named_with_a_non_ascii_letter_in_a_single_byte_database(lone_bed, encoding, name):
    server, schema = lone_bed.node(1), "_" + name
    locks = sql.SQL("{}.sl_nodelock").format(sql.Identifier(schema))
    server.query(sql.SQL("create database {} encoding {} lc_collate 'C' lc_ctype 'C' template template0")
                 .format(sql.Identifier(SINGLE_BYTE_DB), sql.Literal(encoding)))
    server.query("create role watcher; grant pg_monitor to watcher")
    gone = gone_backend_pid(server)
    label = f'cluster "{name}" (schema "{schema}")'
    failover = (f"slony-nodelock: failover: did not signal the holder of the lock row (node 2, conncnt 0, pid {gone}) "
                f"of {label}: ")

    def connect(**extra) -> psycopg.Connection:
        return server.connect(dbname=SINGLE_BYTE_DB, client_encoding="UTF8", **extra)

    def rows(db: psycopg.Connection) -> list[tuple]:
        return db.execute(sql.SQL("select nl_nodeid, nl_conncnt, nl_backendpid from {} order by 1").format(locks)).fetchall()

    with CrashWatch(server), connect() as db, connect(application_name="slon.local_listen") as slon:
        db.execute(sql.SQL(STOCK_LIKE).format(schema=sql.Identifier(schema)))
        code, output = psql_utf8(server, SINGLE_BYTE_DB, INSTALL_SQL)
        assert code == 0 and f"slony-nodelock: patched {label}" in output, output
        # slon's local_listen takes node 1's lock, as slon does, and stays connected.
        slon.execute(sql.SQL("insert into {} values (1, 0, pg_catalog.pg_backend_pid())").format(locks))
        live = slon.info.backend_pid

        def cleanup() -> None:
            notices, _ = notices_and_result(db, sql.SQL("select {}.cleanupnodelock()").format(sql.Identifier(schema)))
            assert notices == [removal(schema, 2, 0, gone, no_process(gone))], notices
            assert rows(db) == [(1, 0, live)]

        def status() -> None:
            db.execute("set role watcher")
            try:
                got = db.execute("select cluster, node, pid, verdict from slony_nodelock.status()").fetchall()
                assert got == [(schema, 1, live, "live"), (schema, 2, gone, "stale")], got
            finally:
                db.execute("reset role")

        def terminate() -> None:
            notices, _ = notices_and_result(db, sql.SQL("select {}.terminatenodeconnections(2)")
                                            .format(sql.Identifier(schema)))
            assert len(notices) == 1 and notices[0].startswith(failover) and no_process(gone) in notices[0], notices
            assert rows(db) == [(1, 0, live)]

        # A failed call does not end the sequence: the call after it in the same session crashed.
        failed: list[str] = []
        for step in (cleanup, cleanup, status, status, terminate):
            try:
                db.execute(sql.SQL("delete from {} where nl_nodeid = 2").format(locks))
                db.execute(sql.SQL("insert into {} values (2, 0, %s)").format(locks), (gone,))
                step()
            except psycopg.Error as error:
                failed.append(f"{step.__name__}: {type(error).__name__}: {str(error).splitlines()[0]}")
        assert failed == []
        assert slon.execute("select pg_catalog.pg_backend_pid()").fetchone() == (live,)


# "_c≒" as an EUC_JP database stores what a Shift_JIS client types as 0x8790: "≒" from NEC's row 13,
# 0xADF0. PostgreSQL converts it to UTF-8 U+2252 and that back to JIS X 0208's 0xA2E2, so every
# query the kit's Python sent would name another schema.
NEC_ROW_13_SCHEMA = b"_c\xad\xf0"


def test_an_euc_jp_cluster_whose_name_does_not_come_back_from_utf8_unchanged_is_skipped(lone_bed):
    server = lone_bed.node(1)
    server.query(sql.SQL("create database {} encoding 'EUC_JP' lc_collate 'C' lc_ctype 'C' template template0")
                 .format(sql.Identifier(EUC_DB.decode())))
    with connect_raw(server, EUC_DB, client_encoding="EUC_JP") as db:
        db.execute(STOCK_LIKE.encode().replace(b"{schema}", b'"' + NEC_ROW_13_SCHEMA + b'"'))
        db.execute(STOCK_LIKE.replace("{schema}", "_c1"))
        # Its name to UTF-8 and back: another name.
        assert db.execute("select pg_catalog.encode(pg_catalog.convert(pg_catalog.convert_to(nspname::pg_catalog.text,"
                          " 'UTF8'), 'UTF8', 'EUC_JP'), 'hex') from pg_catalog.pg_namespace"
                          " where pg_catalog.convert_to(nspname::pg_catalog.text, 'EUC_JP') = %s",
                          (NEC_ROW_13_SCHEMA,)).fetchall() == [("5f63a2e2",)]

    with CrashWatch(server):
        code, output = psql_utf8(server, EUC_DB.decode(), INSTALL_SQL)

    assert code == 0, output
    assert 'slony-nodelock: patched cluster "c1" (schema "_c1")' in output, output
    assert ('slony-nodelock: skipped schema "_c≒": it holds an sl_nodelock table, but its name does not convert to '
            "UTF-8 and back unchanged, which the kit's PL/Python needs (a SQL_ASCII database checks no name), so the "
            "kit does not take it for a Slony cluster and leaves it alone") in output, output
    with CrashWatch(server), connect_raw(server, EUC_DB, client_encoding="UTF8") as db:
        assert db.execute("select cluster, patched, problems from slony_nodelock.verify()").fetchall() == [
            ("_c1", True, None)]
        # Left as it was: stock Slony's function, which never converts the name.
        assert db.execute("select l.lanname from pg_catalog.pg_proc p join pg_catalog.pg_language l on l.oid = p.prolang"
                          " join pg_catalog.pg_namespace n on n.oid = p.pronamespace where p.proname = 'cleanupnodelock'"
                          " and pg_catalog.convert_to(n.nspname::pg_catalog.text, 'EUC_JP') = %s",
                          (NEC_ROW_13_SCHEMA,)).fetchall() == [("plpgsql",)]
        gone = gone_backend_pid(server)
        db.execute("insert into _c1.sl_nodelock values (1, 0, %s)", (gone,))
        notices, _ = notices_and_result(db, "select _c1.cleanupnodelock()")
        assert notices == [removal("_c1", 1, 0, gone, no_process(gone))], notices
        assert db.execute("select pg_catalog.count(*) from _c1.sl_nodelock").fetchone() == (0,)
