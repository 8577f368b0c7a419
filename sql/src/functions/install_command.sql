-- The psql command that installs, or repairs, the kit in this database: what messages tell the
-- operator to run. The path is where the README has the scripts put (make install).
CREATE OR REPLACE FUNCTION slony_nodelock.install_command()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_catalog.format('psql -v ON_ERROR_STOP=1 -d "%s" -f @INSTALL_SCRIPT@',
                             pg_catalog.replace(pg_catalog.current_database(), '"', '""'))
$fn$;
COMMENT ON FUNCTION slony_nodelock.install_command() IS 'slony-nodelock: the psql command that installs or repairs the kit here';
