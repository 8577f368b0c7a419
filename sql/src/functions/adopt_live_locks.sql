-- Records the identity of lock rows taken before install whose holder is live now, so that they
-- too are judged by identity from here on. Deletes nothing. The logic comes from logic_source(),
-- loaded once per session.
CREATE OR REPLACE FUNCTION slony_nodelock.adopt_live_locks(p_cluster name)
RETURNS int4
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $fn$
adopt = SD.get("slony_nodelock.adopt")
if adopt is None:
    logic = {}
    exec(plpy.execute("select slony_nodelock.logic_source() as source")[0]["source"], logic)
    adopt = SD["slony_nodelock.adopt"] = logic["adopt"]
return adopt(plpy, SD, p_cluster)
$fn$;
COMMENT ON FUNCTION slony_nodelock.adopt_live_locks(name) IS 'slony-nodelock: record identities of live lock rows that have none';
-- Changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.adopt_live_locks(name) FROM PUBLIC;
