# Who really holds a Slony sl_nodelock row: the pure decision, with no database access.
#
# The same source runs in two places: pasted by sql/generate.py into slony_nodelock.logic_source(),
# the Python that each cluster's replacement cleanupnodelock() is built from and that
# adopt_live_locks() loads, and imported as slony_nodelock.liveness by the unit tests. So it keeps
# to plain functions and builtin types: no __future__, no classes, and the standard library only,
# imported inside the function that needs it.
#
# It also words what the kit tells the operator about a lock: each message says what happened,
# whether slon can start, and the one thing to do, if any (tests/test_messages.py holds the texts).
#
# Inputs are mappings, the shape plpy.execute() and psycopg's dict_row both return:
#   lock row:  {"nl_nodeid", "nl_conncnt", "nl_backendpid", "xmin"}; xmin names the row version
#   identity:  {"cluster", "nl_nodeid", "nl_conncnt", "pid", "backend_start", "row_xmin",
#              "application_name", "adopted", "proves_taken"}, recorded by a trigger when the row
#              version row_xmin was
#              inserted into the cluster's sl_nodelock (row_xmin None: made by 0.2.0 or earlier,
#              before records were bound to a row version), or by install's adoption (adopted:
#              a judgement, not a sighting). proves_taken (another cluster's records only; for
#              this cluster's, judge() tells from the rows): made by the trigger, and its row is
#              still there as recorded, so the backend took that row and no other.
#   backend:   {"pid", "datid", "datname", "backend_type", "application_name", "backend_start"},
#              one per row of pg_stat_activity; datid is the database's OID, which is what is
#              compared, and datname its name for messages only (escaped where it is not valid
#              text: see plpy_glue.RAW), or None
# backend_start values are microseconds since the epoch and xmin values transaction ids, both
# integers: exact, and cheap to compare.

LOGIC_VERSION = "2"

CLIENT_BACKEND = "client backend"
SLON_PREFIX = "slon."
OWN_SLON_CONNECTION = "slon.local_listen"

LIVE = "live"
STALE = "stale"
# Live, but only because we cannot tell: the caller is told why.
UNSURE = "unsure"


def moment(epoch_microseconds, precise=True):
    """'2026-11-28 09:52:59.123456 UTC', for messages: the date, because a lock often outlives a
    midnight, and microseconds when precise, because two backends' start times can differ by less
    than a second. Without precise, to the second: /proc gives a process's start in clock ticks."""
    import datetime
    try:
        at = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=epoch_microseconds)
    except OverflowError:
        # PostgreSQL's timestamps reach the year 294276, Python's only 9999: a clock set that far
        # must still get its message, never an exception that stops slon's cleanup.
        return "%d microseconds after 1970-01-01 00:00:00 UTC" % epoch_microseconds
    return at.strftime("%Y-%m-%d %H:%M:%S.%f UTC" if precise else "%Y-%m-%d %H:%M:%S UTC")


def quoted(name):
    """name in double quotes, as SQL quotes an identifier, with control characters escaped so
    that no name can forge a log line. Other characters stay: a name from the catalog is in the
    database's encoding already."""
    text = "".join(ch if ch >= " " and ch != "\x7f" else ch.encode("unicode_escape").decode("ascii")
                   for ch in name or "")
    return '"%s"' % text.replace('"', '""')


def cluster_label(schema):
    """'cluster "prod" (schema "_prod")': the name slonik's scripts and slon's logs use, and the
    schema Slony made for it (the name with a leading underscore), so that either can be searched
    for. slony_nodelock.cluster_label() words it the same way in SQL."""
    if schema is None:
        return "this cluster"
    name = schema[1:] if schema.startswith("_") and len(schema) > 1 else schema
    return "cluster %s (schema %s)" % (quoted(name), quoted(schema))


def describe_row(schema, row):
    """'lock row (node 1, conncnt 0, pid 2225) of cluster "prod" (schema "_prod")'."""
    pid = row["nl_backendpid"]
    return "lock row (node %d, conncnt %d, pid %s) of %s" % (
        row["nl_nodeid"], row["nl_conncnt"], "NULL" if pid is None else pid, cluster_label(schema))


def process_start(stat_text, boot_epoch_seconds, ticks_per_second):
    """Start time, in microseconds since the epoch, of the process whose /proc/<pid>/stat text is
    given: field 22 counts clock ticks since boot. The command name (field 2) is in parentheses
    and may itself hold spaces and parentheses, so the fields are counted after its last ')'."""
    fields = stat_text[stat_text.rindex(")") + 2:].split()
    ticks = int(fields[22 - 3])
    return boot_epoch_seconds * 1000000 + ticks * 1000000 // ticks_per_second


