"""Unit tests of slony_nodelock.liveness: who really holds an sl_nodelock row.

Pure logic, no database: lock rows, recorded identities and pg_stat_activity snapshots are
plain dicts, the shape plpy.execute() and psycopg's dict_row return.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from slony_nodelock import liveness

SECOND = 1_000_000  # backend_start values are microseconds since the epoch
MIDNIGHT = 1717200000 * SECOND  # 2024-06-01 00:00:00 UTC
AT_09_41_10 = MIDNIGHT + (9 * 3600 + 41 * 60 + 10) * SECOND
AT_09_52_59 = MIDNIGHT + (9 * 3600 + 52 * 60 + 59) * SECOND

DATABASE = 16384  # the OID of the database the cleanup runs in; names are only for messages

BACKEND_TYPES = ["client backend", "checkpointer", "walwriter", "autovacuum worker", None]
APPLICATION_NAMES = ["", "slon.local_listen", "slon.remoteWorkerThread_2", "psql", None]

pids = st.integers(min_value=1, max_value=4_194_304)
node_ids = st.integers(min_value=1, max_value=20)
conncnts = st.integers(min_value=0, max_value=8)
starts = st.integers(min_value=0, max_value=2**62)
databases = st.sampled_from([DATABASE, 5, 16385, None])
application_names = st.one_of(st.sampled_from(APPLICATION_NAMES), st.text(max_size=20))
backend_types = st.sampled_from(BACKEND_TYPES)

XMIN = 7001  # the lock row version's transaction id


def lock_row(nodeid=1, conncnt=0, pid=2225, xmin=XMIN):
    return {"nl_nodeid": nodeid, "nl_conncnt": conncnt, "nl_backendpid": pid, "xmin": xmin}


def identity_of(row, pid=None, backend_start=AT_09_41_10, row_xmin="the row's"):
    return {
        "nl_nodeid": row["nl_nodeid"],
        "nl_conncnt": row["nl_conncnt"],
        "pid": row["nl_backendpid"] if pid is None else pid,
        "backend_start": backend_start,
        "row_xmin": row["xmin"] if row_xmin == "the row's" else row_xmin,
    }


def backend(pid=2225, datid=DATABASE, backend_type="client backend",
            application_name="", backend_start=AT_09_41_10, datname="appdb"):
    return {
        "pid": pid,
        "datid": datid,
        "datname": datname,
        "backend_type": backend_type,
        "application_name": application_name,
        "backend_start": backend_start,
    }


xmins = st.integers(min_value=3, max_value=2**32 - 1)


def lock_rows(pid=pids):
    return st.builds(lock_row, nodeid=node_ids, conncnt=conncnts, pid=pid, xmin=xmins)


def backends(pid=pids):
    return st.builds(
        backend,
        pid=pid,
        datid=databases,
        backend_type=backend_types,
        application_name=application_names,
        backend_start=starts,
    )


def identities():
    return st.fixed_dictionaries({
        "nl_nodeid": node_ids,
        "nl_conncnt": conncnts,
        "pid": pids,
        "backend_start": starts,
        "row_xmin": st.one_of(st.none(), xmins),
    })


def verdict_of(row, identity, seen, caller_pid=1, database=DATABASE):
    return liveness.judge_row(row, identity, seen, caller_pid, database)


@settings(max_examples=200, deadline=None)
@given(
    row=lock_rows(),
    start=starts,
    application_name=application_names,
    caller_pid=pids,
    other_backends=st.lists(backends(), max_size=6),
    other_identities=st.lists(identities(), max_size=6),
)
def test_holder_matching_its_recorded_identity_is_live(
    row, start, application_name, caller_pid, other_backends, other_identities
):
    pid = row["nl_backendpid"]
    assume(caller_pid != pid)  # the holder's own backend calling: see test_callers_own_recorded_lock_*
    key = (row["nl_nodeid"], row["nl_conncnt"])
    assume(all(b["pid"] != pid for b in other_backends))
    assume(all((i["nl_nodeid"], i["nl_conncnt"]) != key for i in other_identities))
    holder = backend(pid=pid, datid=DATABASE, backend_type="client backend",
                     application_name=application_name, backend_start=start)
    identity = identity_of(row, backend_start=start)

    verdict, reason = liveness.judge_row(row, identity, holder, caller_pid, DATABASE)
    assert verdict == liveness.LIVE, reason

    [(_, verdict, reason, _)] = liveness.judge(
        [row], other_identities + [identity], other_backends + [holder], caller_pid, DATABASE
    )
    assert verdict == liveness.LIVE, reason


@settings(max_examples=200, deadline=None)
@given(
    row=lock_rows(),
    identity=st.one_of(st.none(), identities()),
    snapshot=st.lists(backends(), max_size=8),
    caller_pid=pids,
    caller_is_holder=st.booleans(),
    database=databases,
)
def test_row_whose_pid_is_not_in_the_snapshot_is_stale(
    row, identity, snapshot, caller_pid, caller_is_holder, database
):
    pid = row["nl_backendpid"]
    caller_pid = pid if caller_is_holder else caller_pid
    snapshot = [b for b in snapshot if b["pid"] != pid]
    if identity is not None and identity["pid"] == pid:
        identity = identity_of(row, backend_start=identity["backend_start"])

    verdict, reason = liveness.judge_row(row, identity, None, caller_pid, database)
    assert verdict == liveness.STALE
    assert reason == "pid %d is no backend of this server (what holds it on the host could not be read)" % pid

    identities_seen = [] if identity is None else [identity]
    [(_, verdict, _, _)] = liveness.judge([row], identities_seen, snapshot, caller_pid, database)
    assert verdict == liveness.STALE


@settings(max_examples=200, deadline=None)
@given(
    row=lock_rows(),
    seen=st.one_of(st.none(), backends()),
    recorded=st.sampled_from(["none", "another pid", "same pid, other start", "same pid and start"]),
    other_pid=pids,
    start=starts,
    database=databases,
)
def test_callers_own_pid_is_always_stale(row, seen, recorded, other_pid, start, database):
    # Recorded or not: slon never cleans up on the connection that holds its lock.
    caller_pid = row["nl_backendpid"]
    if seen is not None:
        seen = dict(seen, pid=caller_pid)
    identity = {
        "none": None,
        "another pid": identity_of(row, pid=other_pid, backend_start=start),
        "same pid, other start": identity_of(row, backend_start=start),
        "same pid and start": identity_of(row, backend_start=seen["backend_start"] if seen else start),
    }[recorded]
    if recorded == "another pid":
        assume(other_pid != caller_pid)

    verdict, reason = liveness.judge_row(row, identity, seen, caller_pid, database)
    assert verdict == liveness.STALE, reason


@settings(max_examples=200, deadline=None)
@given(
    row=lock_rows(),
    seen=backends(),
    other_pid=pids,
    start=starts,
    caller_pid=pids,
    database=databases,
)
def test_identity_recorded_for_another_pid_is_ignored(row, seen, other_pid, start, caller_pid, database):
    assume(other_pid != row["nl_backendpid"])
    seen = dict(seen, pid=row["nl_backendpid"])
    elsewhere = identity_of(row, pid=other_pid, backend_start=start)

    assert liveness.judge_row(row, elsewhere, seen, caller_pid, database) == \
        liveness.judge_row(row, None, seen, caller_pid, database)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(lock_rows(pid=st.integers(min_value=1, max_value=40)), max_size=10),
    snapshot=st.lists(backends(pid=st.integers(min_value=1, max_value=40)), max_size=10),
    caller_pid=st.integers(min_value=1, max_value=40),
)
def test_judge_returns_every_row_in_input_order(rows, snapshot, caller_pid):
    judged = liveness.judge(rows, [], snapshot, caller_pid, DATABASE)

    assert [entry[0] for entry in judged] == rows
    assert all(entry[0] is row for entry, row in zip(judged, rows))


def test_pid_taken_by_the_checkpointer_is_stale():
    verdict, reason = verdict_of(lock_row(), None, backend(backend_type="checkpointer"))

    assert verdict == liveness.STALE
    assert reason == "pid 2225 is this server's checkpointer, not a client backend"


@pytest.mark.parametrize("pid, why", [(None, "NULL"), (0, "not positive"), (-5, "not positive")])
def test_a_row_whose_pid_is_no_process_id_is_stale_whatever_it_is_recorded_as(pid, why):
    # kill() takes 0 and -N for process groups, so Slony's own cleanup keeps such a row forever.
    row = lock_row(pid=pid)
    verdict, reason = verdict_of(row, identity_of(row, pid=pid), backend(pid=pid))

    assert verdict == liveness.STALE
    assert reason == f"pid {'NULL' if pid is None else pid} is no process id ({why}), so no backend holds this lock"


def test_client_backend_of_another_database_is_stale():
    verdict, reason = verdict_of(lock_row(), None, backend(datid=5, datname="postgres"))

    assert verdict == liveness.STALE
    assert reason == 'pid 2225 is a client backend of database "postgres", not of this one'


def test_databases_are_told_apart_by_oid_never_by_name():
    # Another database's name as escaped for a message can read like this one's, and a name
    # need not even be valid text here: only the OID decides.
    for name in ("appdb", None, "b\\xfccher"):
        verdict, reason = verdict_of(lock_row(), None, backend(datid=16385, datname=name))
        assert verdict == liveness.STALE
    assert reason == 'pid 2225 is a client backend of database "b\\xfccher", not of this one'
    assert verdict_of(lock_row(), None, backend(datid=16385, datname=None))[1] == \
        "pid 2225 is a client backend of database with OID 16385 (its name is not valid text in this database), not of this one"


def test_pid_reused_by_a_later_client_backend_is_stale_naming_both_start_times():
    row = lock_row()
    verdict, reason = verdict_of(
        row,
        identity_of(row, backend_start=AT_09_41_10),
        backend(application_name="slon.local_listen", backend_start=AT_09_52_59),
    )

    assert verdict == liveness.STALE
    assert reason == (
        "pid 2225 is a client backend started 2024-06-01 09:52:59.000000 UTC, "
        "after the lock was taken by one started 2024-06-01 09:41:10.000000 UTC"
    )


def test_pid_held_by_an_earlier_started_client_backend_is_stale():
    row = lock_row()
    verdict, reason = verdict_of(
        row, identity_of(row, backend_start=AT_09_52_59), backend(backend_start=AT_09_41_10)
    )

    assert verdict == liveness.STALE
    assert reason == (
        "pid 2225 is a client backend started 2024-06-01 09:41:10.000000 UTC, "
        "while the lock was taken by one started 2024-06-01 09:52:59.000000 UTC"
    )


def test_callers_own_recorded_lock_is_stale_since_its_session_has_ended():
    # Behind a session pooler the restarted slon's local_listen gets the server backend its dead
    # predecessor took the lock with; slon never cleans up on a connection that holds a lock.
    row = lock_row()
    verdict, reason = liveness.judge_row(row, identity_of(row), backend(), 2225, DATABASE)

    assert verdict == liveness.STALE
    assert reason == ("pid 2225 is the backend running this cleanup; it took the lock in an earlier client "
                      "session that has ended (a session pooler such as pgbouncer handed its server connection "
                      "on), and slon never cleans up on a connection that holds a lock")


def test_callers_own_pid_without_identity_is_stale():
    verdict, reason = liveness.judge_row(
        lock_row(), None, backend(application_name="slon.local_listen"), 2225, DATABASE
    )

    assert verdict == liveness.STALE
    assert reason == "pid 2225 is the backend running this cleanup, not a lock holder"


def test_unrecorded_local_listen_holding_the_nodes_own_lock_is_kept():
    verdict, reason = verdict_of(
        lock_row(conncnt=0), None, backend(application_name="slon.local_listen")
    )

    assert verdict == liveness.UNSURE
    assert reason == ('pid 2225 is a client backend named "slon.local_listen", as slon\'s would be, and no record '
                      "says which backend took this row (it is older than the install, or was written while the "
                      "identity triggers were off), so it may be the slon that took it")


def test_unrecorded_unnamed_client_backend_is_stale():
    # Slony 2.2's slon names every connection it makes; drivers leave the name empty by default.
    for conncnt in (0, 3):
        for name in ("", None):
            verdict, reason = verdict_of(lock_row(conncnt=conncnt), None, backend(application_name=name))

            assert verdict == liveness.STALE
            assert reason == ("pid 2225 is a client backend with no application_name, and "
                              "slon names every connection it makes")


def test_unrecorded_psql_backend_is_stale():
    verdict, reason = verdict_of(lock_row(), None, backend(application_name="psql"))

    assert verdict == liveness.STALE
    assert reason == 'pid 2225 is a client backend named "psql", not a slon connection'


def test_unrecorded_remote_worker_holding_the_nodes_own_lock_is_stale():
    verdict, reason = verdict_of(
        lock_row(conncnt=0), None, backend(application_name="slon.remoteWorkerThread_2")
    )

    assert verdict == liveness.STALE
    assert reason == (
        'pid 2225 is slon\'s "slon.remoteWorkerThread_2" connection, '
        'not the "slon.local_listen" one that takes a node\'s own lock'
    )


def test_unrecorded_remote_worker_holding_a_worker_lock_is_kept():
    verdict, reason = verdict_of(
        lock_row(conncnt=3), None, backend(application_name="slon.remoteWorkerThread_2")
    )

    assert verdict == liveness.UNSURE
    assert '"slon.remoteWorkerThread_2"' in reason


def test_hidden_backend_fields_are_unsure_and_name_the_missing_grant():
    row = lock_row()
    hidden = backend(datid=None, datname=None, backend_type=None, application_name=None, backend_start=None)

    for identity in (None, identity_of(row)):
        verdict, reason = liveness.judge_row(row, identity, hidden, 1, DATABASE, role="monitor")

        assert verdict == liveness.UNSURE
        assert reason == ('pid 2225 is a backend, but pg_stat_activity hides its type and start time from role '
                          '"monitor" (GRANT pg_read_all_stats TO "monitor", or run the cleanup as a superuser, as slon does)')


def test_identity_recorded_for_an_earlier_pid_falls_back_to_the_unrecorded_rule():
    row = lock_row(conncnt=0, pid=2225)
    moved = identity_of(row, pid=1874, backend_start=AT_09_41_10)

    verdict, reason = verdict_of(
        row, moved, backend(application_name="psql", backend_start=AT_09_41_10)
    )
    assert verdict == liveness.STALE
    assert reason == 'pid 2225 is a client backend named "psql", not a slon connection'

    verdict, reason = verdict_of(
        row, moved, backend(application_name="slon.local_listen", backend_start=AT_09_52_59)
    )
    assert verdict == liveness.UNSURE
    assert "no record says which backend took this row" in reason


def test_judge_matches_identities_and_backends_to_rows_in_input_order():
    live = lock_row(nodeid=1, conncnt=0, pid=3001)
    reused = lock_row(nodeid=1, conncnt=1, pid=3002)
    gone = lock_row(nodeid=2, conncnt=0, pid=3003)
    snapshot = [
        backend(pid=3002, backend_type="walwriter"),
        backend(pid=3001, application_name="slon.local_listen", backend_start=AT_09_41_10),
    ]
    recorded = [identity_of(reused), identity_of(live, backend_start=AT_09_41_10)]

    judged = liveness.judge([gone, live, reused], recorded, snapshot, 1, DATABASE)

    assert [(row, verdict) for row, verdict, _, _ in judged] == [
        (gone, liveness.STALE),
        (live, liveness.LIVE),
        (reused, liveness.STALE),
    ]
    assert "walwriter" in judged[2][2]


@settings(max_examples=200, deadline=None)
@given(
    row=lock_rows(),
    other_xmin=st.one_of(st.none(), xmins),
    seen=backends(),
    caller_pid=pids,
    database=databases,
)
def test_identity_recorded_for_another_row_version_counts_as_none(row, other_xmin, seen, caller_pid, database):
    # The record outlived its row (triggers off while slon restarted onto the same PID): it names
    # the row's key and PID but an earlier row version, and must not make the holder an impostor.
    assume(other_xmin != row["xmin"])
    seen = dict(seen, pid=row["nl_backendpid"])
    leftover = identity_of(row, backend_start=AT_09_41_10, row_xmin=other_xmin)

    assert not liveness.record_matches(row, leftover)
    assert liveness.judge_row(row, leftover, seen, caller_pid, database) == \
        liveness.judge_row(row, None, seen, caller_pid, database)


def test_live_slon_behind_a_leftover_record_is_kept_not_removed():
    row = lock_row(conncnt=0)
    leftover = identity_of(row, backend_start=AT_09_41_10, row_xmin=XMIN - 5)
    slon = backend(application_name="slon.local_listen", backend_start=AT_09_52_59)

    verdict, reason = verdict_of(row, leftover, slon)

    assert verdict == liveness.UNSURE, reason


@pytest.mark.parametrize("name, conncnt, exact", [
    ("slon.local_listen", 0, True),
    ("slon.local_listen", 1, False),
    ("slon.node_1_listen", 2, True),
    ("slon.copy_set_1", 2, True),
    ("slon.origin_1_provider_1", 2, True),
    ("slon.node_1_listen", 0, False),
    ("slon.remoteWorkerThread_2", 2, False),
    ("slon.node_x_listen", 2, False),
    ("slon.node_1_listen_", 2, False),
    ("slon.copy_set_", 2, False),
    ("slon.origin_1_provider", 2, False),
    ("slon.node_\u0661_listen", 2, False),  # a digit, but not an ASCII one
    ("", 0, False),
    (None, 2, False),
])
def test_only_the_exact_name_slon_gives_a_connection_is_adoptable(name, conncnt, exact):
    row = lock_row(conncnt=conncnt)
    holder = backend(application_name=name)
    verdict, _ = verdict_of(row, None, holder)

    assert liveness.carries_slons_exact_name(row, name) is exact
    assert liveness.adoptable(row, None, holder, verdict) is exact


def test_rows_with_a_matching_record_or_a_stale_verdict_are_never_adopted():
    row = lock_row(conncnt=0)
    holder = backend(application_name="slon.local_listen")

    assert not liveness.adoptable(row, identity_of(row), holder, liveness.LIVE)
    # A holder that would be adopted, but for the verdict: only UNSURE rows are adopted.
    assert liveness.adoptable(row, None, holder, liveness.UNSURE)
    assert not liveness.adoptable(row, None, holder, liveness.STALE)
    assert not liveness.adoptable(row, None, holder, liveness.LIVE)
    hidden = backend(datid=None, datname=None, backend_type=None, application_name="slon.local_listen", backend_start=None)
    assert not liveness.adoptable(row, None, hidden, liveness.UNSURE)


def test_a_backend_recorded_as_taker_of_another_lock_holds_no_unrecorded_one():
    # Two clusters in one database: cluster _two's local_listen took its row (recorded) on the
    # PID that _bed's stale, unrecorded row names.
    row = lock_row(conncnt=0, pid=2225)
    slon_of_two = backend(application_name="slon.local_listen", backend_start=AT_09_52_59)
    record_in_two = dict(identity_of(lock_row(nodeid=1, conncnt=0, pid=2225), backend_start=AT_09_52_59),
                         cluster="_two")

    [(_, verdict, reason, adoptable)] = liveness.judge([row], [record_in_two], [slon_of_two], 1, DATABASE, "_bed")

    assert verdict == liveness.STALE and not adoptable
    assert reason == ('pid 2225 is the client backend that took the lock row (node 1, conncnt 0) of cluster "two" (schema "_two"), '
                      "and slon takes one lock per connection")
    # The same key and PID in this cluster is the row's own record, not another lock.
    own = dict(record_in_two, cluster="_bed")
    [(_, verdict, _, _)] = liveness.judge([row], [own], [slon_of_two], 1, DATABASE, "_bed")
    assert verdict == liveness.LIVE
    # A record for the PID with another start time is another backend's.
    earlier = dict(record_in_two, backend_start=AT_09_41_10)
    [(_, verdict, _, adoptable)] = liveness.judge([row], [earlier], [slon_of_two], 1, DATABASE, "_bed")
    assert verdict == liveness.UNSURE and adoptable


def test_only_a_record_the_trigger_made_and_whose_row_stands_proves_a_backend_took_another_lock():
    row = lock_row(conncnt=0, pid=2225)
    slon = backend(application_name="slon.local_listen", backend_start=AT_09_52_59)
    elsewhere = dict(identity_of(lock_row(nodeid=7, pid=2225), backend_start=AT_09_52_59), cluster="_ca")

    for weak in (dict(elsewhere, adopted=True, proves_taken=False), dict(elsewhere, proves_taken=False)):
        [(_, verdict, _, _)] = liveness.judge([row], [weak], [slon], 1, DATABASE, "_cb")
        assert verdict == liveness.UNSURE

    # A record adopted at install for this row is a guess; the trigger's sighting elsewhere wins.
    guessed = dict(identity_of(row, backend_start=AT_09_52_59), cluster="_cb", adopted=True)
    seen = dict(elsewhere, adopted=False, proves_taken=True)
    [(_, verdict, reason, _)] = liveness.judge([row], [guessed, seen], [slon], 1, DATABASE, "_cb")
    assert verdict == liveness.STALE and 'took the lock row (node 7, conncnt 0) of cluster "ca" (schema "_ca")' in reason
    [(_, verdict, _, _)] = liveness.judge([row], [dict(guessed, adopted=False), seen], [slon], 1, DATABASE, "_cb")
    assert verdict == liveness.LIVE


STAT_OF_SVLOGD = ("2225 (svlogd) S 1 2225 2225 0 -1 4194560 120 0 0 0 0 0 0 0 20 0 1 0 "
                  "4200 2211840 180 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")


def test_proc_entries_give_the_command_owner_and_start_time():
    boot = (AT_09_52_59 - 42 * SECOND) // SECOND
    started = liveness.process_start(STAT_OF_SVLOGD, boot, 100)  # field 22: 4200 ticks = 42 s

    assert started == AT_09_52_59
    assert liveness.boot_time("cpu  1 2 3\nbtime %d\nprocesses 9\n" % boot) == boot
    assert liveness.real_uid("Name:\tsvlogd\nUid:\t104\t104\t104\t104\n") == 104
    assert liveness.command_line(b"svlogd\0-tt\0./main\0", STAT_OF_SVLOGD) == "svlogd -tt ./main"
    assert liveness.program_name(STAT_OF_SVLOGD) == "svlogd"
    assert liveness.describe_process("svlogd", "postgres", started) == \
        '"svlogd" (user postgres, started 2024-06-01 09:52:59 UTC)'


def test_messages_name_the_program_never_its_arguments():
    # A command line can carry a password; what a NOTICE says goes to every log.
    stat = STAT_OF_SVLOGD.replace("(svlogd)", "(sh\xff\n)")
    assert liveness.program_name(stat) == "sh\\xff\\n"
    assert "Sup3rS3cret" not in liveness.program_name(stat)


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields():
    stat = STAT_OF_SVLOGD.replace("(svlogd)", "(a) b (c)")

    assert liveness.process_start(stat, 0, 100) == 42 * SECOND
    assert liveness.command_line(b"", stat) == "[a) b (c]"


def test_the_removal_reason_says_what_the_pid_is_now_or_that_there_is_none():
    described = '"svlogd -tt ./main" (user postgres, started 2024-06-01 09:52:59 UTC)'

    assert verdict_of(lock_row(), None, None) == (
        liveness.STALE, "pid 2225 is no backend of this server (what holds it on the host could not be read)")
    assert liveness.judge_row(lock_row(), None, None, 1, DATABASE, os_process=described) == (
        liveness.STALE, "pid 2225 is now %s, which is no backend of this server" % described)
    assert liveness.judge_row(lock_row(), None, None, 1, DATABASE, os_process=liveness.NO_SUCH_PROCESS) == (
        liveness.STALE, "no process has pid 2225 any more, so the backend that took the lock has ended")


def test_a_recorded_holder_that_no_longer_carries_its_name_is_stale():
    # Behind a session pooler the taker's server backend outlives slon; DISCARD ALL resets its
    # name and the pooler hands it to another client, with the recorded PID and start time.
    row = lock_row()
    taken = dict(identity_of(row), application_name="slon.local_listen")

    assert verdict_of(row, taken, backend(application_name="slon.local_listen"))[0] == liveness.LIVE
    for now in ("", "slon.local_sync", "psql"):
        verdict, reason = verdict_of(row, taken, backend(application_name=now))
        assert verdict == liveness.STALE
        assert reason == ('pid 2225 is the client backend that took the lock, but it now carries the name "%s" where it '
                          'took the lock as "slon.local_listen", and slon never renames a connection: the session that '
                          "took it has ended (a session pooler such as pgbouncer keeps its server connection)" % now)
    # Records of earlier releases have no name: the start time alone decides.
    assert verdict_of(row, identity_of(row), backend(application_name="psql"))[0] == liveness.LIVE


def test_of_two_rows_one_backend_took_the_earlier_one_is_stale_even_under_the_same_name():
    # Behind a session pooler node 2's listen connection registered, left, and the pooler handed
    # its server backend to node 3's listen connection, which registered too, under the same name
    # (every remote slon names its listen connection to node 1 slon.node_1_listen).
    name = "slon.node_1_listen"
    for earlier, later in ((7001, 7002), (2**32 - 10, 5)):  # the second pair wraps around
        row_2 = lock_row(nodeid=2, conncnt=1, xmin=earlier)
        row_3 = lock_row(nodeid=3, conncnt=1, xmin=later)
        records = [dict(identity_of(row_2), application_name=name, cluster=None, adopted=False),
                   dict(identity_of(row_3), application_name=name, cluster=None, adopted=False)]
        holder = backend(application_name=name)

        judged = liveness.judge([row_2, row_3], records, [holder], 1, DATABASE)

        assert [(v, r) for _, v, r, _ in judged] == [
            (liveness.STALE, "pid 2225 is the client backend that took the lock, but it took the lock row (node 3, "
                             "conncnt 1) of this cluster after it, and slon takes one lock per connection: the session "
                             "that took this one has ended (a session pooler such as pgbouncer handed its server "
                             "connection on)"),
            (liveness.LIVE, "pid 2225 is the client backend that took the lock")]


@pytest.mark.parametrize("epoch_microseconds", [2**62, -2**62, 253_402_300_800_000_000])
def test_a_start_time_past_pythons_calendar_still_gets_a_message(epoch_microseconds):
    # PostgreSQL's timestamps reach the year 294276 and Python's datetime only 9999: an exception
    # here would stop the cleanup that slon runs at start.
    assert liveness.moment(epoch_microseconds) == "%d microseconds after 1970-01-01 00:00:00 UTC" % epoch_microseconds
    assert liveness.moment(epoch_microseconds, precise=False).endswith(" UTC")
