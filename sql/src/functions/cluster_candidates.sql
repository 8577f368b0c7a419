-- Every schema holding an sl_nodelock table, and whether it is a Slony cluster we patch. Slony's
-- init cluster and store node make the schema with sl_node and sl_nodelock, as the superuser that
-- slonik connects as. A look-alike made by another role is not ours to touch: patching it would
-- put our function there with that role as its owner. Clusters are found from Slony's own tables,
-- never from cleanupnodelock(), so that a cluster whose function is gone is still checked.
CREATE OR REPLACE FUNCTION slony_nodelock.cluster_candidates()
RETURNS TABLE (schema_name name, has_sl_node boolean, is_cluster boolean, why_not text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT n.nspname,
           s.has_sl_node,
           s.has_sl_node AND o.rolsuper AND s.plain_name,
           CASE WHEN NOT s.has_sl_node THEN 'it has no sl_node table'
                WHEN NOT o.rolsuper THEN pg_catalog.format('it is owned by %s, not a superuser', o.rolname)
                WHEN NOT s.plain_name THEN 'its name is not valid UTF-8, which the kit''s PL/Python needs (a SQL_ASCII database checks no name)'
           END
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) n.nspowner
     CROSS JOIN LATERAL (SELECT EXISTS (
               SELECT FROM pg_catalog.pg_class c
                WHERE c.relnamespace OPERATOR(pg_catalog.=) n.oid
                  AND c.relname OPERATOR(pg_catalog.=) 'sl_node' AND c.relkind OPERATOR(pg_catalog.=) 'r') AS has_sl_node,
               -- The kit's Python gets cluster names as text, so a name must convert to UTF-8,
               -- which only a SQL_ASCII database does not check (slonik takes any high byte).
               slony_nodelock.converts_to_utf8(n.nspname) AS plain_name) s
     WHERE EXISTS (SELECT FROM pg_catalog.pg_class c
                    WHERE c.relnamespace OPERATOR(pg_catalog.=) n.oid
                      AND c.relname OPERATOR(pg_catalog.=) 'sl_nodelock' AND c.relkind OPERATOR(pg_catalog.=) 'r')
     ORDER BY n.nspname
$fn$;
COMMENT ON FUNCTION slony_nodelock.cluster_candidates() IS 'slony-nodelock: schemas holding sl_nodelock, and whether each is a Slony cluster';
