# The database side of each cluster's replacement cleanupnodelock() and of
# slony_nodelock.adopt_live_locks(), run inside PL/Python: one query brings every lock row with
# its row version and the identity recorded for its key, a second what pg_stat_activity says
# about their PIDs; liveness.judge() decides.
#
# sql/generate.py pastes this file after liveness.py into the same source text, so the names
# imported below are already defined there; the import line itself is dropped when pasting.
# plpy is passed in rather than used as a global so that this file can also be imported with a
# stand-in.
from slony_nodelock.liveness import (  # embed: drop
    LIVE, NO_SUCH_PROCESS, STALE, boot_time, cleanup_notice, cluster_label, command_line,  # embed: drop
    describe_process, describe_row, judge, printable, process_start, quoted, real_uid,  # embed: drop
    record_matches)  # embed: drop

# Where make install puts the scripts, so that every message can name them by an absolute path.
# sql/generate.py (and through it the Makefile and the SQL) reads it from here.
SHARE_DIR = "/usr/share/slony-nodelock"


def install_command(database, script="install.sql"):
    """The psql command that runs one of the kit's scripts (install.sql: installs, or repairs) in
    database, quoted for the shell it is pasted into (slony_nodelock.install_command() quotes the
    same way in SQL)."""
    import shlex
    return "psql -v ON_ERROR_STOP=1 -d %s -f %s/%s" % (shlex.quote(database), SHARE_DIR, script)

# backend_start as integer microseconds since the epoch, cheap for Python to compare. date_part()
# gives float8 seconds, whose resolution at today's epoch (~0.25 us) keeps every microsecond
# apart, and rounds back to the exact microsecond; extract() would give numeric, ten times slower.
MICROSECONDS = "(pg_catalog.date_part('epoch', %s) * 1000000)::pg_catalog.int8"
# A transaction id as an integer (xid has no cast to a number).
XID = "%s::pg_catalog.text::pg_catalog.int8"

# Each lock row with its row version.
LOCKS = (
    "select l.nl_nodeid, l.nl_conncnt, l.nl_backendpid, " + XID % "l.xmin" + " as xmin"
    " from %s l"
)
# The same lock Slony's own version takes, so that two cleanups cannot interleave.
FOR_UPDATE = " for update of l"

# Every identity record, of any cluster in the database, naming one of the given PIDs: the
# record of a row itself (whether it describes this row version is liveness.record_matches()'s
# call), and those showing that a backend took another lock. Missing when our schema, our table
# or a function this query calls is gone (DROP SCHEMA ... CASCADE leaves the cluster's function
# behind): then every row is judged as unrecorded, which never removes a holder that could be slon's.
# proves_taken, for another cluster's records: the trigger saw this backend insert that row, and
# the row is still there as it was. For this cluster's, judge() tells from the rows it has.
RECORDS = (
    "select i.cluster_schema::pg_catalog.text as cluster, i.nl_nodeid, i.nl_conncnt, i.pid,"
    " " + MICROSECONDS % "i.backend_start" + " as backend_start, " + XID % "i.row_xmin" + " as row_xmin,"
    " i.adopted, case when i.cluster_schema = $2 then null else not i.adopted and"
    " slony_nodelock.record_is_current(i.cluster_schema, i.nl_nodeid, i.nl_conncnt, i.pid, i.row_xmin)"
    " end as proves_taken"
    " from slony_nodelock.lock_identity i"
    " where i.pid in (select pg_catalog.unnest($1::pg_catalog.int4[]))"  # hashed, not a scan of $1 per record
)

# What pg_stat_activity says about the given PIDs. pg_stat_get_activity() is what the view reads;
# calling it directly skips the view's join to pg_authid, which we do not need.
BACKENDS = (
    "select a.pid, d.datname::pg_catalog.text as datname, a.backend_type, a.application_name,"
    " " + MICROSECONDS % "a.backend_start" + " as backend_start"
    " from pg_catalog.pg_stat_get_activity(null) a"
    " left join pg_catalog.pg_database d on d.oid = a.datid"
    " where a.pid = any ($1)"
)


