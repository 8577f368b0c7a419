"""Two cleanups at once: slon's start-up (cleanupNodelock(), then its lock INSERT, in one
transaction) while another session's cleanupNodelock() is between judging a row and deleting it.

The replacement deletes the rows it judged stale by key (nl_nodeid, nl_conncnt), as Slony's does.
Only the row lock it takes when reading them (FOR UPDATE, as Slony's) keeps slon from deleting
that row and inserting its own under the same key in the meantime; without it, the paused
cleanup would then delete the live slon's lock. Slony's tables are the stand-in's here: the
functions under test are ours."""

from __future__ import annotations

import threading
import time

import psycopg

from slonybed.bed import INSTALL_SQL
from test_install import add_stock_like_cluster, server  # noqa: F401  (server is a fixture)
from notices import no_process, removal

WAIT = 30


class Session(threading.Thread):
    """One connection running one statement in the background, remembering its error."""

    def __init__(self, server, statement: str, **conninfo) -> None:  # noqa: F811
        super().__init__(daemon=True)
        self.conn = server.connect(**conninfo)
        self.pid = self.conn.info.backend_pid
        self.statement = statement
        self.notices: list[str] = []
        self.conn.add_notice_handler(lambda d: self.notices.append(d.message_primary))
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.conn.execute(self.statement)
        except psycopg.Error as exc:
            self.error = exc

    def finish(self) -> None:
        self.join(WAIT)
        assert not self.is_alive(), f"{self.statement!r} still runs after {WAIT}s"
        self.conn.close()


def wait_until_blocked_or_done(server, session: Session) -> None:  # noqa: F811
    deadline = time.monotonic() + WAIT
    while session.is_alive():
        if server.query("select 1 from pg_catalog.pg_stat_activity where pid = %s and wait_event_type = 'Lock'",
                        (session.pid,)):
            return
        assert time.monotonic() < deadline, f"{session.statement!r} neither ended nor waited for a lock"
        time.sleep(0.02)


def test_a_cleanup_paused_between_judging_and_deleting_never_removes_the_lock_slon_took_meanwhile(server):  # noqa: F811
    for schema in ("_c1", "_other"):
        add_stock_like_cluster(server, schema)
    assert server.psql_file(INSTALL_SQL).returncode == 0
    # The stale row: its taker has gone.
    with server.connect() as gone:
        gone.execute("insert into _c1.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())")
        stale_pid = gone.info.backend_pid
    deadline = time.monotonic() + WAIT
    while server.query("select 1 from pg_catalog.pg_stat_activity where pid = %s", (stale_pid,)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # The pause: a live registration whose holder also took a lock in _other. Judging it, a
    # cleanup of _c1 reads _other.sl_nodelock to see that that lock still stands, and waits there
    # while the test holds _other.sl_nodelock.
    with server.connect(application_name="slon.node_2_listen") as registered:
        for schema in ("_other", "_c1"):
            registered.execute(f"insert into {schema}.sl_nodelock values (2, 1, pg_catalog.pg_backend_pid())")
        with server.connect() as pauser:
            pauser.execute("begin")
            pauser.execute("lock table _other.sl_nodelock in access exclusive mode")

            paused = Session(server, "select _c1.cleanupnodelock()")
            paused.start()
            wait_until_blocked_or_done(server, paused)
            assert paused.is_alive(), paused.error
            # The registration goes meanwhile, so that slon's own cleanup below has nothing to
            # read in _other and is not held up by the test's lock itself; holding its row
            # locked, the paused cleanup holds this DELETE up too.
            unregister = Session(server, "delete from _c1.sl_nodelock where nl_nodeid = 2")
            unregister.start()
            wait_until_blocked_or_done(server, unregister)
            slon = Session(server, "select _c1.cleanupnodelock(); "
                                   "insert into _c1.sl_nodelock values (1, 0, pg_catalog.pg_backend_pid())",
                           application_name="slon.local_listen")
            slon.start()
            wait_until_blocked_or_done(server, slon)

            pauser.execute("commit")

            for session in (paused, unregister, slon):
                session.finish()

    assert (paused.error, unregister.error, slon.error) == (None, None, None)
    assert server.query("select nl_nodeid, nl_conncnt, nl_backendpid from _c1.sl_nodelock") == [(1, 0, slon.pid)]
    removals = [n for n in paused.notices + slon.notices if n.startswith("slony-nodelock: removed the stale")]
    assert removals == [removal("_c1", 1, 0, stale_pid, no_process(stale_pid))]
