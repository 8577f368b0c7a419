-- Every lock the script needs, taken before anything changes and within lock_timeout: a lock that
-- is not free in time fails the script in one line naming who holds it (the same block opens
-- install.sql and uninstall.sql; @LOCKS_FOR_UNINSTALL@ tells them apart).
--
-- One install or uninstall at a time in a database: each locks the kit's registry of migrations,
-- slony_nodelock.migration, in a mode that conflicts with itself (no role but a superuser may lock
-- it: an advisory lock, which any role can take, would let any role hold the kit up). A first
-- install, with no registry yet, waits for another one at CREATE SCHEMA instead (bootstrap.sql).
--
-- With it, Slony's tables, all at once (see the loop below): each
-- cluster's sl_nodelock (a schema owned by a superuser holding sl_node and sl_nodelock, as
-- cluster_candidates() rules; from pg_catalog, since our functions may not exist yet; a look-alike
-- is not locked, or its owner, who need not be a superuser, could hold the install up) and any
-- other table carrying our triggers. An install that only replaces functions needs SHARE ROW
-- EXCLUSIVE (what CREATE TRIGGER and ENABLE ALWAYS TRIGGER take): slon's inserts and deletes of
-- lock rows wait for it, its reads do not, and slon takes no lock on the kit's tables without
-- first holding one on sl_nodelock that this does not block, so nothing of the kit's is locked.
--
-- A pending migration alters the kit's tables, and uninstall drops them: ACCESS EXCLUSIVE on
-- them. slon reaches them only through sl_nodelock (its cleanup reads them after locking its rows,
-- the identity trigger writes them on its insert), so then every sl_nodelock is first locked
-- ACCESS EXCLUSIVE too, which no slon transaction on it may hold meanwhile: with a weaker lock on
-- sl_nodelock, a slon cleanup holding a read lock on a kit table and then deleting a lock row
-- would deadlock against the script.
-- After the guard, which has refused (in one line, waiting for nothing) whoever may not take them.
DO $locks$
DECLARE
    v_uninstall constant boolean := @LOCKS_FOR_UNINSTALL@;
    v_db constant oid := (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database());
    v_exclusive boolean;
    v_mode text;
    v_holders text[];
    v_tables pg_catalog.regclass[];
    v_table pg_catalog.regclass;
    v_deadline timestamptz;