def fail(plpy, message, sqlstate):
    """Raise an ERROR that reads 'slony-nodelock: ' + message, in one line. PL/Python names an
    uncaught exception's class before its message ('plpy.Error: ...'), so the class raised is
    named slony-nodelock; sqlstate is the ERROR's SQLSTATE."""
    error = type("slony-nodelock", (plpy.Error,), {"__module__": "builtins"})(message)
    error.sqlstate = sqlstate
    raise error


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
            "locks": plpy.prepare(LOCKS % table),
            "locks" + FOR_UPDATE: plpy.prepare(LOCKS % table + FOR_UPDATE),
            "backends": plpy.prepare(BACKENDS, ["int4[]"]),
            "fresh_activity": plpy.prepare("select pg_catalog.pg_stat_clear_snapshot()"),
            "delete": plpy.prepare(
                "delete from %s where (nl_nodeid, nl_conncnt) in"
                " (select * from rows from (pg_catalog.unnest($1::pg_catalog.int4[]),"
                " pg_catalog.unnest($2::pg_catalog.int4[])))" % table, ["int4[]", "int4[]"]),
        }
        cache[("plans", cluster)] = plans
    return plans


def _prepared(plpy, plans, name, query, types=()):
    """The statement kept under name in plans, prepared on first use: those that only some calls
    need, or that read our own tables (which may be gone; see _records)."""
    if name not in plans:
        plans[name] = plpy.prepare(query, list(types))
    return plans[name]


def _current_user(plpy):
    """The role running this, for messages that name it (asked only when one is raised)."""
    return plpy.execute("select current_user::pg_catalog.text as u")[0]["u"]


def _lock_rows(plpy, plan, arguments, refusal, cluster):
    """plan's lock rows, FOR UPDATE; a role that may not lock them gets one line, refusal, naming
    it and the cluster, as Slony's own functions need a superuser too (killBackend)."""
    try:
        return plpy.execute(plan, arguments)
    except plpy.spiexceptions.InsufficientPrivilege:
        fail(plpy, refusal % (quoted(_current_user(plpy)), cluster_label(cluster)), "42501")
    except plpy.spiexceptions.ReadOnlySqlTransaction:
        if plpy.execute("select pg_catalog.pg_is_in_recovery() as r")[0]["r"]:
            fail(plpy, "%s is on a hot standby here, where no lock can be changed; nothing changed: "
                 "slon runs against the primary" % cluster_label(cluster), "25006")
        fail(plpy, "the locks of %s cannot be changed in a read-only transaction; nothing changed: "
             "run it in a read-write session" % cluster_label(cluster),
             "25006")


def _records(plpy, plans, cluster, pids):
    """The identity records naming pids; none, with a WARNING, when our table is gone. Prepared
    on first use, and again after a failure, so that the table coming back is noticed."""
    try:
        return plpy.execute(_prepared(plpy, plans, "records", RECORDS, ["int4[]", "name"]), [pids, cluster])
    except (plpy.spiexceptions.UndefinedTable, plpy.spiexceptions.InvalidSchemaName,
            plpy.spiexceptions.UndefinedColumn, plpy.spiexceptions.UndefinedFunction) as missing:
        plans.pop("records", None)
        database = plans["database"]
        # install.sql recreates a function, or the whole schema; a table its migrations are
        # recorded as having made it does not, so then only uninstalling first helps.
        table_damaged = not isinstance(missing, plpy.spiexceptions.UndefinedFunction) and plpy.execute(
            "select pg_catalog.to_regnamespace('slony_nodelock') is not null as present")[0]["present"]
        repair = ("%s, then %s" % (install_command(database, "uninstall.sql"), install_command(database))
                  if table_damaged else install_command(database))
        plpy.warning(
            "slony-nodelock: %s cannot read the kit's lock records (%s), so its locks are judged "
            "without them: a row whose PID a backend named like slon's holds is kept (a NOTICE says so), "
            "every other stale row is still removed; repair the kit with: %s" % (cluster_label(cluster), missing, repair))
        return []