def boot_time(proc_stat_text):
    """The boot time, in seconds since the epoch, from /proc/stat's btime line."""
    for line in proc_stat_text.splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise ValueError("no btime line in /proc/stat")


def real_uid(status_text):
    """The real user id from /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise ValueError("no Uid line in /proc/<pid>/status")


MAX_COMMAND = 200


def printable(text):
    """text as plain ASCII, control characters and every other byte escaped (\\n, \\xff,
    \\u20ac): any OS user can choose a command line, and it must neither forge a log line nor
    fail to convert into the database's encoding."""
    return "".join(ch if " " <= ch <= "~" else ch.encode("unicode_escape").decode("ascii") for ch in text)


def program_name(stat_text):
    """The process's program, as the kernel names it (/proc/<pid>/stat field 2: the executable's
    base name, at most 15 bytes), made printable. Messages name only this: a command line can
    carry secrets (a --password=...), and messages go to every log; status() alone shows more."""
    return printable(stat_text[stat_text.index("(") + 1:stat_text.rindex(")")])


def command_line(cmdline_bytes, stat_text):
    """What ps shows, made printable and cut at MAX_COMMAND characters: the arguments joined by
    spaces, or [name] for a process without any."""
    arguments = [a for a in cmdline_bytes.split(b"\0") if a]
    if arguments:
        command = printable(b" ".join(arguments).decode("utf-8", "backslashreplace"))
    else:
        command = "[%s]" % program_name(stat_text)
    if len(command) > MAX_COMMAND:
        command = command[:MAX_COMMAND - 3] + "..."
    return command


def describe_process(command, user, started):
    """'"svlogd" (user postgres, started 2026-11-28 09:52:59 UTC)', for messages (command: the program
    name), or with the whole command line for status()."""
    return '"%s" (user %s, started %s)' % (command, printable(user), moment(started, precise=False))


NO_SUCH_PROCESS = "no such process"


def record_matches(row, identity):
    """Whether identity was recorded for this very row version.

    Only the trigger keeps records in step with rows, and triggers can be off for a while
    (DISABLE TRIGGER, pg_restore --disable-triggers, a damaged install). A record left from an
    earlier row with the same key and PID would make the backend now holding that PID look like
    an impostor; binding the record to the row's xmin rules that out. A record that does not
    match counts as no record."""
    return (identity is not None and row is not None and identity["pid"] == row["nl_backendpid"]
            and identity["row_xmin"] is not None and identity["row_xmin"] == row["xmin"])


def _is_digits(text):
    return text.isdigit() and text.isascii()


def is_registering_connection(name):
    """Whether name is one slon gives a connection that calls registerNodeConnection() (Slony
    2.2: remote_listen.c, remote_worker.c): slon.node_N_listen, slon.copy_set_N or
    slon.origin_N_provider_N."""
    if name is None or not name.startswith(SLON_PREFIX):
        return False
    parts = name[len(SLON_PREFIX):].split("_")
    if len(parts) == 3 and parts[0] == "node" and parts[2] == "listen":
        return _is_digits(parts[1])
    if len(parts) == 3 and parts[:2] == ["copy", "set"]:
        return _is_digits(parts[2])
    if len(parts) == 4 and parts[0] == "origin" and parts[2] == "provider":
        return _is_digits(parts[1]) and _is_digits(parts[3])
    return False


def carries_slons_exact_name(row, name):
    """Whether name is exactly the one slon gives the connection that takes such a row: its own
    local_listen for nl_conncnt 0, a registering connection otherwise."""
    if row["nl_conncnt"] == 0:
        return name == OWN_SLON_CONNECTION
    return is_registering_connection(name)


def xid_newer(a, b):
    """Whether transaction id a is later than b, in 32-bit wraparound order (as PostgreSQL
    compares xids)."""
    return a != b and (a - b) % 2**32 < 2**31


