-- Patches every Slony cluster schema in the database; returns how many it changed. A schema that
-- only looks like a cluster is left alone, with a NOTICE saying why.
CREATE OR REPLACE FUNCTION slony_nodelock.patch_all_clusters()
RETURNS int4
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_candidate record;
    v_seen int4 := 0;
    v_changed int4 := 0;
BEGIN
    FOR v_candidate IN SELECT c.schema_name, c.is_cluster, c.why_not FROM slony_nodelock.cluster_candidates() c LOOP
        IF NOT v_candidate.is_cluster THEN
            -- No advice to hand it to a superuser: whatever its owner put in it would then run as one.
            RAISE NOTICE 'slony-nodelock: skipped schema %: it holds an sl_nodelock table, but %, so the kit does not take it for a Slony cluster and leaves it alone',
                pg_catalog.quote_ident(v_candidate.schema_name), v_candidate.why_not;
            CONTINUE;
        END IF;
        v_seen := v_seen + 1;
        IF slony_nodelock.patch_cluster(v_candidate.schema_name) THEN
            v_changed := v_changed + 1;
        END IF;
    END LOOP;
    IF v_seen = 0 THEN
        RAISE NOTICE 'slony-nodelock: database % holds no Slony cluster, so none was patched; the kit stays installed and patches each cluster that slonik creates here later (init cluster, store node)',
            pg_catalog.quote_ident(pg_catalog.current_database());
    END IF;
    RETURN v_changed;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.patch_all_clusters() IS 'slony-nodelock: patch every Slony cluster schema in this database';
-- Changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.patch_all_clusters() FROM PUBLIC;
