-- One row per Slony cluster schema, found from Slony's own tables (so a cluster whose
-- cleanupnodelock() is gone is still listed; see cluster_candidates()): is it running our
-- cleanupnodelock() (patched) and
-- terminatenodeconnections() (failover_patched), and is everything around it in place? problems
-- is NULL when all is well, else names each problem with the fix that works for it.
-- SECURITY DEFINER so that a monitoring role can call it: it only reads, and returns only this.
-- Release 0.2.0's verify() had no failover_patched column, and a result type cannot be replaced.
DO $drop_old$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_proc p WHERE p.oid = pg_catalog.to_regprocedure('slony_nodelock.verify()')
                  AND NOT 'failover_patched' = ANY (p.proargnames)) THEN
        DROP FUNCTION slony_nodelock.verify();
    END IF;
END
$drop_old$;
CREATE OR REPLACE FUNCTION slony_nodelock.verify()
RETURNS TABLE (cluster name, patched boolean, failover_patched boolean, logic_version text,
               identity_recording boolean, stock_saved boolean, problems text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_candidate record;
    v_fn record;
    v_patch record;
    v_ours boolean;
    v_saved boolean;
    v_found text[];
    v_kit_problems text[] := '{}';
    v_trigger_owner record;
    -- What repairs most problems: install.sql recreates every function, trigger and patch. By the
    -- expressions, not the functions, so that a damaged kit is still reported.
    v_install constant text := 'run: ' || @install_command('install.sql')@;
    v_reinstall constant text := pg_catalog.format('reinstall: %s, then %s', @install_command('uninstall.sql')@,
                                                   @install_command('install.sql')@);
    v_update_functions constant text := 'run slonik "update functions" for this node (the kit patches and saves what it loads)';
    v_rows int4 := 0;
    v_schema_problem text;
BEGIN
    -- What every cluster relies on: our records table, and trigger functions that can read it.
    IF (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = pg_catalog.to_regclass('slony_nodelock.lock_identity') AND NOT a.attisdropped
           AND a.attname IN ('cluster_schema', 'nl_nodeid', 'nl_conncnt', 'pid', 'backend_start', 'row_xmin')) <> 6 THEN
        -- install.sql cannot mend a table that its migrations are recorded as having made.
        v_kit_problems := v_kit_problems || ('the table slony_nodelock.lock_identity is missing or damaged, so no lock taker is recorded; ' || v_reinstall);
    END IF;
    -- Each patched cleanupnodelock() calls it while judging; without it they judge without records.
    IF pg_catalog.to_regprocedure('slony_nodelock.record_is_current(name,int4,int4,int4,xid)') IS NULL THEN
        v_kit_problems := v_kit_problems || ('the function slony_nodelock.record_is_current() is missing, so every cleanup '
                                             'judges its locks without the recorded identities; ' || v_install);
    END IF;
    SELECT r.rolname, r.rolsuper INTO v_trigger_owner
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
     WHERE p.oid = pg_catalog.to_regprocedure('slony_nodelock.track_lock_identity()');
    IF NOT FOUND THEN
        v_kit_problems := v_kit_problems || ('the trigger function slony_nodelock.track_lock_identity() is missing, so no lock taker is recorded; ' || v_install);
    ELSIF NOT v_trigger_owner.rolsuper THEN
        -- Rerunning install.sql keeps each function's owner, and uninstall.sql refuses a schema a
        -- superuser does not own all of: only dropping the schema first helps.
        v_kit_problems := v_kit_problems || pg_catalog.format('the kit''s functions belong to role %s, who is no longer a superuser, so no lock taker can be recorded; ALTER ROLE %I SUPERUSER, or as a superuser DROP SCHEMA slony_nodelock CASCADE and %s',
                                                            pg_catalog.quote_ident(v_trigger_owner.rolname), v_trigger_owner.rolname, v_reinstall);
    END IF;
    -- Who may change what the kit runs as a superuser: superusers only (a demoted installer, just
    -- named, aside).
    v_schema_problem := @kit_schema_problem()@;
    IF v_schema_problem IS NOT NULL AND COALESCE(v_trigger_owner.rolsuper, true) THEN
        v_kit_problems := v_kit_problems || (v_schema_problem || ', and the kit runs what that schema holds as a superuser, so whoever did this could gain superuser rights through it: find out who did, then drop the schema as a superuser (DROP SCHEMA slony_nodelock CASCADE) and ' || v_reinstall);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger e
                    WHERE e.evtname = 'slony_nodelock_repatch' AND e.evtenabled = 'A') THEN
        v_kit_problems := v_kit_problems || ('the event trigger slony_nodelock_repatch is missing or not enabled ALWAYS, so UPDATE FUNCTIONS would undo the patch and a cluster created later would not be patched; ' || v_install);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger e
                    WHERE e.evtname = 'slony_nodelock_forget' AND e.evtenabled = 'A') THEN
        v_kit_problems := v_kit_problems || ('the event trigger slony_nodelock_forget is missing or not enabled ALWAYS, so a DROP ... CASCADE that takes a cluster''s cleanupnodelock() along would leave slon unable to start; ' || v_install);
    END IF;

    -- Clusters only: a schema that only looks like one (install names it, and why, when it skips
    -- it) is no problem of the kit's; listing it would turn assert_ok() red for good, on tables
    -- any role can make in its own schema.
    FOR v_candidate IN SELECT c.schema_name FROM slony_nodelock.cluster_candidates() c WHERE c.is_cluster LOOP
        cluster := v_candidate.schema_name;
        v_found := v_kit_problems;
        logic_version := NULL;
        FOR v_patch IN SELECT f.function_name FROM slony_nodelock.patched_functions() f LOOP
            SELECT p.prosrc, l.lanname INTO v_fn
              FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
             WHERE p.oid = slony_nodelock.patched_function_oid(cluster, v_patch.function_name);
            v_ours := COALESCE(v_fn.lanname = 'plpython3u' AND v_fn.prosrc LIKE '# slony-nodelock %', false);
            v_saved := EXISTS (SELECT FROM slony_nodelock.stock_function s
                                WHERE s.cluster_schema = cluster AND s.function_name = v_patch.function_name);
            IF v_patch.function_name = 'cleanupnodelock' THEN
                patched := v_ours;
                logic_version := pg_catalog.substring(v_fn.prosrc, 'LOGIC_VERSION = "([^"]*)"');
            ELSE
                failover_patched := v_ours;
            END IF;
            IF v_fn IS NULL THEN
                v_found := v_found || (CASE v_patch.function_name
                    WHEN 'cleanupnodelock' THEN 'cleanupnodelock() is missing, so slon cannot start on this node; '
                    ELSE 'terminatenodeconnections() is missing, so a failover cannot run on this node; ' END
                    -- install.sql creates ours from Slony's saved copy; without one, only Slony can.
                    || CASE WHEN v_saved THEN v_install ELSE v_update_functions END);
            ELSIF NOT v_ours THEN
                v_found := v_found || (CASE v_patch.function_name
                    WHEN 'cleanupnodelock' THEN 'cleanupnodelock() is Slony''s stock one, which judges a lock by kill(pid, 0) alone; '
                    ELSE 'terminatenodeconnections() is Slony''s stock one, which signals whatever holds a lock row''s PID; ' END
                    || v_install);
            ELSIF v_fn.prosrc <> slony_nodelock.patched_source(cluster, v_patch.function_name) THEN
                v_found := v_found || pg_catalog.format('%s() comes from another slony-nodelock release than the installed %s; %s',
                                                        v_patch.function_name, slony_nodelock.version(), v_install);
            END IF;
            IF NOT v_saved THEN
                -- Only Slony has its function's source; UPDATE FUNCTIONS loads it, and the re-patch
                -- trigger saves it.
                v_found := v_found || pg_catalog.format('Slony''s own %s() is not saved, so uninstall cannot put it back; %s',
                                                        v_patch.function_name, v_update_functions);
            END IF;
        END LOOP;
        -- Through the catalogs, not to_regclass(): a monitoring role need not have USAGE on the schema.
        identity_recording := (SELECT pg_catalog.count(*) = 2
                                 FROM pg_catalog.pg_trigger t
                                 JOIN pg_catalog.pg_class r ON r.oid = t.tgrelid
                                 JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
                                WHERE n.nspname = cluster AND r.relname = 'sl_nodelock'
                                  AND t.tgname IN ('slony_nodelock_identity', 'slony_nodelock_truncate')
                                  AND t.tgenabled = 'A');
        IF NOT identity_recording THEN
            v_found := v_found || ('the identity triggers on sl_nodelock are missing or not enabled ALWAYS, so new lock takers are not recorded; ' || v_install);
        END IF;
        stock_saved := (SELECT pg_catalog.count(*) FROM slony_nodelock.stock_function s WHERE s.cluster_schema = cluster)
                       = (SELECT pg_catalog.count(*) FROM slony_nodelock.patched_functions());
        problems := NULLIF(pg_catalog.array_to_string(v_found, ' | '), '');
        v_rows := v_rows + 1;
        RETURN NEXT;
    END LOOP;
    -- No cluster to carry them: the kit's own problems get a row of their own, cluster NULL, so
    -- that assert_ok(p_none_expected => true) on a node waiting for its cluster still sees them.
    IF v_rows = 0 AND pg_catalog.cardinality(v_kit_problems) > 0 THEN
        cluster := NULL; patched := NULL; failover_patched := NULL; logic_version := NULL;
        identity_recording := NULL; stock_saved := NULL;
        problems := pg_catalog.array_to_string(v_kit_problems, ' | ');
        RETURN NEXT;
    END IF;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.verify() IS 'slony-nodelock: per cluster, whether the fix is in place and what is wrong if not';