def judge_row(row, identity, backend, caller_pid, database, took_other=None, os_process=None, role=None,
              took_later=None):
    """(verdict, reason) for one lock row.

    identity is the record kept for the row's key, or None; it counts only if it matches the row
    (record_matches). backend is the pg_stat_activity entry for the row's PID, or None when no
    such process is listed. took_other names another lock row, of any cluster in the database,
    that this very backend (same PID and start time) is recorded to have taken, or is None.
    os_process says what the PID is on the database host when it is no backend (see
    describe_process, or NO_SUCH_PROCESS), or is None when that is unknown. role is the role
    judging, named when pg_stat_activity hides what it needs. took_later names another lock row
    that the trigger saw this very backend take after this row's recorded taking, or is None.
    database is the OID of the
    database the cleanup runs in: names are for people, and another database's name need not
    even be valid text here.
    """
    pid = row["nl_backendpid"]
    if pid is None or pid <= 0:
        # No process has such a PID (kill() would even take 0 and -N for process groups, which is
        # how Slony's own cleanup keeps such a row forever).
        return STALE, "pid %s is no process id (%s), so no backend holds this lock" % (
            "NULL" if pid is None else pid, "NULL" if pid is None else "not positive")
    recorded = record_matches(row, identity)
    if recorded and identity.get("adopted") and took_other is not None:
        recorded = False  # a guess at install, refuted by what the trigger saw
    if backend is None:
        # pg_stat_activity lists every backend of the server, of every database.
        if os_process == NO_SUCH_PROCESS:
            return STALE, "no process has pid %d any more, so the backend that took the lock has ended" % pid
        if os_process is not None:
            return STALE, "pid %d is now %s, which is no backend of this server" % (pid, os_process)
        return STALE, "pid %d is no backend of this server (what holds it on the host could not be read)" % pid
    if pid == caller_pid:
        # Slony 2.2's slon never runs a cleanup on a connection that holds a lock: local_listen
        # cleans up before it inserts its row, and the periodic cleanup (cleanupEvent(), on the
        # local_cleanup connection) and failover run on connections that take none. So a call
        # from the very backend that took the row means the session that took it has ended, and
        # a session pooler (pgbouncer in session mode) has handed its server connection on.
        if recorded and backend["backend_start"] == identity["backend_start"]:
            return STALE, ("pid %d is the backend running this cleanup; it took the lock in an earlier client "
                           "session that has ended (a session pooler such as pgbouncer handed its server "
                           "connection on), and slon never cleans up on a connection that holds a lock" % pid)
        return STALE, "pid %d is the backend running this cleanup, not a lock holder" % pid
    if backend["backend_type"] is None:
        return UNSURE, (
            "pid %d is a backend, but pg_stat_activity hides its type and start time from role %s "
            "(GRANT pg_read_all_stats TO %s, or run the cleanup as a superuser, as slon does)"
            % (pid, quoted(role or "?"), quoted(role or "?"))
        )
    if backend["backend_type"] != CLIENT_BACKEND:
        return STALE, "pid %d is this server's %s, not a client backend" % (pid, backend["backend_type"])
    if backend["datid"] != database:
        other = backend.get("datname")
        return STALE, "pid %d is a client backend of database %s, not of this one" % (
            pid, quoted(other) if other is not None
            else "with OID %s (its name is not valid text in this database)" % backend["datid"])

    if recorded:
        if backend["backend_start"] == identity["backend_start"]:
            if took_later is not None:
                # slon takes one lock per connection: the backend took another since, so a
                # session pooler handed it to another client, which may even carry the same name
                # (every remote slon names its listen connection slon.node_N_listen).
                return STALE, ("pid %d is the client backend that took the lock, but it took the %s after it, "
                               "and slon takes one lock per connection: the session that took this one has ended "
                               "(a session pooler such as pgbouncer handed its server connection on)" % (pid, took_later))
            taken_as = identity.get("application_name")
            if taken_as is not None and backend["application_name"] != taken_as:
                # slon names a connection once, as it opens it; a session pooler resets the name
                # (DISCARD ALL) when it takes the server connection back from a client that left.
                return STALE, ("pid %d is the client backend that took the lock, but it now carries the name %s "
                               "where it took the lock as %s, and slon never renames a connection: the session "
                               "that took it has ended (a session pooler such as pgbouncer keeps its server "
                               "connection)" % (pid, quoted(backend["application_name"] or ""), quoted(taken_as)))
            return LIVE, "pid %d is the client backend that took the lock" % pid
        return STALE, "pid %d is a client backend started %s, %s the lock was taken by one started %s" % (
            pid, moment(backend["backend_start"]),
            "after" if backend["backend_start"] > identity["backend_start"] else "while",
            moment(identity["backend_start"]))

    # No record for this row version: the row predates the install, or was written while the
    # identity triggers were off. Slony 2.2's slon names every connection it makes slon.*, so only
    # the name slon gives such a holder can keep the row.
    if took_other is not None:
        # slon takes one lock per connection: local_listen its node's row, each registering
        # connection one registerNodeConnection() row.
        return STALE, ("pid %d is the client backend that took the %s, and slon takes one "
                       "lock per connection" % (pid, took_other))
    name = backend["application_name"] or ""
    if name == "":
        return STALE, ("pid %d is a client backend with no application_name, and slon names every "
                       "connection it makes" % pid)
    if not name.startswith(SLON_PREFIX):
        return STALE, "pid %d is a client backend named %s, not a slon connection" % (pid, quoted(name))
    if row["nl_conncnt"] == 0 and name != OWN_SLON_CONNECTION:
        return STALE, "pid %d is slon's %s connection, not the %s one that takes a node's own lock" % (
            pid, quoted(name), quoted(OWN_SLON_CONNECTION))
    return UNSURE, (
        "pid %d is a client backend named %s, as slon's would be, and no record says which backend "
        "took this row (it is older than the install, or was written while the identity triggers "
        "were off), so it may be the slon that took it" % (pid, quoted(name))
    )


