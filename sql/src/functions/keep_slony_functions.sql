-- Keeps a copy of Slony's own functions (the saved copies in stock_function) inside the cluster's
-- schema, where DROP SCHEMA slony_nodelock CASCADE does not reach, with an sql_drop event trigger
-- that puts one back when a CASCADE takes it while the cluster stays:
--   "<cluster>".slony_nodelock_slony_functions()  the copies (uninstall and install read them when
--                                                  the kit's own table is gone);
--   "<cluster>".slony_nodelock_keeper()            the event trigger's function;
--   event trigger slony_nodelock_keeper_<schema OID>.
-- So that every way of removing the kit leaves slon a cleanupnodelock() to run: DROP SCHEMA
-- slony_nodelock CASCADE and then DROP EXTENSION plpython3u CASCADE would otherwise leave none.
-- Both functions are plpgsql/sql, which PL/Python's removal does not take, and name only the
-- catalog. Slonik's uninstall node drops the schema, and the event trigger with its function.
-- Returns whether anything changed.
CREATE OR REPLACE FUNCTION slony_nodelock.keep_slony_functions(p_cluster name)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_copies text;
    v_keeper text;
    v_changed boolean := false;
    v_oid oid;
    v_trigger name;
    v_fn record;
    v_suffix int4 := 0;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('(%L::name, %L::text, %L::text, %L::name, %L::text)',
               s.function_name, s.function_name OPERATOR(pg_catalog.||) '(' OPERATOR(pg_catalog.||) f.argument_types
               OPERATOR(pg_catalog.||) ')', s.definition, s.owner, s.comment), E',\n' ORDER BY s.function_name)
      INTO v_copies
      FROM slony_nodelock.stock_function s
      JOIN slony_nodelock.patched_functions() f ON f.function_name OPERATOR(pg_catalog.=) s.function_name
     WHERE s.cluster_schema OPERATOR(pg_catalog.=) p_cluster;
    IF v_copies IS NULL THEN
        RETURN false;  -- nothing saved yet: nothing to keep
    END IF;
    -- CREATE OR REPLACE keeps a function's owner, and uninstall, install and the keeper run these
    -- as a superuser: a function of these names that a superuser does not own, or that is not as
    -- the kit makes it, goes first.
    FOR v_fn IN SELECT p.oid::pg_catalog.regprocedure AS fn FROM pg_catalog.pg_proc p
                  JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
                 WHERE p.pronamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = p_cluster)
                   AND p.proname IN ('slony_nodelock_slony_functions', 'slony_nodelock_keeper')
                   AND (NOT r.rolsuper OR p.prosecdef OR p.pronargs <> 0) LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION %s CASCADE', v_fn.fn);
        v_changed := true;
    END LOOP;
    v_copies := E'\n-- slony-nodelock @VERSION@: Slony''s own functions of this cluster, as Slony last installed them\n'
                'SELECT * FROM (VALUES ' OPERATOR(pg_catalog.||) v_copies OPERATOR(pg_catalog.||)
                ') c (function_name, signature, definition, owner, comment)' OPERATOR(pg_catalog.||) E'\n';
    v_keeper := pg_catalog.format($keeper$
-- slony-nodelock @VERSION@: puts back Slony's own function of this cluster when a CASCADE took it
-- (DROP EXTENSION plpython3u CASCADE takes the kit's), so that slon and failover keep working.
DECLARE
    v_copy record;
BEGIN
    -- Only a DROP that took one of this cluster's functions along concerns it; and asked first,
    -- from the list of dropped objects alone, so that a role without access to the schema is told nothing.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() d
                    WHERE d.object_type = 'function' AND d.schema_name = %3$L AND NOT d.original
                      AND d.address_names[2] IN ('cleanupnodelock', 'terminatenodeconnections')) THEN
        RETURN;
    END IF;
    IF pg_catalog.to_regclass(%1$L) IS NULL OR NOT EXISTS (
           SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
            WHERE p.oid = pg_catalog.to_regprocedure(pg_catalog.quote_ident(%3$L) OPERATOR(pg_catalog.||) '.slony_nodelock_slony_functions()')
              AND r.rolsuper AND NOT p.prosecdef) THEN
        RETURN;  -- the cluster itself is going, or the copies are not as the kit made them
    END IF;
    FOR v_copy IN
        SELECT c.* FROM %2$I.slony_nodelock_slony_functions() c
         WHERE pg_catalog.to_regprocedure(pg_catalog.quote_ident(%3$L) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) c.signature) IS NULL
           AND EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() d
                        WHERE d.object_type = 'function' AND d.schema_name = %3$L
                          AND d.address_names[2] = c.function_name AND NOT d.original)
    LOOP
        EXECUTE v_copy.definition;
        EXECUTE pg_catalog.format('ALTER FUNCTION %%I.%%s OWNER TO %%I', %3$L, v_copy.signature, v_copy.owner);
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %%I.%%s IS %%L', %3$L, v_copy.signature, v_copy.comment);
        RAISE WARNING 'slony-nodelock: %%() of %% in database %% was dropped by a CASCADE; Slony''s own version is back so that slon and failover keep working, but the cluster is NOT patched until you run %%',
            v_copy.function_name, %4$L, pg_catalog.quote_ident(pg_catalog.current_database()), %5$L;
    END LOOP;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    RAISE WARNING 'slony-nodelock: could not put back Slony''s own functions of %% in database %% (%%); the DROP went through; check the node with: select * from slony_nodelock.verify()',
        %4$L, pg_catalog.quote_ident(pg_catalog.current_database()), SQLERRM;
