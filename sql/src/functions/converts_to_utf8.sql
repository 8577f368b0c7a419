-- Whether a name converts to UTF-8, which PL/Python needs of every text it is given: always in a
-- database whose encoding PostgreSQL checks; in a SQL_ASCII one, which checks nothing, only if its
-- bytes are valid UTF-8 (slonik takes a cluster name with any high byte).
CREATE OR REPLACE FUNCTION slony_nodelock.converts_to_utf8(p_name name)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM pg_catalog.convert_to(p_name::pg_catalog.text, 'UTF8');
    RETURN true;
EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
    RETURN false;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.converts_to_utf8(name) IS 'slony-nodelock: whether a name converts to UTF-8, as PL/Python needs';