BEGIN
    -- Nothing to uninstall: nothing to lock (uninstall.sql says so).
    IF v_uninstall AND pg_catalog.to_regnamespace('slony_nodelock') IS NULL THEN
        RETURN;
    END IF;
    -- uninstall.sql refuses these in one line after this block; LOCK TABLE would fail first, less clearly.
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
       OR pg_catalog.pg_is_in_recovery() OR pg_catalog.current_setting('transaction_read_only')::boolean THEN
        RETURN;
    END IF;
    v_exclusive := v_uninstall;
    IF NOT v_exclusive AND pg_catalog.to_regclass('slony_nodelock.migration') IS NOT NULL THEN
        -- Dynamic: on a fresh database the table does not exist, and the query cannot be planned.
        EXECUTE 'SELECT COALESCE(pg_catalog.max(m.version), 0) < $1 FROM slony_nodelock.migration m'
           INTO v_exclusive USING @LATEST_MIGRATION@;
    END IF;
    v_mode := CASE WHEN v_exclusive THEN 'ACCESS EXCLUSIVE' ELSE 'SHARE ROW EXCLUSIVE' END;
    v_tables := ARRAY(SELECT c.oid::pg_catalog.regclass
                        FROM pg_catalog.pg_class c
                        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                        JOIN pg_catalog.pg_roles o ON o.oid = n.nspowner
                       WHERE c.relkind = 'r'
                         AND ((c.relname = 'sl_nodelock'
                               AND ((o.rolsuper AND (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = c.relowner)
                                     AND EXISTS (SELECT FROM pg_catalog.pg_class s WHERE s.relnamespace = n.oid
                                                               AND s.relname = 'sl_node' AND s.relkind = 'r'))
                                    -- Our triggers by their function, not their name, which any
                                    -- table owner can give a trigger of its own.
                                    OR EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid
                                                  AND t.tgfoid IN (pg_catalog.to_regprocedure('slony_nodelock.track_lock_identity()'),
                                                                   pg_catalog.to_regprocedure('slony_nodelock.forget_truncated_locks()')))))
                              OR (n.nspname = 'slony_nodelock' AND (v_exclusive OR c.relname = 'migration')))
                       ORDER BY n.nspname = 'slony_nodelock', n.nspname, c.relname);
    -- All or nothing, never one held while waiting for another: a slon cleanup of one cluster also
    -- reads the other clusters' sl_nodelock (record_is_current()), in its own order, so waiting on
    -- one table while holding another could still deadlock. Each try takes every lock NOWAIT in a
    -- subtransaction; one that is not free undoes the try, which releases what it took, and the
    -- next try comes a moment later, until lock_timeout has passed (0: no limit, as PostgreSQL's).
    v_deadline := pg_catalog.clock_timestamp() + NULLIF(pg_catalog.current_setting('lock_timeout')::interval, '0');
    LOOP
        BEGIN
            FOREACH v_table IN ARRAY v_tables LOOP
                EXECUTE pg_catalog.format('LOCK TABLE %s IN %s MODE NOWAIT', v_table, v_mode);
            END LOOP;
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            IF pg_catalog.clock_timestamp() < v_deadline OR v_deadline IS NULL THEN
                PERFORM pg_catalog.pg_sleep(0.05);
                CONTINUE;
            END IF;
        END;
        -- Who holds a mode that ours waits for (SHARE ROW EXCLUSIVE does not wait for readers),
        -- or waits for one too.
        SELECT pg_catalog.array_agg(h.who ORDER BY h.who) INTO v_holders
          FROM (SELECT DISTINCT
                       CASE WHEN l.pid IS NULL
                            THEN pg_catalog.format('prepared transaction %L (end it with COMMIT PREPARED or ROLLBACK PREPARED)', p.gid)
                            ELSE pg_catalog.format('pid %s (%s%s, %s)', l.pid,
                                     CASE WHEN a.application_name <> '' THEN a.application_name
                                          ELSE COALESCE(a.backend_type, 'a process') || ' with no application_name' END,
                                     -- Whoever can hold the kit up without being a superuser is to be told.
                                     CASE WHEN NOT r.rolsuper THEN pg_catalog.format(', role %s, which is not a superuser', pg_catalog.quote_ident(r.rolname))
                                          ELSE '' END,
                                     CASE WHEN NOT l.granted THEN 'waiting for it too'
                                          ELSE 'in transaction since '
                                               || COALESCE(pg_catalog.date_trunc('second', a.xact_start)::text, 'an unknown time') END) END AS who
                  FROM pg_catalog.pg_locks l
                  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
                  LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.usesysid
                  LEFT JOIN pg_catalog.pg_prepared_xacts p
                         ON l.pid IS NULL AND p.transaction::text = pg_catalog.split_part(l.virtualtransaction, '/', 2)
                 WHERE l.locktype = 'relation' AND l.database = v_db AND l.relation = v_table
                   AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
                   AND (v_exclusive OR l.mode NOT IN ('AccessShareLock', 'RowShareLock'))) h;
        RAISE EXCEPTION 'slony-nodelock: waited % for a lock on %, %; nothing changed; run the script again when it is free, or give it longer: psql -v lock_timeout=60s ...',
            pg_catalog.current_setting('lock_timeout'), v_table,
            COALESCE('held by ' || pg_catalog.array_to_string(v_holders, ', '), 'which no session holds any more');
    END LOOP;
END
$locks$;
