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
    LIVE, NO_SUCH_PROCESS, STALE, boot_time, moment, cleanup_notice, cluster_label, command_line,  # embed: drop
    describe_process, describe_row, judge, printable, process_start, program_name, quoted,  # embed: drop
    real_uid, record_matches)  # embed: drop

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
    " i.application_name, i.adopted, case when i.cluster_schema = $2 then null else not i.adopted and"
    " slony_nodelock.record_is_current(i.cluster_schema, i.nl_nodeid, i.nl_conncnt, i.pid, i.row_xmin)"
    " end as proves_taken"
    " from slony_nodelock.lock_identity i"
    " where i.pid in (select pg_catalog.unnest($1::pg_catalog.int4[]))"  # hashed, not a scan of $1 per record
)

# What pg_stat_activity says about the given PIDs. pg_stat_get_activity() is what the view reads;
# calling it directly skips the view's joins to pg_database and pg_authid: the database is told
# by its OID, and a name is read (DATABASE_NAME) only for a message that needs one.
BACKENDS = (
    "select a.pid, a.datid, a.backend_type, a.application_name,"
    " " + MICROSECONDS % "a.backend_start" + " as backend_start"
    " from pg_catalog.pg_stat_get_activity(null) a"
    " where a.pid = any ($1)"
)
DATABASE_NAME = "(select d.datname::pg_catalog.text from pg_catalog.pg_database d where d.oid = $1)"


# Text that the kit does not control never comes into Python as text. PL/Python turns text into
# a Python string unchecked in a UTF8 database, and a string that is not valid UTF-8 crashes the
# whole server (SIGSEGV); in a SQL_ASCII database it fails the call instead. Other databases' names
# and role names live in shared catalogs, so a session of any database may have written them in
# its own encoding (a CREATEDB role can make a SQL_ASCII database, and from there a database named
# with any bytes); settings can be set from there too; in a SQL_ASCII database no name is checked
# at all. untrusted_text() asks PostgreSQL for such a value as UTF-8 bytes: convert_to() checks
# them in the database's encoding and converts them with PostgreSQL's own tables (never Python's
# codecs, whose tables differ), in a statement of its own, so that bytes that are not valid here
# are a caught error, never a failed cleanup. Messages then print other databases' and roles'
# names in printable ASCII, which converts to any encoding. application_name needs none of this:
# PostgreSQL keeps it to printable ASCII (check_application_name), in every release it supports.
def untrusted_text(plpy, expression, types=(), arguments=()):
    """The text of expression, or None where it is not valid in this database's encoding."""
    try:
        found = plpy.execute(plpy.prepare("select pg_catalog.convert_to(%s, 'UTF8') as b" % expression,
                                          list(types)), list(arguments))
    except (plpy.spiexceptions.CharacterNotInRepertoire, plpy.spiexceptions.UntranslatableCharacter):
        return None
    raw = found[0]["b"] if len(found) == 1 else None
    return None if raw is None else bytes(raw).decode("utf-8", "backslashreplace")


