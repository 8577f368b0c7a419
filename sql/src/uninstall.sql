-- Run as a superuser:  psql -v ON_ERROR_STOP=1 -d DB -f sql/uninstall.sql
-- Puts back every cluster's cleanupnodelock() exactly as Slony last installed it (source,
-- language, owner, comment) and removes all of slony-nodelock. One transaction; safe to re-run.
-- It relies only on the saved table, not on our functions, so it works for any installed release.
\set ON_ERROR_STOP 1
\set VERBOSITY terse
\set QUIET 1
BEGIN;
SET LOCAL search_path = pg_catalog, pg_temp;
DO $uninstall$
DECLARE
    v_saved record;
    v_table regclass;
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'slony-nodelock: % is not a superuser; run the script as postgres or another superuser', current_user;
    END IF;
    IF pg_catalog.to_regnamespace('slony_nodelock') IS NULL THEN
        RAISE NOTICE 'slony-nodelock is not installed in database %; nothing to do', pg_catalog.current_database();
        RETURN;
    END IF;
    -- First, or putting Slony's function back would set off the re-patch trigger.
    DROP EVENT TRIGGER IF EXISTS slony_nodelock_repatch;
    DROP EVENT TRIGGER IF EXISTS slony_nodelock_forget;
    FOR v_saved IN SELECT * FROM slony_nodelock.stock_function ORDER BY cluster_schema LOOP
        v_table := pg_catalog.to_regclass(pg_catalog.format('%I.sl_nodelock', v_saved.cluster_schema));
        IF v_table IS NULL THEN
            CONTINUE;  -- the cluster is gone (uninstall node); nothing to put back
        END IF;
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS slony_nodelock_identity ON %s', v_table);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS slony_nodelock_truncate ON %s', v_table);
        EXECUTE v_saved.definition;
        EXECUTE pg_catalog.format('ALTER FUNCTION %I.cleanupnodelock() OWNER TO %I', v_saved.cluster_schema, v_saved.owner);
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %I.cleanupnodelock() IS %L', v_saved.cluster_schema, v_saved.comment);
        RAISE NOTICE 'slony-nodelock: restored Slony''s cleanupnodelock() in cluster %', pg_catalog.quote_ident(v_saved.cluster_schema);
    END LOOP;
    SET LOCAL client_min_messages = warning;  -- not the list of what CASCADE takes with it
    DROP SCHEMA slony_nodelock CASCADE;
    SET LOCAL client_min_messages = notice;
    RAISE NOTICE 'slony-nodelock removed from database % (the plpython3u language stays; drop it yourself if nothing else uses it)',
        pg_catalog.current_database();
END
$uninstall$;
COMMIT;