END
$keeper$, pg_catalog.format('%I.sl_nodelock', p_cluster), p_cluster, p_cluster, @cluster_label(p_cluster)@,
       @install_command('install.sql')@);

    IF pg_catalog.to_regprocedure(pg_catalog.format('%I.slony_nodelock_slony_functions()', p_cluster)) IS NULL
       OR (SELECT p.prosrc FROM pg_catalog.pg_proc p
            WHERE p.oid = pg_catalog.to_regprocedure(pg_catalog.format('%I.slony_nodelock_slony_functions()', p_cluster))) <> v_copies THEN
        EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION %I.slony_nodelock_slony_functions() '
                                  'RETURNS TABLE (function_name name, signature text, definition text, owner name, comment text) '
                                  'LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS %L', p_cluster, v_copies);
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %I.slony_nodelock_slony_functions() IS %L', p_cluster,
                                  'slony-nodelock: Slony''s own cleanupnodelock() and terminatenodeconnections() of this cluster, kept for uninstall');
        v_changed := true;
    END IF;
    v_oid := pg_catalog.to_regprocedure(pg_catalog.format('%I.slony_nodelock_keeper()', p_cluster));
    IF v_oid IS NULL OR (SELECT p.prosrc FROM pg_catalog.pg_proc p WHERE p.oid = v_oid) <> v_keeper THEN
        EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION %I.slony_nodelock_keeper() RETURNS event_trigger '
                                  'LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = ''5s'' AS %L',
                                  p_cluster, v_keeper);
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %I.slony_nodelock_keeper() IS %L', p_cluster,
                                  'slony-nodelock: event trigger putting back Slony''s own functions of this cluster when a CASCADE takes them');
        v_oid := pg_catalog.to_regprocedure(pg_catalog.format('%I.slony_nodelock_keeper()', p_cluster));
        v_changed := true;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger e WHERE e.evtfoid = v_oid) THEN
        -- Named after the schema's OID; a restored dump can bring a trigger of that name along.
        v_trigger := 'slony_nodelock_keeper_' OPERATOR(pg_catalog.||) (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = p_cluster);
        WHILE EXISTS (SELECT FROM pg_catalog.pg_event_trigger e
                       WHERE e.evtname = v_trigger OPERATOR(pg_catalog.||) CASE WHEN v_suffix = 0 THEN '' ELSE '_' OPERATOR(pg_catalog.||) v_suffix END) LOOP
            v_suffix := v_suffix + 1;
        END LOOP;
        v_trigger := v_trigger OPERATOR(pg_catalog.||) CASE WHEN v_suffix = 0 THEN '' ELSE '_' OPERATOR(pg_catalog.||) v_suffix END;
        EXECUTE pg_catalog.format('CREATE EVENT TRIGGER %I ON sql_drop EXECUTE PROCEDURE %I.slony_nodelock_keeper()', v_trigger, p_cluster);
        v_changed := true;
    END IF;
    -- ALWAYS, as the kit's other event triggers: whatever session_replication_role the DROP runs under.
    FOR v_trigger IN SELECT e.evtname FROM pg_catalog.pg_event_trigger e WHERE e.evtfoid = v_oid AND e.evtenabled <> 'A' LOOP
        EXECUTE pg_catalog.format('ALTER EVENT TRIGGER %I ENABLE ALWAYS', v_trigger);
    END LOOP;
    RETURN v_changed;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.keep_slony_functions(name) IS 'slony-nodelock: keep a copy of Slony''s own functions in the cluster schema, with an event trigger that puts them back';
-- Changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.keep_slony_functions(name) FROM PUBLIC;
