-- Event trigger (ddl_command_end): when Slony creates or replaces a cluster's cleanupnodelock() or
-- terminatenodeconnections() (UPDATE FUNCTIONS, init cluster, store node), patch that cluster
-- again in the same transaction;
-- when Slony re-comments the function, keep that comment as the one uninstall puts back. A failure here must never fail Slony's command: it becomes a WARNING
-- that says what to run, and a row in repatch_log. Our own DDL is known by its result (a function
-- or a comment that is already ours), not by a setting that any session could forge.
CREATE OR REPLACE FUNCTION slony_nodelock.repatch_on_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
-- lock_timeout: Slony's command must not hang on us. As a SET clause it holds only while this
-- function runs; PostgreSQL puts the caller's value back when it returns.
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $fn$
DECLARE
    v_cmd record;
    v_comment text;
    v_error text;
    v_label text;
    v_fix text;
BEGIN
    FOR v_cmd IN
        SELECT DISTINCT c.schema_name, c.command_tag, c.object_type, c.objid, p.proname AS function_name
          FROM pg_catalog.pg_event_trigger_ddl_commands() c
          JOIN pg_catalog.pg_proc p ON p.oid = c.objid
         WHERE c.object_type = 'function'
           AND c.objid = slony_nodelock.patched_function_oid(c.schema_name::pg_catalog.name, p.proname)
    LOOP
        CONTINUE WHEN v_cmd.schema_name NOT IN (SELECT s FROM slony_nodelock.clusters() s);
        -- Slony's SQL creates terminateNodeConnections() long before cleanupNodelock(): a cluster
        -- still missing one of them, with no saved copy, is patched when the last one comes.
        CONTINUE WHEN EXISTS (
            SELECT FROM slony_nodelock.patched_functions() f
             WHERE slony_nodelock.patched_function_oid(v_cmd.schema_name, f.function_name) IS NULL
               AND NOT EXISTS (SELECT FROM slony_nodelock.stock_function s
                                WHERE s.cluster_schema = v_cmd.schema_name AND s.function_name = f.function_name));
        -- patch_cluster's own CREATE (or a restored dump's copy of ours): the function is ours.
        CONTINUE WHEN v_cmd.command_tag <> 'COMMENT' AND EXISTS (
            SELECT FROM pg_catalog.pg_proc p WHERE p.oid = v_cmd.objid AND p.prosrc LIKE '# slony-nodelock %');
        BEGIN
            IF v_cmd.command_tag = 'COMMENT' THEN
                -- Slony comments its functions after creating them: on our replacement, that
                -- comment is Slony's to keep for uninstall, and ours goes back on.
                CONTINUE WHEN NOT EXISTS (
                    SELECT FROM pg_catalog.pg_proc p WHERE p.oid = v_cmd.objid AND p.prosrc LIKE '# slony-nodelock %');
                v_comment := pg_catalog.obj_description(v_cmd.objid, 'pg_proc');
                CONTINUE WHEN COALESCE(v_comment LIKE 'slony-nodelock:%', false);
                UPDATE slony_nodelock.stock_function SET comment = v_comment
                 WHERE cluster_schema = v_cmd.schema_name AND function_name = v_cmd.function_name;
                PERFORM slony_nodelock.keep_slony_functions(v_cmd.schema_name);
                PERFORM slony_nodelock.comment_patched(v_cmd.schema_name, v_cmd.function_name);
                CONTINUE;
            END IF;
            PERFORM slony_nodelock.patch_cluster(v_cmd.schema_name);
            INSERT INTO slony_nodelock.repatch_log (cluster_schema, command_tag, succeeded)
            VALUES (v_cmd.schema_name, v_cmd.command_tag, true);
        -- query_canceled too: a statement_timeout in Slony's session, or a cancel, ends the
        -- re-patch but must not fail Slony's command.
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            v_error := SQLERRM;
            -- The words by the expressions, not the functions, which a damaged kit may lack:
            -- failing here would skip saving below.
            v_label := @cluster_label(v_cmd.schema_name)@;
            v_fix := @install_command('install.sql')@;
            IF v_cmd.command_tag = 'COMMENT' THEN
                -- The function is still ours; only the comment uninstall would put back is older.
                RAISE WARNING 'slony-nodelock: could not keep the comment Slony just gave %() of % for uninstall to put back (%); the cluster stays patched, nothing to do',
                    v_cmd.function_name, v_label, v_error;
            ELSE
                RAISE WARNING 'slony-nodelock: Slony''s % of %() in database % went through, but % is NOT patched any more: re-patching it failed (%). %; patch again with: %',
                    v_cmd.command_tag, v_cmd.function_name, pg_catalog.quote_ident(pg_catalog.current_database()),
                    v_label, v_error,
                    CASE v_cmd.function_name
                        WHEN 'cleanupnodelock' THEN 'slon here now runs Slony''s stock cleanupnodelock(), which can refuse to start after a reboot'
                        ELSE 'a failover here now runs Slony''s stock terminatenodeconnections(), which signals whatever holds a lock row''s PID' END,
                    v_fix;
            END IF;
            BEGIN
                -- Still remember what Slony just loaded, so that uninstall puts back this version.
                PERFORM slony_nodelock.save_stock_function(v_cmd.schema_name, v_cmd.function_name);
                PERFORM slony_nodelock.keep_slony_functions(v_cmd.schema_name);
                INSERT INTO slony_nodelock.repatch_log (cluster_schema, command_tag, succeeded, detail)
                VALUES (v_cmd.schema_name, v_cmd.command_tag, false, v_error);
            EXCEPTION WHEN OTHERS OR query_canceled THEN
                NULL;  -- the WARNING above already told the operator
            END;
        END;
    END LOOP;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    RAISE WARNING 'slony-nodelock: the re-patch trigger failed in database % (%), and the DDL that fired it went through; whether each cluster is still patched is told by: select * from slony_nodelock.verify()',
        pg_catalog.quote_ident(pg_catalog.current_database()), SQLERRM;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.repatch_on_ddl() IS 'slony-nodelock: event trigger re-patching clusters whose cleanupnodelock() or terminatenodeconnections() Slony recreated';
