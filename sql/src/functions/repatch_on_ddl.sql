-- Event trigger (ddl_command_end): when Slony creates or replaces a cluster's cleanupnodelock()
-- (UPDATE FUNCTIONS, init cluster, store node), or recreates its sl_nodelock, patch that cluster
-- again in the same transaction; when Slony re-comments the function, keep that comment as the
-- one uninstall puts back. A failure here must never fail Slony's command: it becomes a WARNING
-- that says what to run, and a row in repatch_log. Our own DDL is known by its result (a function
-- or a comment that is already ours), not by a setting that any session could forge.
CREATE OR REPLACE FUNCTION slony_nodelock.repatch_on_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_cmd record;
    v_comment text;
    -- How long (ms) the trigger may wait for a lock: Slony's command must not hang on us.
    c_max_wait constant int8 := 5000;
BEGIN
    -- Local to this function: its SET clause makes PostgreSQL undo the change when it returns.
    IF (SELECT s.setting::int8 FROM pg_catalog.pg_settings s WHERE s.name = 'lock_timeout') NOT BETWEEN 1 AND c_max_wait THEN
        PERFORM pg_catalog.set_config('lock_timeout', c_max_wait::text, true);
    END IF;
    FOR v_cmd IN
        SELECT DISTINCT c.schema_name, c.command_tag, c.object_type, c.objid
          FROM pg_catalog.pg_event_trigger_ddl_commands() c
         WHERE (c.object_type = 'function' AND EXISTS (
                   SELECT FROM pg_catalog.pg_proc p
                    WHERE p.oid = c.objid AND p.proname = 'cleanupnodelock' AND p.pronargs = 0))
            OR (c.object_type = 'table' AND EXISTS (
                   SELECT FROM pg_catalog.pg_class r WHERE r.oid = c.objid AND r.relname = 'sl_nodelock'))
    LOOP
        CONTINUE WHEN v_cmd.schema_name NOT IN (SELECT s FROM slony_nodelock.clusters() s);
        -- A new sl_nodelock without its functions yet: the function's creation will follow.
        CONTINUE WHEN v_cmd.object_type = 'table' AND NOT EXISTS (
            SELECT FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident(v_cmd.schema_name))
               AND p.proname = 'cleanupnodelock' AND p.pronargs = 0);
        -- patch_cluster's own CREATE: the function is ours already.
        CONTINUE WHEN v_cmd.object_type = 'function' AND v_cmd.command_tag <> 'COMMENT' AND EXISTS (
            SELECT FROM pg_catalog.pg_proc p WHERE p.oid = v_cmd.objid AND p.prosrc LIKE '# slony-nodelock %');
        BEGIN
            IF v_cmd.command_tag = 'COMMENT' THEN
                -- Slony comments its functions after creating them: on our replacement, that
                -- comment is Slony's to keep for uninstall, and ours goes back on.
                CONTINUE WHEN v_cmd.object_type <> 'function' OR NOT EXISTS (
                    SELECT FROM pg_catalog.pg_proc p WHERE p.oid = v_cmd.objid AND p.prosrc LIKE '# slony-nodelock %');
                v_comment := pg_catalog.obj_description(v_cmd.objid, 'pg_proc');
                CONTINUE WHEN COALESCE(v_comment LIKE 'slony-nodelock:%', false);
                UPDATE slony_nodelock.stock_function SET comment = v_comment WHERE cluster_schema = v_cmd.schema_name;
                PERFORM slony_nodelock.comment_patched(v_cmd.schema_name);
                CONTINUE;
            END IF;
            PERFORM slony_nodelock.patch_cluster(v_cmd.schema_name);
            INSERT INTO slony_nodelock.repatch_log (cluster_schema, command_tag, succeeded)
            VALUES (v_cmd.schema_name, v_cmd.command_tag, true);
        -- query_canceled too: a statement_timeout in Slony's session must not fail its command.
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            RAISE WARNING 'slony-nodelock: cluster % is NOT patched: re-patching after % failed (%); slon will run Slony''s stock cleanupnodelock() on this node until you run: psql -v ON_ERROR_STOP=1 -d % -f sql/install.sql',
                pg_catalog.quote_ident(v_cmd.schema_name), v_cmd.command_tag, SQLERRM, pg_catalog.current_database();
            BEGIN
                -- Still remember what Slony just loaded, so that uninstall puts back this version.
                PERFORM slony_nodelock.save_stock_function(v_cmd.schema_name);
                INSERT INTO slony_nodelock.repatch_log (cluster_schema, command_tag, succeeded, detail)
                VALUES (v_cmd.schema_name, v_cmd.command_tag, false, SQLERRM);
            EXCEPTION WHEN OTHERS OR query_canceled THEN
                NULL;  -- the WARNING above already told the operator
            END;
        END;
    END LOOP;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    RAISE WARNING 'slony-nodelock: the re-patch trigger failed (%); check this node with: select * from slony_nodelock.verify()', SQLERRM;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.repatch_on_ddl() IS 'slony-nodelock: event trigger re-patching clusters whose cleanupnodelock() or sl_nodelock Slony recreated';
