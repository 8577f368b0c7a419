-- Event trigger (sql_drop): when a cluster schema or its sl_nodelock is dropped (slonik's
-- uninstall node drops the schema), forget what we kept about it, so that nothing of ours points
-- at a schema that is gone. When a CASCADE takes a cluster's cleanupnodelock() with it while the
-- cluster stays (DROP EXTENSION plpython3u CASCADE takes every patched one), slon could not
-- start, so Slony's saved function is put back in the same transaction, with a WARNING. A
-- function dropped by name is left dropped: whoever did it may be about to create another.
-- It fires on every DROP in the database, the application's too, so it says nothing unless a
-- cluster is concerned: a dropped sl_nodelock table (a cluster schema's DROP lists it too) or a
-- dropped cleanupnodelock() or terminatenodeconnections(). Never fails the DROP, and waits at most
-- 5 s for a lock (the SET clause holds only while it runs). SECURITY DEFINER: any role's DROP
-- fires it, and only we may write our tables.
CREATE OR REPLACE FUNCTION slony_nodelock.forget_dropped_clusters()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $fn$
DECLARE
    v_dropped record;
    v_fn_now text;
    v_concerned boolean := false;
    v_label text;
    v_fix text;
    v_without text;
    v_with text;
BEGIN
    -- Schemas first, with no word: one the kit knows is forgotten; any other has nothing to forget.
    BEGIN
        -- Only a schema that held something of the kit's (its triggers, its functions): any role
        -- may drop a schema of its own, and touching our tables for it would let that role hold
        -- them locked (and uninstall and upgrades up) for as long as its transaction lasts.
        FOR v_dropped IN SELECT d.object_name FROM pg_catalog.pg_event_trigger_dropped_objects() d
                          WHERE d.object_type = 'schema' AND EXISTS (
                                SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() k
                                 WHERE k.schema_name = d.object_name
                                   AND ((k.object_type = 'trigger' AND k.object_identity LIKE 'slony\_nodelock\_%')
                                        OR (k.object_type = 'function' AND k.address_names[2] IN
                                            ('cleanupnodelock', 'terminatenodeconnections', 'slony_nodelock_keeper', 'slony_nodelock_slony_functions')))) LOOP
            DELETE FROM slony_nodelock.stock_function WHERE cluster_schema = v_dropped.object_name;
            DELETE FROM slony_nodelock.repatch_log WHERE cluster_schema = v_dropped.object_name;
            DELETE FROM slony_nodelock.lock_identity WHERE cluster_schema = v_dropped.object_name;
        END LOOP;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        NULL;  -- a cluster schema also lists its sl_nodelock, handled (and reported) below
    END;
    FOR v_dropped IN
        SELECT d.object_type, d.object_name, d.schema_name, d.original, d.address_names[2] AS function_name
          FROM pg_catalog.pg_event_trigger_dropped_objects() d
         WHERE (d.object_type = 'table' AND d.object_name = 'sl_nodelock' AND NOT d.is_temporary
                AND EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() k
                             WHERE k.schema_name = d.schema_name AND k.object_type = 'trigger'
                               AND k.object_identity LIKE 'slony\_nodelock\_%'))
            OR (d.object_type = 'function' AND (d.address_names[2], pg_catalog.array_to_string(d.address_args, ','))
                -- address_args spells types as format_type() does: integer, not int4
                IN (SELECT f.function_name::text,
                           COALESCE((SELECT pg_catalog.string_agg(t::pg_catalog.regtype::text, ',')
                                       FROM pg_catalog.unnest(pg_catalog.string_to_array(NULLIF(f.argument_types, ''), ',')) t), '')
                      FROM slony_nodelock.patched_functions() f))
    LOOP
        v_concerned := true;
        IF v_dropped.object_type = 'table' THEN
            DELETE FROM slony_nodelock.lock_identity WHERE cluster_schema = v_dropped.schema_name;
        ELSIF v_dropped.schema_name IN (SELECT c FROM slony_nodelock.clusters() c) THEN
            -- The words by the expressions, not the functions, which a damaged kit may lack: a
            -- message that fails would undo the restore below, and slon could not start.
            v_label := @cluster_label(v_dropped.schema_name)@;
            v_fix := @install_command('install.sql')@;
            v_without := CASE v_dropped.function_name WHEN 'cleanupnodelock' THEN 'slon cannot start on this node'
                              ELSE 'a failover cannot run on this node' END;
            v_with := CASE v_dropped.function_name WHEN 'cleanupnodelock' THEN 'slon keeps working'
                           ELSE 'a failover keeps working' END;
            IF v_dropped.original THEN
                RAISE WARNING 'slony-nodelock: %() of % in database % was dropped; % until it is back: run %',
                    v_dropped.function_name, v_label, pg_catalog.quote_ident(pg_catalog.current_database()), v_without, v_fix;
            ELSIF slony_nodelock.restore_stock_function(v_dropped.schema_name, v_dropped.function_name) THEN
                -- Putting it back sets off the re-patch trigger, which patches it if it can.
                SELECT p.prosrc INTO v_fn_now FROM pg_catalog.pg_proc p
                 WHERE p.oid = slony_nodelock.patched_function_oid(v_dropped.schema_name, v_dropped.function_name);
                IF v_fn_now LIKE '# slony-nodelock %' THEN
                    RAISE WARNING 'slony-nodelock: %() of % in database % was dropped by a CASCADE; the kit put it back, patched, so % and nothing is to do',
                        v_dropped.function_name, v_label, pg_catalog.quote_ident(pg_catalog.current_database()), v_with;
                ELSE
                    RAISE WARNING 'slony-nodelock: %() of % in database % was dropped by a CASCADE; Slony''s own version is back so that %, but the cluster is NOT patched until you run %',
                        v_dropped.function_name, v_label, pg_catalog.quote_ident(pg_catalog.current_database()), v_with, v_fix;
                END IF;
            ELSE
                RAISE WARNING 'slony-nodelock: %() of % in database % was dropped by a CASCADE and no copy of Slony''s was saved; % until you run slonik "update functions" for it',
                    v_dropped.function_name, v_label, pg_catalog.quote_ident(pg_catalog.current_database()), v_without;
            END IF;
        END IF;
    END LOOP;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    IF v_concerned THEN
        RAISE WARNING 'slony-nodelock: could not handle a dropped cluster object in database % (%); the DROP went through; check the node with: select * from slony_nodelock.verify()',
            pg_catalog.quote_ident(pg_catalog.current_database()), SQLERRM;
    END IF;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.forget_dropped_clusters() IS 'slony-nodelock: event trigger forgetting dropped cluster schemas and putting back a dropped cleanupnodelock()';
