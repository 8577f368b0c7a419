pg_catalog.format('psql -v ON_ERROR_STOP=1 -d %s -f @SHARE_DIR@/%s',
    CASE WHEN pg_catalog.current_database() ~ '^[A-Za-z0-9_@%+=:,./-]+$' THEN pg_catalog.current_database()::text
         ELSE '''' || pg_catalog.replace(pg_catalog.current_database(), '''', '''"''"''') || '''' END,
    @ARG@)
