-- Saves a cluster's function (see patched_functions()) as Slony installed it, so that uninstall
-- can put it back. Does nothing when the function there is ours (of any release). Returns
-- whether it saved.
SET LOCAL client_min_messages = warning;  -- not "does not exist, skipping"
DROP FUNCTION IF EXISTS slony_nodelock.save_stock_function(name);  -- release 0.2.0's, for cleanupnodelock() only
SET LOCAL client_min_messages = notice;
CREATE OR REPLACE FUNCTION slony_nodelock.save_stock_function(p_cluster name, p_function name)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_fn pg_catalog.pg_proc;
    v_comment text;
BEGIN
    SELECT p.* INTO v_fn FROM pg_catalog.pg_proc p WHERE p.oid = slony_nodelock.patched_function_oid(p_cluster, p_function);
    IF NOT FOUND OR v_fn.prosrc LIKE '# slony-nodelock %' THEN
        RETURN false;
    END IF;
    -- CREATE OR REPLACE keeps a function's comment, so a comment of ours found on Slony's fresh
    -- function is not Slony's: keep the one saved before.
    v_comment := pg_catalog.obj_description(v_fn.oid, 'pg_proc');
    IF v_comment LIKE 'slony-nodelock:%' THEN
        v_comment := (SELECT s.comment FROM slony_nodelock.stock_function s
                       WHERE s.cluster_schema = p_cluster AND s.function_name = p_function);
    END IF;
    INSERT INTO slony_nodelock.stock_function AS s (cluster_schema, function_name, definition, prosrc, language, owner, comment)
    VALUES (p_cluster, p_function, pg_catalog.pg_get_functiondef(v_fn.oid), v_fn.prosrc,
            (SELECT l.lanname FROM pg_catalog.pg_language l WHERE l.oid = v_fn.prolang),
            pg_catalog.pg_get_userbyid(v_fn.proowner), v_comment)
    ON CONFLICT (cluster_schema, function_name) DO UPDATE
       SET definition = EXCLUDED.definition, prosrc = EXCLUDED.prosrc, language = EXCLUDED.language,
           owner = EXCLUDED.owner, comment = EXCLUDED.comment, saved_at = pg_catalog.now();
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.save_stock_function(name, name) IS 'slony-nodelock: save a cluster''s stock function for uninstall';
-- Changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.save_stock_function(name, name) FROM PUBLIC;
