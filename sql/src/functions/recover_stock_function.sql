-- Finds Slony's own version of a cluster's function (see patched_functions()) when the kit has no
-- saved copy of it, as after DROP SCHEMA slony_nodelock CASCADE, which takes the saved copies and
-- leaves the cluster running the kit's function: without a copy, no later removal of the kit could
-- put Slony's back. Looks first in the copy keep_slony_functions() keeps in the cluster's schema,
-- then in the SQL file slonik loads for the cluster's slonyversion() (Debian's slony1-2-bin puts it
-- in /usr/share/slony1; a source build, in PostgreSQL's share directory), taking the function as
-- slonik would: @NAMESPACE@ becomes the schema name in double quotes. Saves what it finds in
-- stock_function and returns where it came from, or NULL when it found nothing.
CREATE OR REPLACE FUNCTION slony_nodelock.recover_stock_function(p_cluster name, p_function name)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- the patterns below are written for it
AS $fn$
DECLARE
    v_copy record;
    v_version text;
    v_file text;
    v_text text;
    v_statement text;
    v_comment text;
    v_owner name;
BEGIN
    -- Only what a superuser wrote is run: the copy as the kit makes it (a superuser's plain SQL
    -- function), Slony's slonyversion() as slonik makes it (a superuser's). patch_cluster() comes
    -- here only for a schema that cluster_candidates() accepts, where no other role may create.
    IF EXISTS (SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
                WHERE p.oid = pg_catalog.to_regprocedure(pg_catalog.format('%I.slony_nodelock_slony_functions()', p_cluster))
                  AND r.rolsuper AND NOT p.prosecdef AND p.prolang = (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'sql')) THEN
        EXECUTE pg_catalog.format('SELECT c.definition, c.owner, c.comment FROM %I.slony_nodelock_slony_functions() c'
                                  ' WHERE c.function_name = $1', p_cluster) INTO v_copy USING p_function;
        IF v_copy.definition IS NOT NULL THEN
            INSERT INTO slony_nodelock.stock_function AS s (cluster_schema, function_name, definition, prosrc, language, owner, comment)
            VALUES (p_cluster, p_function, v_copy.definition,
                    pg_catalog.substring(v_copy.definition, '\$function\$(.*)\$function\$'), 'plpgsql', v_copy.owner, v_copy.comment)
            ON CONFLICT (cluster_schema, function_name) DO NOTHING;
            RETURN pg_catalog.format('the copy kept in schema %I', p_cluster);
        END IF;
    END IF;

    SELECT r.rolname INTO v_owner FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
     WHERE p.oid = pg_catalog.to_regprocedure(pg_catalog.format('%I.slonyversion()', p_cluster)) AND r.rolsuper;
    IF v_owner IS NULL THEN
        RETURN NULL;  -- no slonyversion() that slonik made: no file to look for
    END IF;
    BEGIN
        EXECUTE pg_catalog.format('SELECT %I.slonyversion()', p_cluster) INTO v_version;
    EXCEPTION WHEN OTHERS THEN
        RETURN NULL;
    END;
    IF v_version !~ '^[0-9]+\.[0-9]+\.[0-9]+$' THEN
        RETURN NULL;
    END IF;
    FOR v_file IN
        SELECT d OPERATOR(pg_catalog.||) '/slony1_funcs.' OPERATOR(pg_catalog.||) v_version OPERATOR(pg_catalog.||) '.sql'
          FROM (SELECT '/usr/share/slony1' AS d
                UNION ALL SELECT c.setting FROM pg_catalog.pg_config c WHERE c.name = 'SHAREDIR') dirs
    LOOP
        v_text := pg_catalog.pg_read_file(v_file, 0, 100000000, true);
        CONTINUE WHEN v_text IS NULL;
        -- Slony's SQL spells the name in mixed case (cleanupNodelock); the body ends its dollar quote
        -- with "$$ language plpgsql;", and a COMMENT ON FUNCTION follows.
        v_statement := pg_catalog.substring(v_text, '(?i)(create or replace function @NAMESPACE@\.'
                           OPERATOR(pg_catalog.||) p_function OPERATOR(pg_catalog.||) '\s*?\(.*?\$\$\s*language plpgsql)\s*;');
        v_comment := pg_catalog.substring(v_text, '(?i)comment on function @NAMESPACE@\.'
                           OPERATOR(pg_catalog.||) p_function OPERATOR(pg_catalog.||) '\s*\([^)]*\)\s*is\s*''((?:[^'']|'''')*)''\s*;');
        CONTINUE WHEN v_statement IS NULL;
        v_statement := pg_catalog.replace(v_statement, '@NAMESPACE@', '"' OPERATOR(pg_catalog.||) p_cluster OPERATOR(pg_catalog.||) '"');
        INSERT INTO slony_nodelock.stock_function AS s (cluster_schema, function_name, definition, prosrc, language, owner, comment)
        VALUES (p_cluster, p_function, v_statement, pg_catalog.substring(v_statement, '\$\$(.*)\$\$'), 'plpgsql',
                v_owner, pg_catalog.replace(v_comment, '''''', ''''))
        ON CONFLICT (cluster_schema, function_name) DO NOTHING;
        RETURN pg_catalog.format('Slony''s %s', v_file);
    END LOOP;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.recover_stock_function(name, name) IS 'slony-nodelock: find Slony''s own version of a cluster''s function that has no saved copy';
-- Reads files and changes the catalog; for the superuser who installs, not for every role.
REVOKE EXECUTE ON FUNCTION slony_nodelock.recover_stock_function(name, name) FROM PUBLIC;