def quote_identifier(name):
    """name as a quoted SQL identifier written in ASCII only: PL/Python hands query text to the
    server as Python's UTF-8 bytes, whatever the database's encoding, so a name with other
    characters would name another schema (LATIN1) or fail and leave PL/Python unusable (WIN1252).
    A U&"..." identifier spells them as code points, which PostgreSQL 13 and later convert to any
    encoding."""
    if all(" " <= ch <= "~" for ch in name):
        return '"%s"' % name.replace('"', '""')
    spelled = []
    for ch in name:
        if ch == "\\":
            spelled.append("\\\\")
        elif ch == '"':
            spelled.append('""')
        elif " " <= ch <= "~":
            spelled.append(ch)
        elif ord(ch) <= 0xFFFF:
            spelled.append("\\%04X" % ord(ch))
        else:
            spelled.append("\\+%06X" % ord(ch))
    return 'U&"%s"' % "".join(spelled)


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
        table = "%s.sl_nodelock" % quote_identifier(cluster)
        me = plpy.execute("select pg_catalog.pg_backend_pid() as pid, d.oid from pg_catalog.pg_database d"
                          " where d.datname = pg_catalog.current_database()")[0]
        database = untrusted_text(plpy, "pg_catalog.current_database()::pg_catalog.text")
        plans = {
            "table": table,
            "caller": me["pid"],
            # Repair commands name it; one that is not valid text here cannot be typed anyway.
            "database": database if database is not None else "<the database with OID %d>" % me["oid"],
            "database_oid": me["oid"],
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
    """The role running this, for messages that name it (asked only when one is raised), in
    printable ASCII: a role's name is written from any database."""
    role = untrusted_text(plpy, "current_user::pg_catalog.text")
    if role is None:
        return "<the role with OID %d, whose name is not valid text here>" % plpy.execute(
            "select r.oid from pg_catalog.pg_roles r where r.rolname = current_user")[0]["oid"]
    return printable(role)


def _lock_rows(plpy, plans, plan, arguments, refusal, cluster):
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
            plpy.spiexceptions.UndefinedColumn, plpy.spiexceptions.UndefinedFunction,
            plpy.spiexceptions.InsufficientPrivilege) as missing:
        plans.pop("records", None)
        if isinstance(missing, plpy.spiexceptions.InsufficientPrivilege):
            plpy.warning(
                "slony-nodelock: role %s may not read the kit's lock records, so the locks of %s are judged "
                "without them: a row whose PID a backend named like slon's holds is kept (a NOTICE says so), every "
                "other stale row is still removed; run cleanupNodelock() as a superuser, as slon does"
                % (quoted(_current_user(plpy)), cluster_label(cluster)))
            return []
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
    """What each PID is on the database host, for PIDs that are no backend: ({pid: description by
    program name, or NO_SUCH_PROCESS}, {pid: description with the whole command line}, {pid: why
    it could not be told}). Only status() shows command lines: they can hold secrets, and the
    short description goes into NOTICEs, which every log keeps. Reads only /proc/stat and
    /proc/<pid>/ (stat, status, cmdline) for integer PIDs, and never fails: /proc may be missing
    (another OS) or hidden (hidepid)."""
    found, full, unknown = {}, {}, {}
    if not pids:
        return found, full, unknown  # the usual case: every PID is a backend; no /proc read at all
    import os
    import pwd
    try:
        with open("/proc/stat") as f:
            boot = boot_time(f.read())
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError) as e:
        return found, full, dict((pid, "/proc cannot be read here (%s)" % e) for pid in pids)
    for pid in pids:
        if pid is None or pid <= 0:
            found[pid] = full[pid] = NO_SUCH_PROCESS
            continue
        try:
            os.kill(pid, 0)  # signal 0 is never delivered: only asks whether the PID exists
        except ProcessLookupError:
            found[pid] = full[pid] = NO_SUCH_PROCESS
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
            started = process_start(stat, boot, ticks)
            found[pid] = describe_process(program_name(stat), user, started)
            full[pid] = describe_process(command_line(cmdline, stat), user, started)
        except FileNotFoundError:
            found[pid] = full[pid] = NO_SUCH_PROCESS  # it exited since kill(pid, 0)
        except (OSError, ValueError, IndexError) as e:
            unknown[pid] = "%s cannot be read (%s)" % (base, e)
    return found, full, unknown


def _judged(plpy, plans, cluster, locks):
    """(lock row, verdict, reason, adoptable) for each lock row, the backends looked at, the
    records read, and what /proc says of the PIDs that are no backend (by program name, with the
    command line, and {pid: why not} for those it could not tell)."""
    pids = list(set(row["nl_backendpid"] for row in locks))
    records = _records(plpy, plans, cluster, pids)
    # pg_stat_activity is read once per transaction and then kept; a holder that connected since
    # the caller's transaction first looked would be missing, and its live lock judged stale.
    plpy.execute(plans["fresh_activity"])
    backends = list(plpy.execute(plans["backends"], [pids]))
    _name_databases(plpy, plans, backends)
    listed = set(b["pid"] for b in backends)
    described, full, unknown = os_processes([pid for pid in pids if pid not in listed])
    # Named only when pg_stat_activity hides something from it: one query fewer per cleanup.
    role = _current_user(plpy) if any(b["backend_type"] is None for b in backends) else None
    judged = judge(locks, records, backends, plans["caller"], plans["database_oid"], cluster, described, role)
    return judged, backends, records, full, unknown


def _name_databases(plpy, plans, backends):
    """Sets each backend's datname, for messages: this database's name, or another's in printable
    ASCII, None where it is not valid text here (asked only when some backend is of another
    database, so a cleanup usually asks nothing)."""
    names = {}
    for datid in set(b["datid"] for b in backends if b["datid"] is not None and b["datid"] != plans["database_oid"]):
        name = untrusted_text(plpy, DATABASE_NAME, ["oid"], [datid])
        names[datid] = None if name is None else printable(name)
    for b in backends:
        b["datname"] = plans["database"] if b["datid"] == plans["database_oid"] else names.get(b["datid"])


