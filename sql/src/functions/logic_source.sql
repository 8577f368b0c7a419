-- The Python of slony-nodelock, the one copy in the catalog: the liveness decision and its
-- database glue, pasted from plpython/ by sql/generate.py. Each cluster's replacement
-- cleanupnodelock() is built around it, and adopt_live_locks() loads it.
CREATE OR REPLACE FUNCTION slony_nodelock.logic_source()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT $@PY@$
#@embed plpython/slony_nodelock/liveness.py
#@embed plpython/slony_nodelock/plpy_glue.py
$@PY@$::text
$fn$;
COMMENT ON FUNCTION slony_nodelock.logic_source() IS 'slony-nodelock: the Python source of the liveness logic and its glue';
