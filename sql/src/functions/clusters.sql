-- The Slony cluster schemas in this database: those holding both sl_nodelock and cleanupnodelock().
CREATE OR REPLACE FUNCTION slony_nodelock.clusters()
RETURNS SETOF name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT n.nspname
      FROM pg_catalog.pg_namespace n
     WHERE EXISTS (SELECT FROM pg_catalog.pg_class c
                    WHERE c.relnamespace OPERATOR(pg_catalog.=) n.oid
                      AND c.relname OPERATOR(pg_catalog.=) 'sl_nodelock' AND c.relkind OPERATOR(pg_catalog.=) 'r')
       AND EXISTS (SELECT FROM pg_catalog.pg_proc p
                    WHERE p.pronamespace OPERATOR(pg_catalog.=) n.oid
                      AND p.proname OPERATOR(pg_catalog.=) 'cleanupnodelock' AND p.pronargs OPERATOR(pg_catalog.=) 0)
     ORDER BY n.nspname
$fn$;
COMMENT ON FUNCTION slony_nodelock.clusters() IS 'slony-nodelock: Slony cluster schemas in this database';
