-- Trigger on each cluster's sl_nodelock: records who took a new lock row and forgets the record
-- when the row goes or changes hands. SECURITY DEFINER because slon may run as a role that cannot
-- write our table.
CREATE OR REPLACE FUNCTION slony_nodelock.track_lock_identity()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM slony_nodelock.lock_identity i
         WHERE i.cluster_schema = TG_TABLE_SCHEMA AND i.nl_nodeid = OLD.nl_nodeid AND i.nl_conncnt = OLD.nl_conncnt;
    ELSIF TG_OP = 'UPDATE' THEN
        -- A row whose key or PID was changed by hand no longer names the backend we recorded.
        IF (OLD.nl_nodeid, OLD.nl_conncnt, OLD.nl_backendpid) IS DISTINCT FROM (NEW.nl_nodeid, NEW.nl_conncnt, NEW.nl_backendpid) THEN
            DELETE FROM slony_nodelock.lock_identity i
             WHERE i.cluster_schema = TG_TABLE_SCHEMA AND i.nl_nodeid = OLD.nl_nodeid AND i.nl_conncnt = OLD.nl_conncnt;
        END IF;
    ELSIF NEW.nl_backendpid = pg_catalog.pg_backend_pid() THEN
        -- Only our own backend's start time is known for sure; a row naming another PID gets none.
        INSERT INTO slony_nodelock.lock_identity AS i (cluster_schema, nl_nodeid, nl_conncnt, pid, backend_start)
        SELECT TG_TABLE_SCHEMA, NEW.nl_nodeid, NEW.nl_conncnt, a.pid, a.backend_start
          FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a
         WHERE a.backend_start IS NOT NULL
        ON CONFLICT (cluster_schema, nl_nodeid, nl_conncnt)
        DO UPDATE SET pid = EXCLUDED.pid, backend_start = EXCLUDED.backend_start;
    END IF;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.track_lock_identity() IS 'slony-nodelock: trigger recording the backend (pid, backend_start) that takes each sl_nodelock row';
-- A trigger function that writes our table with our rights: nobody else may attach it.
REVOKE EXECUTE ON FUNCTION slony_nodelock.track_lock_identity() FROM PUBLIC;