def cleanup(plpy, cache, cluster):
    """What cleanupNodelock() does: delete every stale lock row, under the same FOR UPDATE as
    Slony's own version, with a NOTICE for each deletion and each row kept only for lack of proof."""
    plans = _plans(plpy, cache, cluster)
    locks = _lock_rows(plpy, plans, plans["locks" + FOR_UPDATE], [], "role %s may not clean up the locks of %s; "
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
    " (cluster_schema, nl_nodeid, nl_conncnt, pid, backend_start, row_xmin, application_name, adopted)"
    " select $1, $2, $3, a.pid, a.backend_start, $6::pg_catalog.text::pg_catalog.xid, a.application_name, true"
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
    locks = _lock_rows(plpy, plans, failed_locks, [failed_node], "role %s may not end the connections of a failed "
                       "node of %s; nothing changed: fail over as a superuser, as slonik does", cluster)
    # A setting's value is text the kit does not control (ALTER ROLE ... SET from any database).
    setting = untrusted_text(plpy, "COALESCE(pg_catalog.current_setting('%s', true), '')" % FAILOVER_SETTING)
    setting = "(a value that is not valid text here)" if setting is None else setting.strip().lower()
    if setting not in ("", "stock"):
        plpy.warning("slony-nodelock: %s is '%s', which means nothing; only 'stock' changes what a failover "
                     "does, so the kit's own termination runs for %s; set it to 'stock', or RESET it where it was set "
                     "(ALTER DATABASE or ALTER ROLE)" % (FAILOVER_SETTING, printable(setting), cluster_label(cluster)))
    if setting == "stock":
        kill = plpy.prepare("select %s.killBackend($1, 'TERM')" % quote_identifier(cluster), ["int4"])
        for row in locks:
            plpy.execute(kill, [row["nl_backendpid"]])
    elif len(locks) > 0:
        # Judged beside every other row of the cluster, read without locking them: a backend that
        # a session pooler handed on may since have taken another node's row, which makes its
        # row of the failed node stale (liveness.judge); only the failed node's rows are acted on.
        taken = set((r["nl_nodeid"], r["nl_conncnt"]) for r in locks)
        others = [r for r in plpy.execute(plans["locks"]) if (r["nl_nodeid"], r["nl_conncnt"]) not in taken]
        judged, backends, records = _judged(plpy, plans, cluster, list(locks) + others)[:3]
        judged = [j for j in judged if (j[0]["nl_nodeid"], j[0]["nl_conncnt"]) in taken]
        started = dict((b["pid"], b["backend_start"]) for b in backends)
        adopted = set((r["nl_nodeid"], r["nl_conncnt"]) for r in records if r["cluster"] == cluster and r["adopted"])
        # The last check and the signal in one statement, on activity read afresh: what was judged
        # above is the snapshot pg_stat_get_activity() keeps for the whole transaction, and the
        # holder may have ended since (NOTICEs to a slow client can take a while), with another
        # backend on its PID. The snapshot is cleared just before, so this statement reads anew.
        end_backend = _prepared(plpy, plans, "end_backend",
                                "select " + MICROSECONDS % "a.backend_start" + " as backend_start,"
                                " case when " + MICROSECONDS % "a.backend_start" + " = $2"
                                " then pg_catalog.pg_terminate_backend(a.pid) else false end as ended"
                                " from pg_catalog.pg_stat_get_activity($1) a", ["int4", "int8"])
        for row, verdict, reason, _ in judged:
            pid = row["nl_backendpid"]
            if pid == plans["caller"]:
                reason = "it is the backend running this failover"
            elif verdict == LIVE and (row["nl_nodeid"], row["nl_conncnt"]) in adopted:
                reason = "%s, but only by install's adoption, which is no proof" % reason
            elif verdict == LIVE:
                plpy.execute(plans["fresh_activity"])
                now = plpy.execute(end_backend, [pid, started[pid]])
                if len(now) == 1 and now[0]["ended"]:
                    plpy.notice("slony-nodelock: failover: terminated the holder of the %s: %s" % (
                        describe_row(cluster, row), reason))
                    continue
                if len(now) == 0:
                    reason = ("it was judged live, but by the time of the signal pid %d was no backend any more: "
                              "the holder had ended by itself" % pid)
                elif now[0]["backend_start"] != started[pid]:
                    reason = ("it was judged live, but by the time of the signal pid %d was a backend started %s, "
                              "not the holder, started %s, which had ended: nothing was signalled" % (
                                  pid, moment(now[0]["backend_start"]) if now[0]["backend_start"] is not None
                                  else "at a time hidden from this role", moment(started[pid])))
                else:
                    reason = "%s, but pg_terminate_backend() did not end it (see the server log)" % reason
            plpy.notice("slony-nodelock: failover: did not signal the holder of the %s: %s" % (
                describe_row(cluster, row), reason))
    if len(locks) > 0:
        plpy.execute(plans["delete"], [[r["nl_nodeid"] for r in locks], [r["nl_conncnt"] for r in locks]])
    return 0
