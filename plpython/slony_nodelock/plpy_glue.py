# The database side of each cluster's replacement cleanupnodelock() and of
# slony_nodelock.adopt_live_locks(), run inside PL/Python: one query brings every lock row with
# its row version and the identity recorded for its key, a second what pg_stat_activity says
# about their PIDs; liveness.judge() decides.
#
# sql/generate.py pastes this file after liveness.py into the same source text, so the names
# imported below are already defined there; the import line itself is dropped when pasting.
# plpy is passed in rather than used as a global so that this file can also be imported with a
# stand-in.
from slony_nodelock.liveness import STALE, UNSURE, judge  # embed: drop

# backend_start as integer microseconds since the epoch, cheap for Python to compare. date_part()
# gives float8 seconds, whose resolution at today's epoch (~0.25 us) keeps every microsecond
# apart, and rounds back to the exact microsecond; extract() would give numeric, ten times slower.
MICROSECONDS = "(pg_catalog.date_part('epoch', %s) * 1000000)::pg_catalog.int8"
# A transaction id as an integer (xid has no cast to a number).
XID = "%s::pg_catalog.text::pg_catalog.int8"

# Each lock row, with its row version and the identity recorded for its key, if any; whether
# that identity describes this row version is liveness.record_matches()'s call.
LOCKS = (
    "select l.nl_nodeid, l.nl_conncnt, l.nl_backendpid, " + XID % "l.xmin" + " as xmin,"
    " i.pid as recorded_pid, " + MICROSECONDS % "i.backend_start" + " as recorded_start,"
    " " + XID % "i.row_xmin" + " as recorded_xmin"
    " from %s l left join slony_nodelock.lock_identity i"
    " on i.cluster_schema = $1 and i.nl_nodeid = l.nl_nodeid and i.nl_conncnt = l.nl_conncnt"
)
# The same without the records, for when our schema or table has gone (DROP SCHEMA ... CASCADE
# leaves the cluster's function behind): every row is then judged as unrecorded, which never
# removes a holder that could be slon's.
BARE_LOCKS = (
    "select l.nl_nodeid, l.nl_conncnt, l.nl_backendpid, " + XID % "l.xmin" + " as xmin,"
    " null::pg_catalog.int4 as recorded_pid, null::pg_catalog.int8 as recorded_start,"
    " null::pg_catalog.int8 as recorded_xmin"
    " from %s l where $1 is not null"
)
# The same lock Slony's own version takes, so that two cleanups cannot interleave.
FOR_UPDATE = " for update of l"

# What pg_stat_activity says about the given PIDs. pg_stat_get_activity() is what the view reads;
# calling it directly skips the view's join to pg_authid, which we do not need.
BACKENDS = (
    "select a.pid, d.datname::pg_catalog.text as datname, a.backend_type, a.application_name,"
    " " + MICROSECONDS % "a.backend_start" + " as backend_start"
    " from pg_catalog.pg_stat_get_activity(null) a"
    " left join pg_catalog.pg_database d on d.oid = a.datid"
    " where a.pid = any ($1)"
)


def _plans(plpy, cache, cluster):
    """Prepared statements for the cluster, kept for the session in the function's SD (under a
    tuple key, which no other SD entry uses)."""
    plans = cache.get(("plans", cluster))
    if plans is None:
        table = "%s.sl_nodelock" % plpy.quote_ident(cluster)
        me = plpy.execute("select pg_catalog.pg_backend_pid() as pid,"
                          " pg_catalog.current_database()::pg_catalog.text as database")[0]
        plans = {
            "table": table,
            "caller": me["pid"],
            "database": me["database"],
            "backends": plpy.prepare(BACKENDS, ["int4[]"]),
            "fresh_activity": plpy.prepare("select pg_catalog.pg_stat_clear_snapshot()"),
            "delete": plpy.prepare(
                "delete from %s where (nl_nodeid, nl_conncnt) in"
                " (select * from rows from (pg_catalog.unnest($1::pg_catalog.int4[]),"
                " pg_catalog.unnest($2::pg_catalog.int4[])))" % table, ["int4[]", "int4[]"]),
        }
        cache[("plans", cluster)] = plans
    return plans


def _plan(plpy, plans, name, query):
    """A prepared statement made on first use: those that read our own tables must not be
    prepared up front, or a missing table would fail the whole function."""
    if name not in plans:
        plans[name] = plpy.prepare(query, ["name"])
    return plans[name]


