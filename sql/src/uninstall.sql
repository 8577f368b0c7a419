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
-- One install or uninstall at a time in a database (see install.sql). Then, before anything
-- changes, ACCESS EXCLUSIVE (what DROP TRIGGER takes) on each sl_nodelock that carries our
-- triggers, in schema order as install takes its locks; a lock that is not free within
-- lock_timeout fails the script in one line naming who holds it. The kit's own tables are not
-- locked here: slon's cleanup reads them while it holds ROW SHARE on sl_nodelock, so taking them
-- first would deadlock against it.
DO $one_at_a_time$
DECLARE
    v_key constant int8 := pg_catalog.hashtext('slony_nodelock install');
    v_db constant oid := (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database());
    v_holders text[];
    v_table record;
BEGIN
    BEGIN
        PERFORM pg_catalog.pg_advisory_xact_lock(v_key);
    EXCEPTION WHEN lock_not_available THEN
        SELECT pg_catalog.array_agg(DISTINCT l.pid ORDER BY l.pid) INTO v_holders
          FROM pg_catalog.pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
           AND l.database = v_db AND l.classid = ((v_key >> 32) & 4294967295)::oid AND l.objid = (v_key & 4294967295)::oid AND l.objsubid = 1;
        RAISE EXCEPTION 'slony-nodelock: another install or uninstall of slony-nodelock is running in database % (%); waited %; nothing changed; run the script again when it has finished',
            pg_catalog.current_database(),
            CASE pg_catalog.cardinality(v_holders) WHEN 0 THEN 'it has just finished' WHEN 1 THEN 'pid ' || v_holders[1]
                 ELSE 'pids ' || pg_catalog.array_to_string(v_holders, ', ') END,
            pg_catalog.current_setting('lock_timeout');
    END;
    -- Refused below in one line; LOCK TABLE would fail first, less clearly.
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
       OR pg_catalog.pg_is_in_recovery() OR pg_catalog.current_setting('transaction_read_only')::boolean THEN
        RETURN;
    END IF;
    FOR v_table IN SELECT DISTINCT c.oid, n.nspname, pg_catalog.format('%I.%I', n.nspname, c.relname) AS name
                     FROM pg_catalog.pg_trigger t
                     JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE t.tgname IN ('slony_nodelock_identity', 'slony_nodelock_truncate')
                    ORDER BY n.nspname LOOP
        BEGIN
            EXECUTE pg_catalog.format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_table.name);
        EXCEPTION WHEN lock_not_available THEN
            -- ACCESS EXCLUSIVE waits for every holder, readers too.
            SELECT pg_catalog.array_agg(h.who ORDER BY h.who) INTO v_holders
              FROM (SELECT DISTINCT
                           CASE WHEN l.pid IS NULL THEN pg_catalog.format('prepared transaction %L', p.gid)
                                ELSE pg_catalog.format('pid %s (%s, in transaction since %s)', l.pid,
                                         CASE WHEN a.application_name <> '' THEN a.application_name
                                              ELSE COALESCE(a.backend_type, 'a process') || ' with no application_name' END,
                                         COALESCE(pg_catalog.date_trunc('second', a.xact_start)::text, 'an unknown time')) END AS who
                      FROM pg_catalog.pg_locks l
                      LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
                      LEFT JOIN pg_catalog.pg_prepared_xacts p
                             ON l.pid IS NULL AND p.transaction::text = pg_catalog.split_part(l.virtualtransaction, '/', 2)
                     WHERE l.locktype = 'relation' AND l.database = v_db AND l.relation = v_table.oid AND l.granted
                       AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()) h;
            RAISE EXCEPTION 'slony-nodelock: waited % for a lock on %, %; nothing changed; run the script again when it is free, or give it longer: psql -v lock_timeout=60s ...',
                pg_catalog.current_setting('lock_timeout'), v_table.name,
                COALESCE('held by ' || pg_catalog.array_to_string(v_holders, ', '), 'which no session holds any more');
        END;
    END LOOP;
