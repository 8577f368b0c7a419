-- Every schema holding an sl_nodelock table, and whether it is a Slony cluster we patch. Slony's
-- init cluster and store node make the schema with sl_node and sl_nodelock, as the superuser that
-- slonik connects as. A look-alike made by another role is not ours to touch: patching it would
-- put our function there with that role as its owner, and the kit's superuser code would call
-- functions found there (slonyversion(), the kept copies of Slony's functions). So the schema and
-- both tables must belong to a superuser, no other role may create objects in the schema (PUBLIC
-- may in PostgreSQL 13 and 14's public schema), and a temporary schema never counts, whoever owns
-- it. Clusters are found from Slony's own tables, never from cleanupnodelock(), so that a cluster
-- whose function is gone is still checked.
CREATE OR REPLACE FUNCTION slony_nodelock.cluster_candidates()
RETURNS TABLE (schema_name name, has_sl_node boolean, is_cluster boolean, why_not text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT n.nspname,
           t.sl_node_owner IS NOT NULL,
           s.why_not IS NULL,
           s.why_not
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) n.nspowner
      JOIN pg_catalog.pg_class l ON l.relnamespace OPERATOR(pg_catalog.=) n.oid
                                AND l.relname OPERATOR(pg_catalog.=) 'sl_nodelock' AND l.relkind OPERATOR(pg_catalog.=) 'r'
      JOIN pg_catalog.pg_roles lo ON lo.oid OPERATOR(pg_catalog.=) l.relowner
     CROSS JOIN LATERAL (SELECT
               (SELECT c.relowner FROM pg_catalog.pg_class c
                 WHERE c.relnamespace OPERATOR(pg_catalog.=) n.oid
                   AND c.relname OPERATOR(pg_catalog.=) 'sl_node' AND c.relkind OPERATOR(pg_catalog.=) 'r') AS sl_node_owner,
               (SELECT pg_catalog.string_agg(CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                                  ELSE pg_catalog.quote_ident(g.rolname) END, ', ' ORDER BY g.rolname)
                  FROM pg_catalog.aclexplode(n.nspacl) a
                  LEFT JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.grantee
                 WHERE a.privilege_type OPERATOR(pg_catalog.=) 'CREATE' AND NOT COALESCE(g.rolsuper, false)) AS creators) t
     -- Slony's functions are the superuser's that ran slonik: the kit saves, calls and replaces them.
     -- The kit's own there (its patched functions, its copies and keeper) are its concern: verify()
     -- names a demoted installer, and keep_slony_functions() replaces a copy another role owns.
     LEFT JOIN LATERAL (SELECT pg_catalog.quote_ident(p.proname) AS foreign_function, pg_catalog.quote_ident(r.rolname) AS foreign_owner
                          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) p.proowner
                         WHERE p.pronamespace OPERATOR(pg_catalog.=) n.oid AND NOT r.rolsuper
                           AND NOT (p.proname OPERATOR(pg_catalog.=) ANY (ARRAY['slony_nodelock_slony_functions', 'slony_nodelock_keeper']::name[])
                                    OR (p.proname OPERATOR(pg_catalog.=) ANY (ARRAY['cleanupnodelock', 'terminatenodeconnections']::name[])
                                        AND p.prosrc OPERATOR(pg_catalog.~~) '# slony-nodelock %'))
                         ORDER BY p.proname LIMIT 1) t2 ON true
     CROSS JOIN LATERAL (SELECT CASE
               WHEN t.sl_node_owner IS NULL THEN 'it has no sl_node table'
               WHEN n.nspname OPERATOR(pg_catalog.~) '^pg_(toast_)?temp_' THEN 'it is a temporary schema'
               WHEN NOT o.rolsuper THEN pg_catalog.format('it is owned by %s, not a superuser', o.rolname)
               WHEN NOT lo.rolsuper THEN pg_catalog.format('its sl_nodelock is owned by %s, not a superuser', lo.rolname)
               WHEN NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) t.sl_node_owner)
                   THEN pg_catalog.format('its sl_node is owned by %s, not a superuser', pg_catalog.pg_get_userbyid(t.sl_node_owner))
               WHEN t.creators IS NOT NULL THEN pg_catalog.format('%s may create objects in it, not only superusers', t.creators)
               WHEN t2.foreign_function IS NOT NULL THEN pg_catalog.format('its function %s belongs to %s, not a superuser', t2.foreign_function, t2.foreign_owner)
               WHEN (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid OPERATOR(pg_catalog.=) l.oid AND NOT a.attisdropped
                        AND a.attname OPERATOR(pg_catalog.=) ANY (ARRAY['nl_nodeid', 'nl_conncnt', 'nl_backendpid']::name[])
                        AND a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.int4'::pg_catalog.regtype) OPERATOR(pg_catalog.<>) 3
                   THEN 'its sl_nodelock lacks the int4 columns nl_nodeid, nl_conncnt and nl_backendpid of Slony-I 2.x'
               -- The kit's Python gets cluster names as text, so a name must convert to UTF-8,
               -- which only a SQL_ASCII database does not check (slonik takes any high byte).
               WHEN NOT slony_nodelock.converts_to_utf8(n.nspname) THEN 'its name does not convert to UTF-8 and back unchanged, which the kit''s PL/Python needs (a SQL_ASCII database checks no name)'
           END AS why_not) s
     ORDER BY n.nspname
$fn$;
COMMENT ON FUNCTION slony_nodelock.cluster_candidates() IS 'slony-nodelock: schemas holding sl_nodelock, and whether each is a Slony cluster';
