-- A dry run of the judgement, for an operator: one row per sl_nodelock row of every cluster, or
-- of the one named (by its schema, _name, or by the name slonik uses), with what was recorded,
-- what holds the PID now (and, when it is no backend, what /proc says it is), and the verdict and
-- reason cleanupNodelock() would give. The same Python decides; this deletes and locks nothing.
-- VOLATILE: it reads /proc. SECURITY DEFINER so that pg_monitor members see every backend's
-- details; command lines of other processes are sensitive, so only pg_monitor may call it.
CREATE OR REPLACE FUNCTION slony_nodelock.status(p_cluster name DEFAULT NULL)
RETURNS TABLE (cluster name, node int4, conncnt int4, pid int4, recorded_backend_start timestamptz,
               holder_backend_type text, holder_datname text, holder_application_name text,
               holder_backend_start timestamptz, os_process text, verdict text, reason text)
LANGUAGE plpython3u SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
logic = SD.get("slony_nodelock.logic")
if logic is None:
    logic = SD["slony_nodelock.logic"] = {}
    exec(plpy.execute("select slony_nodelock.logic_source() as source")[0]["source"], logic)
status = logic["status"]
clusters = [r["c"] for r in plpy.execute("select c from slony_nodelock.clusters() c")]
if p_cluster is not None:
    wanted = [c for c in clusters if c == p_cluster] or [c for c in clusters if c == "_" + p_cluster]
    if not wanted:
        database = logic["untrusted_text"](plpy, "pg_catalog.current_database()::pg_catalog.text")
        logic["fail"](plpy, "no Slony cluster %s in database %s; the clusters here are listed by: select cluster from slony_nodelock.verify()"
                      % (logic["quote_identifier"](p_cluster), database if database is not None else "(its name is not valid text here)"), "42704")
    clusters = wanted
rows = []
for cluster in clusters:
    rows.extend(status(plpy, SD, cluster))
return rows
$fn$;
COMMENT ON FUNCTION slony_nodelock.status(name) IS 'slony-nodelock: what cleanupNodelock() would decide for each lock row now, and why';
REVOKE EXECUTE ON FUNCTION slony_nodelock.status(name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION slony_nodelock.status(name) TO pg_monitor;
