-- Puts our comment on a cluster's replacement function (see patched_functions()).
SET LOCAL client_min_messages = warning;  -- not "does not exist, skipping"
DROP FUNCTION IF EXISTS slony_nodelock.comment_patched(name);  -- release 0.2.0's, for cleanupnodelock() only
SET LOCAL client_min_messages = notice;
CREATE OR REPLACE FUNCTION slony_nodelock.comment_patched(p_cluster name, p_function name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- A COMMENT sets off the re-patch event trigger too, which knows this one by its text.
    EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', slony_nodelock.patched_function_oid(p_cluster, p_function),
        (SELECT f.comment FROM slony_nodelock.patched_functions() f WHERE f.function_name = p_function));
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.comment_patched(name, name) IS 'slony-nodelock: comment a replacement function as ours';
-- Changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.comment_patched(name, name) FROM PUBLIC;
