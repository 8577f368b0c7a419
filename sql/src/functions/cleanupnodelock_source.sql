-- The PL/Python body of a cluster's replacement cleanupnodelock(): logic_source() with the
-- cluster's name and an entry point around it. The name goes in as hex, so no identifier, however
-- odd, can change the Python. The logic runs once per session; after that SD holds it.
CREATE OR REPLACE FUNCTION slony_nodelock.cleanupnodelock_source(p_cluster name)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT pg_catalog.concat_ws(E'\n',
    '# slony-nodelock @VERSION@: replaces Slony''s cleanupNodelock(); uninstall with sql/uninstall.sql.',
    'CLUSTER = bytes.fromhex(''' OPERATOR(pg_catalog.||)
        pg_catalog.encode(pg_catalog.convert_to(p_cluster::text, 'UTF8'), 'hex') OPERATOR(pg_catalog.||) ''').decode()',
    'if "slony_nodelock.cleanup" in SD:',
    '    return SD["slony_nodelock.cleanup"](plpy, SD, CLUSTER)',
    slony_nodelock.logic_source(),
    'SD["slony_nodelock.cleanup"] = cleanup',
    'return cleanup(plpy, SD, CLUSTER)')
$fn$;
COMMENT ON FUNCTION slony_nodelock.cleanupnodelock_source(name) IS 'slony-nodelock: PL/Python source of a cluster''s replacement cleanupnodelock()';