END
$one_at_a_time$;
DO $uninstall$
DECLARE
    v_ours record;
    v_saved record;
    v_named boolean;
    v_table regclass;
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'slony-nodelock: % is not a superuser; run the script as postgres or another superuser', current_user;
    END IF;
    IF pg_catalog.to_regnamespace('slony_nodelock') IS NULL THEN
        -- DROP SCHEMA slony_nodelock CASCADE leaves the patched functions (nothing ties them to
        -- it) and takes the saved copies of Slony's with it.
        FOR v_ours IN SELECT p.pronamespace::pg_catalog.regnamespace::text AS cluster, p.proname
                        FROM pg_catalog.pg_proc p
                       WHERE p.proname IN ('cleanupnodelock', 'terminatenodeconnections') AND p.prosrc LIKE '# slony-nodelock %'
                       ORDER BY 1, 2 LOOP
            -- The label as slony_nodelock.cluster_label() words it, which went with the schema.
            RAISE WARNING 'slony-nodelock: the schema slony_nodelock is gone from database %, but % still runs the kit''s %() and Slony''s saved copy went with the schema; slon works, but uninstall cannot put Slony''s back: run slonik "update functions" for this node',
                pg_catalog.quote_ident(pg_catalog.current_database()), pg_catalog.format('cluster "%s" (schema "%s")', pg_catalog.replace(pg_catalog.substr(v_ours.cluster, 2), '"', '""'), pg_catalog.replace(v_ours.cluster, '"', '""')), v_ours.proname;
        END LOOP;
        RAISE NOTICE 'slony-nodelock is not installed in database %; nothing to do', pg_catalog.quote_ident(pg_catalog.current_database());
        RETURN;
    END IF;
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'slony-nodelock: this server is a hot standby; run the script on its primary, and the standby follows by replication';
    END IF;
    IF pg_catalog.current_setting('transaction_read_only')::boolean THEN
        RAISE EXCEPTION 'slony-nodelock: this session is read-only (a read-only transaction); run the script in a read-write session: PGOPTIONS=''-c default_transaction_read_only=off'' psql ...';
    END IF;
    -- First, or putting Slony's function back would set off the re-patch trigger.
    DROP EVENT TRIGGER IF EXISTS slony_nodelock_repatch;
    DROP EVENT TRIGGER IF EXISTS slony_nodelock_forget;
    -- Every function of ours goes, whether or not its cluster is still complete: left behind, it
    -- would fail once our schema is gone, and slon with it. Release 0.2.0 saved only
    -- cleanupnodelock(), in a table without function_name.
    v_named := EXISTS (SELECT FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = 'slony_nodelock.stock_function'::pg_catalog.regclass
                          AND a.attname = 'function_name' AND NOT a.attisdropped);
    FOR v_ours IN SELECT p.oid::pg_catalog.regprocedure AS fn, n.nspname, p.proname
                    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                   WHERE p.proname IN ('cleanupnodelock', 'terminatenodeconnections') AND p.prosrc LIKE '# slony-nodelock %'
                   ORDER BY 2, 3 LOOP
        EXECUTE 'SELECT s.definition, s.owner, s.comment FROM slony_nodelock.stock_function s WHERE s.cluster_schema = $1 AND '
                || CASE WHEN v_named THEN 's.function_name = $2' ELSE '$2 = ''cleanupnodelock''' END
           INTO v_saved USING v_ours.nspname, v_ours.proname;
        IF v_saved.definition IS NULL THEN
            RAISE EXCEPTION 'slony-nodelock: Slony''s own %() of % was never saved, so uninstall cannot put it back; nothing changed, slon keeps running with the kit. Run slonik "update functions" for this node first (the kit saves what it loads), then uninstall again',
                v_ours.proname, pg_catalog.format('cluster "%s" (schema "%s")', pg_catalog.replace(pg_catalog.substr(v_ours.nspname, 2), '"', '""'), pg_catalog.replace(v_ours.nspname, '"', '""'));
        END IF;
        EXECUTE v_saved.definition;
        EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO %I', v_ours.fn, v_saved.owner);
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', v_ours.fn, v_saved.comment);
        RAISE NOTICE 'slony-nodelock: restored Slony''s own %() in %', v_ours.proname, pg_catalog.format('cluster "%s" (schema "%s")', pg_catalog.replace(pg_catalog.substr(v_ours.nspname, 2), '"', '""'), pg_catalog.replace(v_ours.nspname, '"', '""'));
    END LOOP;
    FOR v_table IN SELECT DISTINCT t.tgrelid::pg_catalog.regclass FROM pg_catalog.pg_trigger t
                    WHERE t.tgname IN ('slony_nodelock_identity', 'slony_nodelock_truncate') LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS slony_nodelock_identity ON %s', v_table);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS slony_nodelock_truncate ON %s', v_table);
    END LOOP;
    SET LOCAL client_min_messages = warning;  -- not the list of what CASCADE takes with it
    DROP SCHEMA slony_nodelock CASCADE;
    SET LOCAL client_min_messages = notice;
    RAISE NOTICE 'slony-nodelock removed from database %: slon runs Slony''s own cleanupnodelock() again, which can refuse to start after a reboot; the plpython3u language stays (DROP EXTENSION plpython3u if nothing else uses it)',
        pg_catalog.quote_ident(pg_catalog.current_database());
END
$uninstall$;
COMMIT;
