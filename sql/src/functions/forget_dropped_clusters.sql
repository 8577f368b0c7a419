-- Event trigger (sql_drop): when a cluster schema or its sl_nodelock is dropped (slonik's
-- uninstall node drops the schema), forget what we kept about it, so that nothing of ours points
-- at a schema that is gone. Never fails the DROP. SECURITY DEFINER: any role's DROP fires it, and
-- only we may write our tables.
CREATE OR REPLACE FUNCTION slony_nodelock.forget_dropped_clusters()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_dropped record;
BEGIN
    FOR v_dropped IN
        SELECT d.object_type, d.object_name, d.schema_name FROM pg_catalog.pg_event_trigger_dropped_objects() d
         WHERE d.object_type = 'schema' OR (d.object_type = 'table' AND d.object_name = 'sl_nodelock')
    LOOP
        IF v_dropped.object_type = 'schema' THEN
            DELETE FROM slony_nodelock.stock_function WHERE cluster_schema = v_dropped.object_name;
            DELETE FROM slony_nodelock.repatch_log WHERE cluster_schema = v_dropped.object_name;
            DELETE FROM slony_nodelock.lock_identity WHERE cluster_schema = v_dropped.object_name;
        ELSE
            DELETE FROM slony_nodelock.lock_identity WHERE cluster_schema = v_dropped.schema_name;
        END IF;
    END LOOP;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'slony-nodelock: could not forget a dropped cluster (%); check with: select * from slony_nodelock.verify()', SQLERRM;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.forget_dropped_clusters() IS 'slony-nodelock: event trigger forgetting dropped cluster schemas';
