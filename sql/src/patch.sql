-- No role but a superuser may create in the kit's schema or write its tables, whatever default
-- privileges a superuser has set (ALTER DEFAULT PRIVILEGES ... GRANT CREATE ON SCHEMAS, or ...
-- ON TABLES): the kit runs what they hold as a superuser. Reading is for superusers too.
DO $privileges$
DECLARE
    v_grant record;
BEGIN
    FOR v_grant IN
        SELECT DISTINCT 'SCHEMA slony_nodelock' AS object,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(g.rolname) END AS grantee
          FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
          LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
         WHERE n.nspname = 'slony_nodelock' AND a.privilege_type <> 'USAGE' AND NOT COALESCE(g.rolsuper, false)
        UNION
        SELECT DISTINCT 'TABLE ' || c.oid::pg_catalog.regclass::text,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(g.rolname) END
          FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
          LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
         WHERE c.relnamespace = 'slony_nodelock'::pg_catalog.regnamespace AND c.relkind IN ('r', 'S')
           AND NOT COALESCE(g.rolsuper, false)
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %s', v_grant.object, v_grant.grantee);
    END LOOP;
    GRANT USAGE ON SCHEMA slony_nodelock TO PUBLIC;
END
$privileges$;
-- Patch every Slony cluster schema in this database, then commit all of it at once.
SELECT slony_nodelock.patch_all_clusters() AS patched \gset
COMMIT;