def _lock_rows(plpy, plans, cluster, for_update):
    """Every lock row with its record; without records, and a WARNING, when our table is gone."""
    suffix = FOR_UPDATE if for_update else ""
    try:
        return plpy.execute(_plan(plpy, plans, "locks" + suffix, LOCKS % plans["table"] + suffix), [cluster])
    except (plpy.spiexceptions.UndefinedTable, plpy.spiexceptions.InvalidSchemaName,
            plpy.spiexceptions.UndefinedColumn) as missing:
        plans.pop("locks" + suffix, None)
        plpy.warning(
            'slony-nodelock: cluster "%s" cannot read its lock records (%s), so its locks are judged '
            "without them and no holder that might be slon is removed; repair with: "
            "psql -v ON_ERROR_STOP=1 -d %s -f sql/install.sql" % (cluster, missing, plans["database"]))
        return plpy.execute(_plan(plpy, plans, "bare" + suffix, BARE_LOCKS % plans["table"] + suffix), [cluster])


def _judged(plpy, plans, locks):
    """(lock row, verdict, reason, adoptable) for each lock row, and the backends looked at."""
    identities = []
    pids = set()
    for row in locks:
        pids.add(row["nl_backendpid"])
        if row["recorded_pid"] is not None:
            identities.append({"nl_nodeid": row["nl_nodeid"], "nl_conncnt": row["nl_conncnt"],
                               "pid": row["recorded_pid"], "backend_start": row["recorded_start"],
                               "row_xmin": row["recorded_xmin"]})
    # pg_stat_activity is read once per transaction and then kept; a holder that connected since
    # the caller's transaction first looked would be missing, and its live lock judged stale.
    plpy.execute(plans["fresh_activity"])
    backends = plpy.execute(plans["backends"], [list(pids)])
    return judge(locks, identities, backends, plans["caller"], plans["database"]), backends


def _describe(cluster, row):
    return 'cluster "%s" node %d conncnt %d pid %d' % (
        cluster, row["nl_nodeid"], row["nl_conncnt"], row["nl_backendpid"])


def cleanup(plpy, cache, cluster):
    """What cleanupNodelock() does: delete every stale lock row, under the same FOR UPDATE as
    Slony's own version, with a NOTICE for each deletion and each row kept only for lack of proof."""
    plans = _plans(plpy, cache, cluster)
    locks = _lock_rows(plpy, plans, cluster, for_update=True)
    if len(locks) == 0:
        return 0
    stale_nodes, stale_conncnts = [], []
    for row, verdict, reason, _ in _judged(plpy, plans, locks)[0]:
        if verdict == STALE:
            stale_nodes.append(row["nl_nodeid"])
            stale_conncnts.append(row["nl_conncnt"])
            plpy.notice("slony-nodelock: removed stale lock of %s: %s" % (_describe(cluster, row), reason))
        elif verdict == UNSURE:
            plpy.notice("slony-nodelock: kept lock of %s: %s" % (_describe(cluster, row), reason))
    if stale_nodes:
        plpy.execute(plans["delete"], [stale_nodes, stale_conncnts])
    return 0


RECORD = (
    "insert into slony_nodelock.lock_identity"
    " (cluster_schema, nl_nodeid, nl_conncnt, pid, backend_start, row_xmin)"
    " select $1, $2, $3, a.pid, a.backend_start, $6::pg_catalog.text::pg_catalog.xid"
    " from pg_catalog.pg_stat_get_activity($4) a"
    " where " + MICROSECONDS % "a.backend_start" + " = $5"
    " on conflict (cluster_schema, nl_nodeid, nl_conncnt) do nothing"
)


def adopt(plpy, cache, cluster):
    """Record the identity of every row kept only for lack of a record whose holder carries
    exactly the name slon gives that connection (rows taken before install). Deletes nothing: a
    stale row is left for the next cleanup. Returns the number of identities recorded."""
    plans = _plans(plpy, cache, cluster)
    locks = _lock_rows(plpy, plans, cluster, for_update=False)
    if len(locks) == 0:
        return 0
    judged, backends = _judged(plpy, plans, locks)
    started = dict((b["pid"], b["backend_start"]) for b in backends)
    record = _plan_record(plpy, plans)
    adopted = 0
    for row, _, _, adoptable in judged:
        if adoptable:
            result = plpy.execute(record, [cluster, row["nl_nodeid"], row["nl_conncnt"],
                                           row["nl_backendpid"], started[row["nl_backendpid"]], row["xmin"]])
            adopted += result.nrows()
    return adopted


def _plan_record(plpy, plans):
    if "record" not in plans:
        plans["record"] = plpy.prepare(RECORD, ["name", "int4", "int4", "int4", "int8", "int8"])
    return plans["record"]
