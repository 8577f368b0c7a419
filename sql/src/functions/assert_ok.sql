-- The raising form of verify(), Sqitch-style, for monitoring and for
-- psql -v ON_ERROR_STOP=1 -c 'select slony_nodelock.assert_ok()': returns how many clusters are
-- patched and well, or raises naming every problem. A database with no Slony cluster raises too,
-- since a check run against the wrong database must not pass; p_none_expected => true, where
-- none is expected, returns 0 instead.
-- Two functions rather than one with a default: releases up to 0.3.0 have assert_ok() without
-- arguments, which a default would make ambiguous beside this one, and which an older install.sql
-- run over this release recreates; replaced in place, it also keeps the GRANTs given on it.
-- A build between releases had assert_ok(boolean DEFAULT false), whose default CREATE OR REPLACE
-- cannot remove.
DO $no_default$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_proc p WHERE p.oid = pg_catalog.to_regprocedure('slony_nodelock.assert_ok(boolean)')
                  AND p.pronargdefaults > 0) THEN
        DROP FUNCTION slony_nodelock.assert_ok(boolean);
    END IF;
END
$no_default$;
CREATE OR REPLACE FUNCTION slony_nodelock.assert_ok(p_none_expected boolean)
RETURNS int4
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_problems text;
    v_clusters int4;
BEGIN
    -- verify() separates one cluster's problems with ' | '; clusters are separated with ' || '.
    SELECT pg_catalog.string_agg(pg_catalog.format('%s: %s', COALESCE(slony_nodelock.cluster_label(v.cluster), 'the kit'), v.problems), ' || ')
               FILTER (WHERE v.problems IS NOT NULL),
           pg_catalog.count(v.cluster)
      INTO v_problems, v_clusters
      FROM slony_nodelock.verify() v;
    IF v_problems IS NOT NULL THEN
        RAISE EXCEPTION 'slony-nodelock: %', v_problems;
    END IF;
    IF v_clusters = 0 AND NOT COALESCE(p_none_expected, false) THEN
        RAISE EXCEPTION 'slony-nodelock: database % holds no Slony cluster, so nothing was checked; connect to the node''s database (psql -d DB), or call slony_nodelock.assert_ok(p_none_expected => true) where none is expected',
            pg_catalog.current_database();
    END IF;
    RETURN v_clusters;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.assert_ok(boolean) IS 'slony-nodelock: raise unless every cluster is patched and well; with no cluster, raise unless p_none_expected';
CREATE OR REPLACE FUNCTION slony_nodelock.assert_ok()
RETURNS int4
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT slony_nodelock.assert_ok(false) $fn$;
COMMENT ON FUNCTION slony_nodelock.assert_ok() IS 'slony-nodelock: raise unless every cluster is patched and well, and unless there is one';
