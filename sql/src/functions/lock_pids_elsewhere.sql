-- The PIDs named by the lock rows of every other cluster in the database. A backend takes one
-- lock, so a PID named in two clusters is a holder of one of them at most, and install must not
-- guess which: adopt_live_locks() leaves such rows unrecorded.
CREATE OR REPLACE FUNCTION slony_nodelock.lock_pids_elsewhere(p_cluster name)
RETURNS SETOF int4
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_cluster name;
BEGIN
    FOR v_cluster IN SELECT c FROM slony_nodelock.clusters() c WHERE c <> p_cluster LOOP
        RETURN QUERY EXECUTE pg_catalog.format('SELECT l.nl_backendpid FROM %I.sl_nodelock l', v_cluster);
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.lock_pids_elsewhere(name) IS 'slony-nodelock: PIDs named by the lock rows of the other clusters in this database';
REVOKE EXECUTE ON FUNCTION slony_nodelock.lock_pids_elsewhere(name) FROM PUBLIC;
