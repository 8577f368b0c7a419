-- Puts back a cluster's function (see patched_functions()) as Slony last installed it (source,
-- owner, comment), from the copy save_stock_function() kept. Returns false when there is no
-- copy. uninstall.sql does the same inline, because it must also work where this release's
-- functions are not installed.
CREATE OR REPLACE FUNCTION slony_nodelock.restore_stock_function(p_cluster name, p_function name)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_saved slony_nodelock.stock_function;
    v_fn regprocedure;
BEGIN
    SELECT s.* INTO v_saved FROM slony_nodelock.stock_function s
     WHERE s.cluster_schema = p_cluster AND s.function_name = p_function;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    EXECUTE v_saved.definition;
    v_fn := slony_nodelock.patched_function_oid(p_cluster, p_function);
    EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO %I', v_fn, v_saved.owner);
    EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', v_fn, v_saved.comment);
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.restore_stock_function(name, name) IS 'slony-nodelock: put back a cluster''s function as Slony last installed it';
-- Changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.restore_stock_function(name, name) FROM PUBLIC;