def os_processes(pids):
    """What each PID is on the database host, for PIDs that are no backend: ({pid: description or
    NO_SUCH_PROCESS}, {pid: why it could not be told}). Reads only /proc/stat and /proc/<pid>/
    (stat, status, cmdline) for integer PIDs, and never fails: /proc may be missing (another OS)
    or hidden (hidepid)."""
    found, unknown = {}, {}
    if not pids:
        return found, unknown  # the usual case: every PID is a backend; no /proc read at all
    import os
    import pwd
    try:
        with open("/proc/stat") as f:
            boot = boot_time(f.read())
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError) as e:
        return found, dict((pid, "/proc cannot be read here (%s)" % e) for pid in pids)
    for pid in pids:
        if pid is None or pid <= 0:
            found[pid] = NO_SUCH_PROCESS
            continue
        try:
            os.kill(pid, 0)  # signal 0 is never delivered: only asks whether the PID exists
        except ProcessLookupError:
            found[pid] = NO_SUCH_PROCESS
            continue
        except (PermissionError, OverflowError):
            pass
        base = "/proc/%d/" % pid
        try:
            # As bytes: the command name in them is whatever bytes the process chose.
            with open(base + "stat", "rb") as f:
                stat = f.read().decode("utf-8", "backslashreplace")
            with open(base + "status", "rb") as f:
                status = f.read().decode("utf-8", "backslashreplace")
            with open(base + "cmdline", "rb") as f:
                cmdline = f.read()
            uid = real_uid(status)
            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:
                user = str(uid)
            found[pid] = describe_process(command_line(cmdline, stat), user, process_start(stat, boot, ticks))
        except FileNotFoundError:
            found[pid] = NO_SUCH_PROCESS  # it exited since kill(pid, 0)
        except (OSError, ValueError, IndexError) as e:
            unknown[pid] = "%s cannot be read (%s)" % (base, e)
    return found, unknown


def _judged(plpy, plans, cluster, locks):
    """(lock row, verdict, reason, adoptable) for each lock row, the backends looked at, the
    records read, and what /proc says of the PIDs that are no backend ({pid: why not} for those
    it could not tell)."""
    pids = list(set(row["nl_backendpid"] for row in locks))
    records = _records(plpy, plans, cluster, pids)
    # pg_stat_activity is read once per transaction and then kept; a holder that connected since
    # the caller's transaction first looked would be missing, and its live lock judged stale.
    plpy.execute(plans["fresh_activity"])
    backends = plpy.execute(plans["backends"], [pids])
    listed = set(b["pid"] for b in backends)
    described, unknown = os_processes([pid for pid in pids if pid not in listed])
    # Named only when pg_stat_activity hides something from it: one query fewer per cleanup.
    role = _current_user(plpy) if any(b["backend_type"] is None for b in backends) else None
    judged = judge(locks, records, backends, plans["caller"], plans["database"], cluster, described, role)
    return judged, backends, records, described, unknown


def cleanup(plpy, cache, cluster):
    """What cleanupNodelock() does: delete every stale lock row, under the same FOR UPDATE as
    Slony's own version, with a NOTICE for each deletion and each row kept only for lack of proof."""
    plans = _plans(plpy, cache, cluster)
    locks = _lock_rows(plpy, plans["locks" + FOR_UPDATE], [], "role %s may not clean up the locks of %s; "
                       "nothing changed: run cleanupNodelock() as a superuser, as slon does", cluster)
    if len(locks) == 0:
        return 0
    stale_nodes, stale_conncnts = [], []
    for row, verdict, reason, _ in _judged(plpy, plans, cluster, locks)[0]:
        if verdict == STALE:
            stale_nodes.append(row["nl_nodeid"])
            stale_conncnts.append(row["nl_conncnt"])
        notice = cleanup_notice(cluster, row, verdict, reason)
        if notice is not None:
            plpy.notice(notice)
    if stale_nodes:
        plpy.execute(plans["delete"], [stale_nodes, stale_conncnts])
    return 0


