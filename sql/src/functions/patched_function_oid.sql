-- A cluster's function of that name and Slony's signature, or NULL when it has none. Through the
-- catalogs, not to_regprocedure(): verify() may run for a role without USAGE on the schema.
CREATE OR REPLACE FUNCTION slony_nodelock.patched_function_oid(p_cluster name, p_function name)
RETURNS regprocedure
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT p.oid::pg_catalog.regprocedure
      FROM slony_nodelock.patched_functions() f
      JOIN pg_catalog.pg_proc p ON p.proname OPERATOR(pg_catalog.=) f.function_name
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
     WHERE f.function_name OPERATOR(pg_catalog.=) p_function AND n.nspname OPERATOR(pg_catalog.=) p_cluster
       AND p.proargtypes OPERATOR(pg_catalog.=) pg_catalog.array_to_string(ARRAY(
               SELECT t::pg_catalog.regtype::pg_catalog.oid
                 FROM pg_catalog.unnest(pg_catalog.string_to_array(NULLIF(f.argument_types, ''), ',')) t), ' ')::pg_catalog.oidvector
$fn$;
COMMENT ON FUNCTION slony_nodelock.patched_function_oid(name, name) IS 'slony-nodelock: a cluster''s function that the kit replaces, if present';
