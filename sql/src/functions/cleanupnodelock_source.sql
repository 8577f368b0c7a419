-- The PL/Python body of a cluster's replacement cleanupnodelock(): the liveness logic and its
-- database glue, generated from plpython/ by sql/generate.py. The cluster schema's name goes in as
-- hex, so no identifier, however odd, can change the Python.
CREATE OR REPLACE FUNCTION slony_nodelock.cleanupnodelock_source(p_cluster name)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT '# slony-nodelock @VERSION@: replaces Slony''s cleanupNodelock(); uninstall with sql/uninstall.sql.'
    OPERATOR(pg_catalog.||) E'\n'
    OPERATOR(pg_catalog.||) 'CLUSTER = bytes.fromhex('''
    OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.convert_to(p_cluster::text, 'UTF8'), 'hex')
    OPERATOR(pg_catalog.||) ''').decode()' OPERATOR(pg_catalog.||) E'\n'
    OPERATOR(pg_catalog.||) $@PY@$
# The code below defines the logic; it runs once per session, after that SD holds it.
if "slony_nodelock.cleanup" in SD:
    return SD["slony_nodelock.cleanup"](plpy, SD, CLUSTER)
#@embed plpython/slony_nodelock/liveness.py
#@embed plpython/slony_nodelock/plpy_glue.py
SD["slony_nodelock.cleanup"] = cleanup
return cleanup(plpy, SD, CLUSTER)
$@PY@$
$fn$;
COMMENT ON FUNCTION slony_nodelock.cleanupnodelock_source(name) IS 'slony-nodelock: PL/Python source of a cluster''s replacement cleanupnodelock()';
