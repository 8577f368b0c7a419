(SELECT COALESCE(
    (SELECT pg_catalog.format('the schema slony_nodelock belongs to %s, who is not a superuser', pg_catalog.quote_ident(r.rolname))
       FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
      WHERE n.oid OPERATOR(pg_catalog.=) k.oid AND NOT r.rolsuper),
    (SELECT pg_catalog.format('%s may create objects in the schema slony_nodelock',
                pg_catalog.string_agg(CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(g.rolname) END, ', '))
       FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
       LEFT JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.grantee
      WHERE n.oid OPERATOR(pg_catalog.=) k.oid AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE' AND NOT COALESCE(g.rolsuper, false)
     HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0),
    (SELECT pg_catalog.format('%s slony_nodelock.%s belongs to %s, who is not a superuser', o.kind, pg_catalog.quote_ident(o.name),
                              pg_catalog.quote_ident(r.rolname))
       FROM (SELECT 'relation' AS kind, c.relname AS name, c.relowner AS owner FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) k.oid
             UNION ALL SELECT 'function', p.proname, p.proowner FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) k.oid
             UNION ALL SELECT 'type', t.typname, t.typowner FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) k.oid
             UNION ALL SELECT 'operator', o.oprname, o.oprowner FROM pg_catalog.pg_operator o WHERE o.oprnamespace OPERATOR(pg_catalog.=) k.oid
             UNION ALL SELECT 'operator class', c.opcname, c.opcowner FROM pg_catalog.pg_opclass c WHERE c.opcnamespace OPERATOR(pg_catalog.=) k.oid
             UNION ALL SELECT 'operator family', f.opfname, f.opfowner FROM pg_catalog.pg_opfamily f WHERE f.opfnamespace OPERATOR(pg_catalog.=) k.oid
             UNION ALL SELECT 'collation', c.collname, c.collowner FROM pg_catalog.pg_collation c WHERE c.collnamespace OPERATOR(pg_catalog.=) k.oid
             UNION ALL SELECT 'conversion', c.conname, c.conowner FROM pg_catalog.pg_conversion c WHERE c.connamespace OPERATOR(pg_catalog.=) k.oid
             UNION ALL SELECT 'text search configuration', c.cfgname, c.cfgowner FROM pg_catalog.pg_ts_config c WHERE c.cfgnamespace OPERATOR(pg_catalog.=) k.oid
             UNION ALL SELECT 'text search dictionary', d.dictname, d.dictowner FROM pg_catalog.pg_ts_dict d WHERE d.dictnamespace OPERATOR(pg_catalog.=) k.oid
             UNION ALL SELECT 'statistics object', s.stxname, s.stxowner FROM pg_catalog.pg_statistic_ext s WHERE s.stxnamespace OPERATOR(pg_catalog.=) k.oid) o
       JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) o.owner
      WHERE NOT r.rolsuper ORDER BY o.kind, o.name LIMIT 1),
    (SELECT pg_catalog.format('%s may %s slony_nodelock.%s', CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                                                   ELSE pg_catalog.quote_ident(g.rolname) END,
                              pg_catalog.lower(a.privilege_type), pg_catalog.quote_ident(c.relname))
       FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
       LEFT JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.grantee
      -- Reading aside: release 0.4.0 let PUBLIC read lock_identity, which install now revokes.
      WHERE c.relnamespace OPERATOR(pg_catalog.=) k.oid AND a.privilege_type OPERATOR(pg_catalog.<>) 'SELECT'
        AND NOT COALESCE(g.rolsuper, false)
      ORDER BY c.relname, a.privilege_type LIMIT 1),
    (SELECT pg_catalog.format('%s %s on slony_nodelock.%s was not made by the kit', x.kind, pg_catalog.quote_ident(x.name), pg_catalog.quote_ident(c.relname))
       FROM (SELECT 'trigger' AS kind, t.tgname AS name, t.tgrelid AS rel FROM pg_catalog.pg_trigger t WHERE NOT t.tgisinternal
             UNION ALL SELECT 'rule', w.rulename, w.ev_class FROM pg_catalog.pg_rewrite w
             UNION ALL SELECT 'policy', p.polname, p.polrelid FROM pg_catalog.pg_policy p) x
       JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) x.rel
      WHERE c.relnamespace OPERATOR(pg_catalog.=) k.oid ORDER BY x.kind, x.name LIMIT 1))
   FROM (SELECT pg_catalog.to_regnamespace('slony_nodelock')::pg_catalog.oid AS oid) k)
