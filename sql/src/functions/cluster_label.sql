-- 'cluster "prod" (schema "_prod")': how every message names a cluster, with the name slonik's
-- scripts and slon's logs use and the schema Slony made for it (sql/src/expressions/, also written
-- in where no function may be called). liveness.cluster_label() words it the same way in Python
-- (tests/test_messages.py checks that they agree).
CREATE OR REPLACE FUNCTION slony_nodelock.cluster_label(p_schema name)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT @cluster_label(p_schema)@
$fn$;
COMMENT ON FUNCTION slony_nodelock.cluster_label(name) IS 'slony-nodelock: how messages name a cluster';