RECORD = (
    "insert into slony_nodelock.lock_identity"
    " (cluster_schema, nl_nodeid, nl_conncnt, pid, backend_start, row_xmin, adopted)"
    " select $1, $2, $3, a.pid, a.backend_start, $6::pg_catalog.text::pg_catalog.xid, true"
    " from pg_catalog.pg_stat_get_activity($4) a"
    " where " + MICROSECONDS % "a.backend_start" + " = $5"
    " on conflict (cluster_schema, nl_nodeid, nl_conncnt) do nothing"
)


def adopt(plpy, cache, cluster):
    """Record the identity of every row kept only for lack of a record whose holder carries
    exactly the name slon gives that connection (rows taken before install), unless another row,
    of this cluster or another, names the same PID. Deletes nothing: a stale row is left for the
    next cleanup. Returns the number of identities recorded."""
    plans = _plans(plpy, cache, cluster)
    locks = plpy.execute(plans["locks"])
    if len(locks) == 0:
        return 0
    judged, backends = _judged(plpy, plans, cluster, locks)[:2]
    started = dict((b["pid"], b["backend_start"]) for b in backends)
    contested = set(r["pid"] for r in plpy.execute(
        plpy.prepare("select p as pid from slony_nodelock.lock_pids_elsewhere($1) p", ["name"]), [cluster]))
    seen = set()
    for row in locks:
        if row["nl_backendpid"] in seen:
            contested.add(row["nl_backendpid"])
        seen.add(row["nl_backendpid"])
    record = _prepared(plpy, plans, "record", RECORD, ["name", "int4", "int4", "int4", "int8", "int8"])
    adopted = 0
    for row, _, _, adoptable in judged:
        if adoptable and row["nl_backendpid"] not in contested:
            result = plpy.execute(record, [cluster, row["nl_nodeid"], row["nl_conncnt"],
                                           row["nl_backendpid"], started[row["nl_backendpid"]], row["xmin"]])
            adopted += result.nrows()
    return adopted



def _timestamp(microseconds):
    """An ISO 8601 UTC timestamp that PostgreSQL reads back exactly, or None."""
    if microseconds is None:
        return None
    import datetime
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (epoch + datetime.timedelta(microseconds=microseconds)).isoformat()


def status(plpy, cache, cluster):
    """What cleanupNodelock() would decide for each lock row of the cluster now, and why, with what
    holds each PID: the same judge() on the same inputs, without deleting or locking anything."""
    plans = _plans(plpy, cache, cluster)
    locks = plpy.execute(plans["locks"])
    if len(locks) == 0:
        return []
    judged, backends, records, described, unknown = _judged(plpy, plans, cluster, locks)
    by_pid = dict((b["pid"], b) for b in backends)
    own = dict(((r["nl_nodeid"], r["nl_conncnt"]), r) for r in records if r["cluster"] == cluster)
    out = []
    for row, verdict, reason, _ in judged:
        pid = row["nl_backendpid"]
        holder = by_pid.get(pid) or {}
        record = own.get((row["nl_nodeid"], row["nl_conncnt"]))
        if not record_matches(row, record):
            record = None
        if pid in unknown:
            reason = "%s; %s" % (reason, unknown[pid])
        out.append({
            "cluster": cluster, "node": row["nl_nodeid"], "conncnt": row["nl_conncnt"], "pid": pid,
            "recorded_backend_start": _timestamp(record["backend_start"] if record else None),
            "holder_backend_type": holder.get("backend_type"),
            "holder_datname": holder.get("datname"),
            "holder_application_name": holder.get("application_name"),
            "holder_backend_start": _timestamp(holder.get("backend_start")),
            "os_process": described.get(pid),
            "verdict": verdict, "reason": reason,
        })
    return out


