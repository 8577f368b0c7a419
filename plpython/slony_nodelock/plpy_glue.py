# The database side of slony_nodelock.cleanup_nodelock() and adopt_live_locks(), run inside
# PL/Python: it reads the lock rows, the recorded identities and pg_stat_activity, asks
# liveness.judge() about each row, and acts on the verdicts.
#
# sql/generate.py embeds this file after liveness.py in the same function body, so the names
# imported below are already defined there; the import line itself is dropped when embedding.
# plpy is passed in rather than used as a global so that this file can also be imported with a
# stand-in.
from slony_nodelock.liveness import STALE, UNSURE, judge  # embed: drop

LOCK_COLUMNS = "nl_nodeid, nl_conncnt, nl_backendpid"


def _plans(plpy, cache, cluster):
    """Prepared statements for one cluster, kept for the session (SD is per-function, per-session)."""
    plans = cache.get(cluster)
    if plans is None:
        table = "%s.sl_nodelock" % plpy.quote_ident(cluster)
        plans = {
            "locks": plpy.prepare("select %s from %s order by 1, 2" % (LOCK_COLUMNS, table)),
            "locks_for_update": plpy.prepare(
                "select %s from %s order by 1, 2 for update" % (LOCK_COLUMNS, table)),
            "identities": plpy.prepare(
                "select nl_nodeid, nl_conncnt, pid,"
                " extract(epoch from backend_start) as backend_start"
                " from slony_nodelock.lock_identity where cluster_schema = $1", ["name"]),
            "backends": plpy.prepare(
                "select pid, datname::pg_catalog.text as datname, backend_type, application_name,"
                " extract(epoch from backend_start) as backend_start"
                " from pg_catalog.pg_stat_activity where pid operator(pg_catalog.=) any ($1)",
                ["int4[]"]),
            "delete": plpy.prepare(
                "delete from %s where (nl_nodeid, nl_conncnt) in"
                " (select * from rows from (pg_catalog.unnest($1::pg_catalog.int4[]),"
                " pg_catalog.unnest($2::pg_catalog.int4[])))"
                % table, ["int4[]", "int4[]"]),
            "record": plpy.prepare(
                "insert into slony_nodelock.lock_identity"
                " (cluster_schema, nl_nodeid, nl_conncnt, pid, backend_start)"
                " select $1, $2, $3, pid, backend_start from pg_catalog.pg_stat_activity"
                " where pid operator(pg_catalog.=) $4"
                " and extract(epoch from backend_start)"
                " operator(pg_catalog.=) $5"
                " on conflict (cluster_schema, nl_nodeid, nl_conncnt) do nothing",
                ["name", "int4", "int4", "int4", "numeric"]),
            "me": plpy.prepare(
                "select pg_catalog.pg_backend_pid() as pid,"
                " pg_catalog.current_database()::pg_catalog.text as database"),
        }
        cache[cluster] = plans
    return plans


def _verdicts(plpy, plans, cluster, locks):
    identities = plpy.execute(plans["identities"], [cluster])
    backends = plpy.execute(plans["backends"], [[row["nl_backendpid"] for row in locks]])
    me = plpy.execute(plans["me"])[0]
    return judge(locks, identities, backends, me["pid"], me["database"]), backends


def _describe(cluster, row):
    return 'cluster "%s" node %d conncnt %d pid %d' % (
        cluster, row["nl_nodeid"], row["nl_conncnt"], row["nl_backendpid"])


def cleanup(plpy, cache, cluster):
    """What cleanupNodelock() does: delete every stale lock row, under the same FOR UPDATE as
    Slony's own version, with a NOTICE for each deletion and each row kept only for lack of proof."""
    plans = _plans(plpy, cache, cluster)
    locks = plpy.execute(plans["locks_for_update"])
    if len(locks) == 0:
        return 0
    verdicts, _ = _verdicts(plpy, plans, cluster, locks)
    stale_nodes, stale_conncnts = [], []
    for row, verdict, reason in verdicts:
        if verdict == STALE:
            stale_nodes.append(row["nl_nodeid"])
            stale_conncnts.append(row["nl_conncnt"])
            plpy.notice("slony-nodelock: removed stale lock of %s: %s" % (_describe(cluster, row), reason))
        elif verdict == UNSURE:
            plpy.notice("slony-nodelock: kept lock of %s: %s" % (_describe(cluster, row), reason))
    if stale_nodes:
        plpy.execute(plans["delete"], [stale_nodes, stale_conncnts])
    return 0


def adopt(plpy, cache, cluster):
    """Record the identity of every lock row whose holder is live now and has none recorded (rows
    taken before install). Deletes nothing: a stale row is left for the next cleanup. Returns the
    number of identities recorded."""
    plans = _plans(plpy, cache, cluster)
    locks = plpy.execute(plans["locks"])
    if len(locks) == 0:
        return 0
    verdicts, backends = _verdicts(plpy, plans, cluster, locks)
    started = dict((b["pid"], b["backend_start"]) for b in backends)
    adopted = 0
    for row, verdict, _ in verdicts:
        start = started.get(row["nl_backendpid"])
        if verdict != STALE and start is not None:
            result = plpy.execute(plans["record"], [
                cluster, row["nl_nodeid"], row["nl_conncnt"], row["nl_backendpid"], start])
            adopted += result.nrows()
    return adopted
