-- The raising form of verify(), Sqitch-style, for monitoring and for
-- psql -v ON_ERROR_STOP=1 -c 'select slony_nodelock.assert_ok()': returns how many clusters are
-- patched and well, or raises naming every problem.
CREATE OR REPLACE FUNCTION slony_nodelock.assert_ok()
RETURNS int4
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_problems text;
    v_clusters int4;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('cluster %s: %s', pg_catalog.quote_ident(v.cluster), v.problems), ' | ')
               FILTER (WHERE v.problems IS NOT NULL),
           pg_catalog.count(*)
      INTO v_problems, v_clusters
      FROM slony_nodelock.verify() v;
    IF v_problems IS NOT NULL THEN
        RAISE EXCEPTION 'slony-nodelock: %', v_problems;
    END IF;
    RETURN v_clusters;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.assert_ok() IS 'slony-nodelock: raise unless every cluster is patched and well';
