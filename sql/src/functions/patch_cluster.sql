-- Replaces one cluster's cleanupnodelock() and terminatenodeconnections() with ours (saving
-- Slony's first), and puts the identity triggers on its sl_nodelock. Returns whether anything
-- changed.
CREATE OR REPLACE FUNCTION slony_nodelock.patch_cluster(p_cluster name)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_table regclass := pg_catalog.to_regclass(pg_catalog.format('%I.sl_nodelock', p_cluster));
    v_patch record;
    v_source text;
    v_replaced text[] := '{}';
    v_fn pg_catalog.pg_proc;
    v_lang name;
    v_candidate record;
    v_done text[] := '{}';
    v_triggers_added boolean := false;
    v_forgotten int8;
    v_adopted int4;
    v_recovered text;
    v_present boolean;
BEGIN
    SELECT c.is_cluster, c.why_not INTO v_candidate FROM slony_nodelock.cluster_candidates() c WHERE c.schema_name = p_cluster;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'slony-nodelock: schema % holds no sl_nodelock table, so it is no Slony cluster; nothing changed. The clusters here are listed by: select cluster from slony_nodelock.verify()',
            pg_catalog.quote_ident(p_cluster);
    ELSIF NOT v_candidate.is_cluster THEN
        RAISE EXCEPTION 'slony-nodelock: schema % is not patched: it holds an sl_nodelock table, but %, so Slony did not make it; nothing changed',
            pg_catalog.quote_ident(p_cluster), v_candidate.why_not;
    END IF;
    IF (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = v_table AND NOT a.attisdropped
           AND a.attname IN ('nl_nodeid', 'nl_conncnt', 'nl_backendpid')
           AND a.atttypid = 'pg_catalog.int4'::pg_catalog.regtype) <> 3 THEN
        RAISE EXCEPTION 'slony-nodelock: %.sl_nodelock lacks the int4 columns nl_nodeid, nl_conncnt and nl_backendpid of Slony-I 2.x; nothing changed: the kit supports Slony-I 2.2',
            pg_catalog.quote_ident(p_cluster);
    END IF;

    FOR v_patch IN SELECT f.function_name, f.arguments FROM slony_nodelock.patched_functions() f LOOP
        v_source := slony_nodelock.patched_source(p_cluster, v_patch.function_name);
        SELECT p.* INTO v_fn FROM pg_catalog.pg_proc p
         WHERE p.oid = slony_nodelock.patched_function_oid(p_cluster, v_patch.function_name);
        v_present := FOUND;
        -- Ours (or none) with no saved copy of Slony's, as DROP SCHEMA slony_nodelock CASCADE
        -- leaves it: find Slony's again, or no later removal of the kit could put it back.
        IF (NOT v_present OR v_fn.prosrc LIKE '# slony-nodelock %')
           AND NOT EXISTS (SELECT FROM slony_nodelock.stock_function s
                            WHERE s.cluster_schema = p_cluster AND s.function_name = v_patch.function_name) THEN
            v_recovered := slony_nodelock.recover_stock_function(p_cluster, v_patch.function_name);
            IF v_recovered IS NOT NULL THEN
                v_done := v_done || pg_catalog.format('took Slony''s own %s() from %s, for uninstall to put back', v_patch.function_name, v_recovered);
            ELSIF v_present THEN
                RAISE WARNING 'slony-nodelock: % runs the kit''s %() and no copy of Slony''s own is left (DROP SCHEMA slony_nodelock CASCADE took it), so uninstall could not put Slony''s back; it stays patched: run slonik "update functions" for this node, and the kit saves what Slony loads',
                    slony_nodelock.cluster_label(p_cluster), v_patch.function_name;
            END IF;
        END IF;
        -- Gone (dropped by hand or by a CASCADE) but saved: ours is created from scratch below.
        IF NOT v_present AND NOT EXISTS (SELECT FROM slony_nodelock.stock_function s
                                      WHERE s.cluster_schema = p_cluster AND s.function_name = v_patch.function_name) THEN
            RAISE EXCEPTION 'slony-nodelock: % has no %() and no saved copy of Slony''s; nothing changed. Run slonik "update functions" for this node (the kit then patches it by itself)',
                slony_nodelock.cluster_label(p_cluster), v_patch.function_name;
        END IF;
        SELECT l.lanname INTO v_lang FROM pg_catalog.pg_language l WHERE l.oid = v_fn.prolang;

        -- The re-patch event trigger sees our CREATE and COMMENT too, and knows them by their
        -- result: a function, or a comment, that is already ours.
        IF v_fn.prosrc IS DISTINCT FROM v_source OR v_lang IS DISTINCT FROM 'plpython3u' THEN
            -- Whatever is there now, unless ours, is what Slony installed last.
            PERFORM slony_nodelock.save_stock_function(p_cluster, v_patch.function_name);
            EXECUTE pg_catalog.format(
                'CREATE OR REPLACE FUNCTION %I.%I(%s) RETURNS int4 LANGUAGE plpython3u '
                'SET search_path = pg_catalog, pg_temp AS %L', p_cluster, v_patch.function_name, v_patch.arguments, v_source);
            PERFORM slony_nodelock.comment_patched(p_cluster, v_patch.function_name);
            v_replaced := v_replaced || (v_patch.function_name || '()');
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(v_replaced) > 0 THEN
        v_done := v_done || ('replaced ' || pg_catalog.array_to_string(v_replaced, ' and '));
    END IF;
    IF slony_nodelock.keep_slony_functions(p_cluster) THEN
        v_done := v_done || 'kept a copy of Slony''s own functions in the cluster''s schema'::text;
    END IF;

    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = v_table AND t.tgname = 'slony_nodelock_identity') THEN
        EXECUTE pg_catalog.format('CREATE TRIGGER slony_nodelock_identity AFTER INSERT OR UPDATE OR DELETE ON %s '
                                  'FOR EACH ROW EXECUTE PROCEDURE slony_nodelock.track_lock_identity()', v_table);
        v_triggers_added := true;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = v_table AND t.tgname = 'slony_nodelock_truncate') THEN
        EXECUTE pg_catalog.format('CREATE TRIGGER slony_nodelock_truncate AFTER TRUNCATE ON %s '
                                  'FOR EACH STATEMENT EXECUTE PROCEDURE slony_nodelock.forget_truncated_locks()', v_table);
        v_triggers_added := true;
    END IF;
    IF v_triggers_added THEN
        v_done := v_done || 'added the identity triggers'::text;
    END IF;
    -- ALWAYS: slon's remote worker runs with session_replication_role = replica, which skips
    -- ordinary triggers, and its deletes must still take their identity records along.
    IF EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = v_table AND t.tgenabled <> 'A'
                  AND t.tgname IN ('slony_nodelock_identity', 'slony_nodelock_truncate')) THEN
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER slony_nodelock_identity', v_table);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER slony_nodelock_truncate', v_table);
        IF NOT v_triggers_added THEN  -- new triggers start enabled for origin sessions only
            v_done := v_done || 'enabled the identity triggers ALWAYS again'::text;
        END IF;
    END IF;
    -- Records left behind while the triggers were missing or disabled: the same test as
    -- liveness.record_matches(), a record describes the row with its key, PID and xmin, or none.
    EXECUTE pg_catalog.format(
        'DELETE FROM slony_nodelock.lock_identity i WHERE i.cluster_schema OPERATOR(pg_catalog.=) %L AND NOT EXISTS '
        '(SELECT FROM %s l WHERE l.nl_nodeid OPERATOR(pg_catalog.=) i.nl_nodeid AND l.nl_conncnt OPERATOR(pg_catalog.=) i.nl_conncnt '
        'AND l.nl_backendpid OPERATOR(pg_catalog.=) i.pid AND l.xmin OPERATOR(pg_catalog.=) i.row_xmin)',
        p_cluster, v_table);
    GET DIAGNOSTICS v_forgotten = ROW_COUNT;
    IF v_forgotten > 0 THEN
        v_done := v_done || pg_catalog.format('dropped %s lock record(s) that no longer matched their rows', v_forgotten);
    END IF;

    v_adopted := slony_nodelock.adopt_live_locks(p_cluster);
    IF v_adopted > 0 THEN
        v_done := v_done || pg_catalog.format('adopted %s live lock(s) taken before the install (their holders are recorded now)', v_adopted);
    END IF;
    IF pg_catalog.cardinality(v_done) = 0 THEN
        RAISE NOTICE 'slony-nodelock: % is already patched; nothing changed', slony_nodelock.cluster_label(p_cluster);
    ELSE
        RAISE NOTICE 'slony-nodelock: patched %: %; slon keeps running and uses the kit from its next cleanup, nothing to do',
            slony_nodelock.cluster_label(p_cluster), pg_catalog.array_to_string(v_done, ', ');
    END IF;
    RETURN pg_catalog.cardinality(v_done) > 0;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.patch_cluster(name) IS 'slony-nodelock: replace one cluster''s cleanupnodelock() and terminatenodeconnections(), and record lock identities';
-- Changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.patch_cluster(name) FROM PUBLIC;
