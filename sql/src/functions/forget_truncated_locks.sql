-- Statement trigger on each cluster's sl_nodelock: TRUNCATE removes the rows without row
-- triggers, so it removes their identity records here.
CREATE OR REPLACE FUNCTION slony_nodelock.forget_truncated_locks()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    DELETE FROM slony_nodelock.lock_identity i WHERE i.cluster_schema = TG_TABLE_SCHEMA;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.forget_truncated_locks() IS 'slony-nodelock: trigger forgetting identities of truncated sl_nodelock rows';
-- A trigger function that writes our table with our rights: nobody else may attach it.
REVOKE EXECUTE ON FUNCTION slony_nodelock.forget_truncated_locks() FROM PUBLIC;
