-- Run as a superuser:  psql -v ON_ERROR_STOP=1 -d DB -f sql/uninstall.sql
-- Puts back every cluster's cleanupnodelock() and terminatenodeconnections() exactly as Slony last
-- installed them (source, language, owner, comment) and removes all of slony-nodelock. One transaction; safe to re-run.
-- It relies only on the saved table, not on our functions, so it works for any installed release.
-- No lock is waited for longer than lock_timeout (10s unless psql -v lock_timeout=60s is given).
\set ON_ERROR_STOP 1
\set VERBOSITY terse
\set QUIET 1
\if :{?lock_timeout}
\else
\set lock_timeout 10s
\endif
BEGIN;
SET LOCAL lock_timeout = :'lock_timeout';
SET LOCAL search_path = pg_catalog, pg_temp;
-- @LOCKS@
DO $uninstall$
DECLARE
    v_ours record;
    v_definition text;
    v_owner name;
    v_comment text;
    v_named boolean;
    v_table regclass;
    v_trigger record;
    v_kit boolean;
    v_kept boolean;
    v_problem text;
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'slony-nodelock: % is not a superuser; run the script as postgres or another superuser', current_user;
    END IF;
    v_kit := pg_catalog.to_regnamespace('slony_nodelock') IS NOT NULL;
    -- DROP SCHEMA slony_nodelock CASCADE leaves the patched functions (nothing ties them to it)
    -- and the copies of Slony's that each cluster's schema keeps (keep_slony_functions()).
    -- Only functions a superuser owns, outside temporary schemas, are the kit's: any role can
    -- create a function of that name in its own temporary schema.
    v_kept := EXISTS (SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
                       WHERE p.proname IN ('slony_nodelock_keeper', 'slony_nodelock_slony_functions') AND r.rolsuper
                         AND p.pronamespace::pg_catalog.regnamespace::text !~ '^pg_(toast_)?temp_');
    IF NOT v_kit AND NOT v_kept THEN
        FOR v_ours IN SELECT p.pronamespace::pg_catalog.regnamespace::text AS cluster, p.proname
                        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
                       WHERE p.proname IN ('cleanupnodelock', 'terminatenodeconnections') AND p.prosrc LIKE '# slony-nodelock %'
                         AND r.rolsuper AND p.pronamespace::pg_catalog.regnamespace::text !~ '^pg_(toast_)?temp_'
                         AND p.prolang = (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'plpython3u')
                       ORDER BY 1, 2 LOOP
            RAISE WARNING 'slony-nodelock: the schema slony_nodelock is gone from database %, but % still runs the kit''s %() and Slony''s saved copy went with the schema; slon works, but uninstall cannot put Slony''s back: run slonik "update functions" for this node',
                pg_catalog.quote_ident(pg_catalog.current_database()), @cluster_label(v_ours.cluster)@, v_ours.proname;
        END LOOP;
        RAISE NOTICE 'slony-nodelock is not installed in database %; nothing to do', pg_catalog.quote_ident(pg_catalog.current_database());
        RETURN;
    END IF;
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'slony-nodelock: this server is a hot standby; run the script on its primary, and the standby follows by replication';
    END IF;
    -- Before reading what the schema holds: uninstall runs the definitions saved there.
    v_problem := @kit_schema_problem()@;
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'slony-nodelock: %; nothing changed. Uninstall runs what that schema holds as a superuser, so only superusers may own or change anything in it, and whoever did this could gain superuser rights through it: find out who did; then drop it as a superuser (DROP SCHEMA slony_nodelock CASCADE) and run the script again, which restores Slony''s functions from the copies kept in each cluster''s schema', v_problem;
    END IF;
    IF pg_catalog.current_setting('transaction_read_only')::boolean THEN
        RAISE EXCEPTION 'slony-nodelock: this session is read-only (a read-only transaction); run the script in a read-write session: PGOPTIONS=''-c default_transaction_read_only=off'' psql ...';
    END IF;
    -- First, or putting Slony's function back would set off the re-patch trigger.
    SET LOCAL client_min_messages = warning;  -- not "does not exist, skipping"
    DROP EVENT TRIGGER IF EXISTS slony_nodelock_repatch;
    DROP EVENT TRIGGER IF EXISTS slony_nodelock_forget;
    SET LOCAL client_min_messages = notice;
    -- Every function of ours goes, whether or not its cluster is still complete: left behind, it
    -- would fail once our schema is gone, and slon with it. Release 0.2.0 saved only
    -- cleanupnodelock(), in a table without function_name. Where the kit's table is gone, the
    -- copy kept in the cluster's schema serves.
    v_named := v_kit AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                  WHERE a.attrelid = pg_catalog.to_regclass('slony_nodelock.stock_function')
                                    AND a.attname = 'function_name' AND NOT a.attisdropped);
    FOR v_ours IN SELECT p.oid::pg_catalog.regprocedure AS fn, n.nspname, p.proname
                    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                    JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
                   WHERE p.proname IN ('cleanupnodelock', 'terminatenodeconnections') AND p.prosrc LIKE '# slony-nodelock %'
                     AND r.rolsuper AND n.nspname !~ '^pg_(toast_)?temp_'
                     -- What the kit patched: a superuser's PL/Python function; anything else of
                     -- that name is someone else's, a decoy that would stop uninstall.
                     AND p.prolang = (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'plpython3u')
                   ORDER BY 2, 3 LOOP
        v_definition := NULL;
        IF v_kit THEN
            EXECUTE 'SELECT s.definition, s.owner, s.comment FROM slony_nodelock.stock_function s WHERE s.cluster_schema = $1 AND '
                    || CASE WHEN v_named THEN 's.function_name = $2' ELSE '$2 = ''cleanupnodelock''' END
               INTO v_definition, v_owner, v_comment USING v_ours.nspname, v_ours.proname;
        END IF;
        -- The copy is trusted only as the kit made it: a superuser's plain SQL function.
        IF v_definition IS NULL AND EXISTS (
               SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
                WHERE p.oid = pg_catalog.to_regprocedure(pg_catalog.format('%I.slony_nodelock_slony_functions()', v_ours.nspname))
                  AND r.rolsuper AND NOT p.prosecdef AND p.prolang = (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'sql')) THEN
            EXECUTE pg_catalog.format('SELECT c.definition, c.owner, c.comment FROM %I.slony_nodelock_slony_functions() c'
                                      ' WHERE c.function_name = $1', v_ours.nspname)
               INTO v_definition, v_owner, v_comment USING v_ours.proname;
        END IF;
        IF v_definition IS NULL THEN
            RAISE EXCEPTION 'slony-nodelock: Slony''s own %() of % was never saved, so uninstall cannot put it back; nothing changed, slon keeps running with the kit. Run slonik "update functions" for this node first (the kit saves what it loads), then uninstall again',
                v_ours.proname, @cluster_label(v_ours.nspname)@;
        END IF;
        EXECUTE v_definition;
        EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO %I', v_ours.fn, v_owner);
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', v_ours.fn, v_comment);
        RAISE NOTICE 'slony-nodelock: restored Slony''s own %() in %', v_ours.proname, @cluster_label(v_ours.nspname)@;
    END LOOP;
    -- The copies in the cluster schemas, with the event triggers that use them.
    SET LOCAL client_min_messages = warning;  -- not "drop cascades to event trigger ..."
    FOR v_ours IN SELECT p.oid::pg_catalog.regprocedure AS fn FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
                   WHERE p.proname IN ('slony_nodelock_keeper', 'slony_nodelock_slony_functions') AND r.rolsuper
                     AND p.pronamespace::pg_catalog.regnamespace::text !~ '^pg_(toast_)?temp_' ORDER BY p.proname LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION %s CASCADE', v_ours.fn);
    END LOOP;
    SET LOCAL client_min_messages = notice;
    -- Our triggers, known by their function: a trigger of another role's that bears the name is
    -- not ours to drop.
    FOR v_trigger IN SELECT t.tgname, t.tgrelid::pg_catalog.regclass AS rel FROM pg_catalog.pg_trigger t
                      WHERE t.tgfoid IN (pg_catalog.to_regprocedure('slony_nodelock.track_lock_identity()'),
                                         pg_catalog.to_regprocedure('slony_nodelock.forget_truncated_locks()')) LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', v_trigger.tgname, v_trigger.rel);
    END LOOP;
    SET LOCAL client_min_messages = warning;  -- not the list of what CASCADE takes with it
    DROP SCHEMA IF EXISTS slony_nodelock CASCADE;
    SET LOCAL client_min_messages = notice;
    RAISE NOTICE 'slony-nodelock removed from database %: slon runs Slony''s own cleanupnodelock() again, which can refuse to start after a reboot; the plpython3u language stays (DROP EXTENSION plpython3u if nothing else uses it)',
        pg_catalog.quote_ident(pg_catalog.current_database());
END
$uninstall$;
COMMIT;