# The opt-out: ALTER DATABASE db SET slony_nodelock.failover_terminate = 'stock', read at each call.
FAILOVER_SETTING = "slony_nodelock.failover_terminate"


def terminate(plpy, cache, cluster, failed_node):
    """What terminateNodeConnections(failed_node) does at failover: end the failed node's
    connections and delete its lock rows. Slony's killBackend(pid, 'TERM') sends signal 0 (its
    signal-name compare has length 0), so stock terminates nothing; had it worked, it would also
    have signalled whatever process reused a stale row's PID. Here only a holder judged LIVE, the
    very client backend that took the lock, is terminated, with pg_terminate_backend()."""
    plans = _plans(plpy, cache, cluster)
    failed_locks = _prepared(plpy, plans, "failed_locks",
                             LOCKS % plans["table"] + " where l.nl_nodeid = $1" + FOR_UPDATE, ["int4"])
    locks = _lock_rows(plpy, failed_locks, [failed_node], "role %s may not end the connections of a failed "
                       "node of %s; nothing changed: fail over as a superuser, as slonik does", cluster)
    setting = (plpy.execute("select pg_catalog.current_setting('%s', true) as v" % FAILOVER_SETTING)[0]["v"]
               or "").strip().lower()
    if setting not in ("", "stock"):
        plpy.warning("slony-nodelock: %s is '%s', which means nothing; only 'stock' changes what a failover "
                     "does, so the kit's own termination runs for %s; set it to 'stock', or RESET it where it was set "
                     "(ALTER DATABASE or ALTER ROLE)" % (FAILOVER_SETTING, printable(setting), cluster_label(cluster)))
    if setting == "stock":
        kill = plpy.prepare("select %s.killBackend($1, 'TERM')" % plpy.quote_ident(cluster), ["int4"])
        for row in locks:
            plpy.execute(kill, [row["nl_backendpid"]])
    elif len(locks) > 0:
        judged, backends, records = _judged(plpy, plans, cluster, locks)[:3]
        started = dict((b["pid"], b["backend_start"]) for b in backends)
        adopted = set((r["nl_nodeid"], r["nl_conncnt"]) for r in records if r["cluster"] == cluster and r["adopted"])
        # One statement from check to signal: the PID must still be the backend judged.
        end_backend = _prepared(plpy, plans, "end_backend",
                                "select pg_catalog.pg_terminate_backend(a.pid) as ended"
                                " from pg_catalog.pg_stat_get_activity($1) a"
                                " where " + MICROSECONDS % "a.backend_start" + " = $2", ["int4", "int8"])
        for row, verdict, reason, _ in judged:
            pid = row["nl_backendpid"]
            if verdict == LIVE and pid == plans["caller"]:
                reason = "it is the backend running this failover"
            elif verdict == LIVE and (row["nl_nodeid"], row["nl_conncnt"]) in adopted:
                reason = "%s, but only by install's adoption, which is no proof" % reason
            elif verdict == LIVE:
                ended = plpy.execute(end_backend, [pid, started[pid]])
                done = "terminated" if len(ended) == 1 and ended[0]["ended"] else "could not terminate"
                plpy.notice("slony-nodelock: failover: %s the holder of the %s: %s" % (
                    done, describe_row(cluster, row), reason))
                continue
            plpy.notice("slony-nodelock: failover: did not signal the holder of the %s: %s" % (
                describe_row(cluster, row), reason))
    if len(locks) > 0:
        plpy.execute(plans["delete"], [[r["nl_nodeid"] for r in locks], [r["nl_conncnt"] for r in locks]])
    return 0
