# Who really holds a Slony sl_nodelock row: the pure decision, with no database access.
#
# The same source runs in two places: pasted by sql/generate.py into slony_nodelock.logic_source(),
# the Python that each cluster's replacement cleanupnodelock() is built from and that
# adopt_live_locks() loads, and imported as slony_nodelock.liveness by the unit tests. So it keeps
# to plain functions and builtin types: no imports, no __future__, no classes.
#
# Inputs are mappings, the shape plpy.execute() and psycopg's dict_row both return:
#   lock row:  {"nl_nodeid", "nl_conncnt", "nl_backendpid"}
#   identity:  {"nl_nodeid", "nl_conncnt", "pid", "backend_start"}, recorded when the row was made
#   backend:   {"pid", "datname", "backend_type", "application_name", "backend_start"},
#              one per row of pg_stat_activity
# backend_start values are microseconds since the epoch (integers): exact, and cheap to compare.

LOGIC_VERSION = "1"

CLIENT_BACKEND = "client backend"
SLON_PREFIX = "slon."
OWN_SLON_CONNECTION = "slon.local_listen"

LIVE = "live"
STALE = "stale"
# Live, but only because we cannot tell: the caller is told why.
UNSURE = "unsure"


def clock(epoch_microseconds):
    """HH:MM:SS UTC of an epoch timestamp in microseconds, for messages."""
    seconds = epoch_microseconds // 1000000 % 86400
    return "%02d:%02d:%02d UTC" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def judge_row(row, identity, backend, caller_pid, database):
    """(verdict, reason) for one lock row.

    identity is the record made when the row was inserted, or None; backend is the
    pg_stat_activity entry for the row's PID, or None when no such process is listed.
    """
    pid = row["nl_backendpid"]
    recorded = identity is not None and identity["pid"] == pid
    if backend is None:
        return STALE, "pid %d is not a backend of this database" % pid
    if pid == caller_pid and not recorded:
        return STALE, "pid %d is the backend running this cleanup, not a lock holder" % pid
    if backend["backend_type"] is None:
        return UNSURE, (
            "pid %d is listed, but its backend type and start time are hidden from this role "
            "(grant it pg_read_all_stats); keeping the row" % pid
        )
    if backend["backend_type"] != CLIENT_BACKEND:
        return STALE, "pid %d is the %s, not a client backend" % (pid, backend["backend_type"])
    if backend["datname"] != database:
        return STALE, "pid %d is a client backend of database %s, not of %s" % (
            pid, backend["datname"], database)

    if recorded:
        if backend["backend_start"] == identity["backend_start"]:
            return LIVE, "pid %d is the client backend that took the lock" % pid
        return STALE, "pid %d is a client backend started %s, %s the lock was taken by one started %s" % (
            pid, clock(backend["backend_start"]),
            "after" if backend["backend_start"] > identity["backend_start"] else "but",
            clock(identity["backend_start"]))

    # No identity recorded: the row predates the install, or its PID was changed since.
    name = backend["application_name"] or ""
    if name and not name.startswith(SLON_PREFIX):
        return STALE, "pid %d is a client backend named '%s', not a slon connection" % (pid, name)
    if row["nl_conncnt"] == 0 and name not in ("", OWN_SLON_CONNECTION):
        return STALE, "pid %d is slon's '%s' connection, not the node's own %s" % (
            pid, name, OWN_SLON_CONNECTION)
    return UNSURE, (
        "pid %d is a client backend named '%s' and no identity was recorded for this row; "
        "keeping it" % (pid, name)
    )


def judge(rows, identities, backends, caller_pid, database):
    """[(row, verdict, reason)] for every lock row, in the order given.

    identities: recorded identities, any order; backends: the pg_stat_activity snapshot.
    """
    by_key = {}
    for identity in identities:
        by_key[(identity["nl_nodeid"], identity["nl_conncnt"])] = identity
    by_pid = {}
    for backend in backends:
        by_pid[backend["pid"]] = backend
    return [
        (row,) + judge_row(row, by_key.get((row["nl_nodeid"], row["nl_conncnt"])),
                           by_pid.get(row["nl_backendpid"]), caller_pid, database)
        for row in rows
    ]
