-- Trigger on each cluster's sl_nodelock: records who took a new lock row, and which row version
-- the record describes (its xmin), and forgets the record when the row goes or changes. SECURITY
-- DEFINER because slon may run as a role that cannot write our table. It never fails slon's
-- write: a row it could not record is judged by the rule for unrecorded rows, which is safe.
CREATE OR REPLACE FUNCTION slony_nodelock.track_lock_identity()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_xmin xid;
BEGIN
    -- Before NEW or OLD is read: it runs as a superuser, and reading a column of a type another
    -- role chose (an enum with an implicit cast to int4 through its own function, say) would run
    -- that role's code as one. So only Slony's own table: a superuser's, with Slony's int4 columns.
    IF NOT COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) c.relowner
                      WHERE c.oid OPERATOR(pg_catalog.=) TG_RELID), false)
       OR (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
            WHERE a.attrelid OPERATOR(pg_catalog.=) TG_RELID AND NOT a.attisdropped
              AND a.attname OPERATOR(pg_catalog.=) ANY (ARRAY['nl_nodeid', 'nl_conncnt', 'nl_backendpid']::name[])
              AND a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.int4'::pg_catalog.regtype) OPERATOR(pg_catalog.<>) 3 THEN
        RAISE WARNING 'slony-nodelock: did not record who took a lock row of %: its sl_nodelock is no longer a superuser''s table with Slony''s int4 columns, so the kit reads nothing of it; the write went through; check the node with: select * from slony_nodelock.verify()',
            @cluster_label(TG_TABLE_SCHEMA)@;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        -- An updated row is a new row version that no record describes.
        DELETE FROM slony_nodelock.lock_identity i
         WHERE i.cluster_schema OPERATOR(pg_catalog.=) TG_TABLE_SCHEMA AND i.nl_nodeid OPERATOR(pg_catalog.=) OLD.nl_nodeid
           AND i.nl_conncnt OPERATOR(pg_catalog.=) OLD.nl_conncnt;
    ELSIF NEW.nl_backendpid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() THEN
        -- Only our own backend's start time is known for sure; a row naming another PID gets none.
        -- A trigger's NEW has no system columns; an AFTER trigger sees the row it fired for.
        EXECUTE pg_catalog.format('SELECT l.xmin FROM %I.%I l WHERE l.nl_nodeid OPERATOR(pg_catalog.=) $1 '
                                  'AND l.nl_conncnt OPERATOR(pg_catalog.=) $2', TG_TABLE_SCHEMA, TG_TABLE_NAME)
           INTO v_xmin USING NEW.nl_nodeid, NEW.nl_conncnt;
        INSERT INTO slony_nodelock.lock_identity AS i (cluster_schema, nl_nodeid, nl_conncnt, pid, backend_start, row_xmin,
                                                       application_name)
        -- The name as set now: the activity snapshot may predate a SET in this transaction.
        SELECT TG_TABLE_SCHEMA, NEW.nl_nodeid, NEW.nl_conncnt, a.pid, a.backend_start, v_xmin,
               pg_catalog.current_setting('application_name')
          FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a
         WHERE a.backend_start IS NOT NULL AND v_xmin IS NOT NULL
        ON CONFLICT (cluster_schema, nl_nodeid, nl_conncnt)
        DO UPDATE SET pid = EXCLUDED.pid, backend_start = EXCLUDED.backend_start, row_xmin = EXCLUDED.row_xmin,
                      application_name = EXCLUDED.application_name, adopted = false;
    END IF;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    -- The cluster named by the expression, not the function: this handler must not fail, or
    -- slon's write fails with it.
    RAISE WARNING 'slony-nodelock: could not record who took lock row (node %, conncnt %) of % (%); slon''s write went through, and the row will be judged as unrecorded; the cause and its fix: select * from slony_nodelock.verify()',
        COALESCE(NEW.nl_nodeid, OLD.nl_nodeid), COALESCE(NEW.nl_conncnt, OLD.nl_conncnt),
        @cluster_label(TG_TABLE_SCHEMA)@, SQLERRM;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.track_lock_identity() IS 'slony-nodelock: trigger recording the backend (pid, backend_start, application_name) that takes each sl_nodelock row, bound to the row''s xmin';
-- A trigger function that writes our table with our rights: nobody else may attach it.
REVOKE EXECUTE ON FUNCTION slony_nodelock.track_lock_identity() FROM PUBLIC;