RUNBOOK = 'the slony-nodelock README, "A kept lock"'


def cleanup_notice(schema, row, verdict, reason):
    """The NOTICE cleanupNodelock() raises for a row it removes (STALE) or keeps for lack of proof
    (UNSURE); None for a row it keeps as LIVE, which is the normal case and says nothing. Only a
    node's own row (conncnt 0) can stop a slon: every other connection takes a new conncnt."""
    if verdict == STALE:
        return "slony-nodelock: removed the stale %s: %s; it no longer stands in slon's way, nothing to do" % (
            describe_row(schema, row), reason)
    if verdict != UNSURE:
        return None
    if row["nl_conncnt"] != 0:
        return ("slony-nodelock: kept the %s for lack of proof that it is stale: %s; it stops no slon, "
                "since each connection takes a new conncnt, so nothing to do" % (describe_row(schema, row), reason))
    return ("slony-nodelock: kept the %s for lack of proof that it is stale: %s; while it stays, slon for "
            "node %d cannot start (duplicate key value violates unique constraint \"sl_nodelock-pkey\"): "
            "if that slon is stopped and still fails so, remove the row as %s says" % (
                describe_row(schema, row), reason, row["nl_nodeid"], RUNBOOK))


def adoptable(row, identity, backend, verdict):
    """Whether install may record the live holder's identity for a row that has none: only a row
    kept for lack of a record whose holder is a visible client backend carrying exactly the name
    slon gives that connection."""
    return (verdict == UNSURE and not record_matches(row, identity) and backend is not None
            and backend["backend_start"] is not None
            and carries_slons_exact_name(row, backend["application_name"]))


def judge(rows, records, backends, caller_pid, database, cluster=None, os_processes=None, role=None):
    """[(row, verdict, reason, adoptable)] for every lock row of cluster, in the order given.

    records: identity records of any cluster in the database (at least those naming the rows'
    PIDs), any order; backends: the pg_stat_activity snapshot; database: this database's OID; os_processes: {pid: what it is on
    the host} for PIDs that are no backend, where known; role: the role judging (see judge_row).
    """
    os_processes = os_processes or {}
    rows_by_key = {}
    for row in rows:
        rows_by_key[(row["nl_nodeid"], row["nl_conncnt"])] = row
    own = {}
    takers = {}
    for record in records:
        key = (record["nl_nodeid"], record["nl_conncnt"])
        if record.get("cluster") == cluster:
            own[key] = record
            proves = not record.get("adopted") and record_matches(rows_by_key.get(key), record)
        else:
            proves = record.get("proves_taken", True)
        if proves:
            takers.setdefault((record["pid"], record["backend_start"]), []).append(
                (record.get("cluster"), key, record.get("row_xmin")))
    by_pid = {}
    for backend in backends:
        by_pid[backend["pid"]] = backend
    judged = []
    for row in rows:
        key = (row["nl_nodeid"], row["nl_conncnt"])
        identity = own.get(key)
        backend = by_pid.get(row["nl_backendpid"])
        took_other = took_later = None
        recorded = record_matches(row, identity) and not identity.get("adopted")
        if backend is not None:
            for other_cluster, other_key, other_xmin in takers.get((row["nl_backendpid"], backend["backend_start"]), ()):
                if (other_cluster, other_key) == (cluster, key):
                    continue
                other = "lock row (node %d, conncnt %d) of %s" % (
                    other_key[0], other_key[1], cluster_label(other_cluster if other_cluster is not None else cluster))
                if not recorded:
                    took_other = took_other or other
                elif other_xmin is not None and xid_newer(other_xmin, identity["row_xmin"]):
                    took_later = took_later or other
        verdict, reason = judge_row(row, identity, backend, caller_pid, database, took_other,
                                    os_processes.get(row["nl_backendpid"]), role, took_later)
        judged.append((row, verdict, reason, adoptable(row, identity, backend, verdict)))
    return judged
