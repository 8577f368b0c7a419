-- Records the identity of lock rows taken before install whose holder is live now, so that they
-- too are judged by identity from here on. Deletes nothing.
CREATE OR REPLACE FUNCTION slony_nodelock.adopt_live_locks(p_cluster name)
RETURNS int4
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $@PY@$
#@embed plpython/slony_nodelock/liveness.py
#@embed plpython/slony_nodelock/plpy_glue.py
return adopt(plpy, SD, p_cluster)
$@PY@$;
COMMENT ON FUNCTION slony_nodelock.adopt_live_locks(name) IS 'slony-nodelock: record identities of live lock rows that have none';
-- Changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.adopt_live_locks(name) FROM PUBLIC;
