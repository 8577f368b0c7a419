-- The PL/Python body of a cluster's replacement function: logic_source() with the cluster's name
-- and an entry point around it. The name goes in as hex, so no identifier, however odd, can
-- change the Python. The logic runs once per session; after that SD holds it.
SET LOCAL client_min_messages = warning;  -- not "does not exist, skipping"
DROP FUNCTION IF EXISTS slony_nodelock.cleanupnodelock_source(name);  -- release 0.2.0's, for cleanupnodelock() only
SET LOCAL client_min_messages = notice;
CREATE OR REPLACE FUNCTION slony_nodelock.patched_source(p_cluster name, p_function name)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT pg_catalog.concat_ws(E'\n',
    '# slony-nodelock @VERSION@: replaces Slony''s ' OPERATOR(pg_catalog.||) p_function OPERATOR(pg_catalog.||)
        '(); uninstall with @SHARE_DIR@/uninstall.sql.',
    'CLUSTER = bytes.fromhex(''' OPERATOR(pg_catalog.||)
        pg_catalog.encode(pg_catalog.convert_to(p_cluster::text, 'UTF8'), 'hex') OPERATOR(pg_catalog.||) ''').decode()',
    'if "slony_nodelock.entry" in SD:',
    '    return SD["slony_nodelock.entry"](' OPERATOR(pg_catalog.||) f.entry_arguments OPERATOR(pg_catalog.||) ')',
    slony_nodelock.logic_source(),
    'SD["slony_nodelock.entry"] = ' OPERATOR(pg_catalog.||) f.entry,
    'return ' OPERATOR(pg_catalog.||) f.entry OPERATOR(pg_catalog.||) '(' OPERATOR(pg_catalog.||) f.entry_arguments OPERATOR(pg_catalog.||) ')')
  FROM slony_nodelock.patched_functions() f
 WHERE f.function_name OPERATOR(pg_catalog.=) p_function
$fn$;
COMMENT ON FUNCTION slony_nodelock.patched_source(name, name) IS 'slony-nodelock: PL/Python source of a cluster''s replacement function';
