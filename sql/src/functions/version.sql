-- The installed release of slony-nodelock.
CREATE OR REPLACE FUNCTION slony_nodelock.version()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT '@VERSION@'::text $fn$;
COMMENT ON FUNCTION slony_nodelock.version() IS 'slony-nodelock: the installed release';
