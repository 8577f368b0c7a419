-- The Slony cluster schemas in this database (see cluster_candidates()).
CREATE OR REPLACE FUNCTION slony_nodelock.clusters()
RETURNS SETOF name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT c.schema_name FROM slony_nodelock.cluster_candidates() c WHERE c.is_cluster ORDER BY 1
$fn$;
COMMENT ON FUNCTION slony_nodelock.clusters() IS 'slony-nodelock: Slony cluster schemas in this database';
