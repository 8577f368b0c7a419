-- Puts our comment on a cluster's replacement cleanupnodelock(). Every comment of ours starts with
-- 'slony-nodelock:', which is how the rest of the kit tells it from Slony's.
CREATE OR REPLACE FUNCTION slony_nodelock.comment_patched(p_cluster name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- A COMMENT sets off the re-patch event trigger too, which knows this one by its text.
    EXECUTE pg_catalog.format('COMMENT ON FUNCTION %I.cleanupnodelock() IS %L', p_cluster,
        'slony-nodelock: removes sl_nodelock rows whose holder is gone, judged by PID and backend start time');
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.comment_patched(name) IS 'slony-nodelock: comment a replacement cleanupnodelock() as ours';
-- Changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.comment_patched(name) FROM PUBLIC;
