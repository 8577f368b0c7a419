-- Saves a cluster's cleanupnodelock() as Slony installed it, so that uninstall can put it back.
-- Does nothing when the function there is ours (of any release). Returns whether it saved.
CREATE OR REPLACE FUNCTION slony_nodelock.save_stock_function(p_cluster name)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_fn pg_catalog.pg_proc;
    v_comment text;
BEGIN
    SELECT p.* INTO v_fn FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident(p_cluster))
       AND p.proname = 'cleanupnodelock' AND p.pronargs = 0;
    IF NOT FOUND OR v_fn.prosrc LIKE '# slony-nodelock %' THEN
        RETURN false;
    END IF;
    -- CREATE OR REPLACE keeps a function's comment, so a comment of ours found on Slony's fresh
    -- function is not Slony's: keep the one saved before.
    v_comment := pg_catalog.obj_description(v_fn.oid, 'pg_proc');
    IF v_comment LIKE 'slony-nodelock:%' THEN
        v_comment := (SELECT s.comment FROM slony_nodelock.stock_function s WHERE s.cluster_schema = p_cluster);
    END IF;
    INSERT INTO slony_nodelock.stock_function AS s (cluster_schema, definition, prosrc, language, owner, comment)
    VALUES (p_cluster, pg_catalog.pg_get_functiondef(v_fn.oid), v_fn.prosrc,
            (SELECT l.lanname FROM pg_catalog.pg_language l WHERE l.oid = v_fn.prolang),
            pg_catalog.pg_get_userbyid(v_fn.proowner), v_comment)
    ON CONFLICT (cluster_schema) DO UPDATE
       SET definition = EXCLUDED.definition, prosrc = EXCLUDED.prosrc, language = EXCLUDED.language,
           owner = EXCLUDED.owner, comment = EXCLUDED.comment, saved_at = pg_catalog.now();
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.save_stock_function(name) IS 'slony-nodelock: save a cluster''s stock cleanupnodelock() for uninstall';
-- Changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.save_stock_function(name) FROM PUBLIC;
