-- After the guard, which has refused (in one line, waiting for nothing) whoever may not take
-- these locks. One install (or uninstall) at a time in a database: a second waits here, then finds the kit
-- installed; without it, two first installs collide on CREATE EXTENSION and CREATE SCHEMA.
-- Then, before anything changes, the locks on Slony's tables that the install needs: SHARE ROW
-- EXCLUSIVE (what CREATE TRIGGER and ENABLE ALWAYS TRIGGER take) on each cluster's sl_nodelock,
-- in schema order so that two runs take them in the same order. slon's inserts and deletes of
-- lock rows wait for the install; its reads do not. A lock that is not free within lock_timeout
-- fails the script in one line naming who holds it. The kit's own tables are not locked here:
-- slon's cleanup reads them while it holds ROW SHARE on sl_nodelock, so taking them first would
-- deadlock against it. Clusters are found from pg_catalog (our functions may not exist yet), by
-- cluster_candidates()'s rule: a schema owned by a superuser holding the tables sl_node and
-- sl_nodelock. A look-alike is not locked: the install leaves it alone, and its owner, who need
-- not be a superuser, could otherwise hold the install up.
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
    FOR v_table IN SELECT c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname) AS name
                     FROM pg_catalog.pg_class c
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     JOIN pg_catalog.pg_roles o ON o.oid = n.nspowner
                    WHERE c.relname = 'sl_nodelock' AND c.relkind = 'r' AND o.rolsuper
                      AND EXISTS (SELECT FROM pg_catalog.pg_class s
                                   WHERE s.relnamespace = n.oid AND s.relname = 'sl_node' AND s.relkind = 'r')
                    ORDER BY n.nspname LOOP
        BEGIN
            EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', v_table.name);
        EXCEPTION WHEN lock_not_available THEN
            -- Who holds a mode that SHARE ROW EXCLUSIVE waits for (not the readers).
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
                       AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
                       AND l.mode NOT IN ('AccessShareLock', 'RowShareLock')) h;
            RAISE EXCEPTION 'slony-nodelock: waited % for a lock on %, %; nothing changed; run the script again when it is free, or give it longer: psql -v lock_timeout=60s ...',
                pg_catalog.current_setting('lock_timeout'), v_table.name,
                COALESCE('held by ' || pg_catalog.array_to_string(v_holders, ', '), 'which no session holds any more');
        END;
    END LOOP;
END
$one_at_a_time$;
