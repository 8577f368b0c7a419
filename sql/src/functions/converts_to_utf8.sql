-- Whether a name converts to UTF-8 and back to the same bytes, which PL/Python needs of every
-- text it is given and sends back: in a SQL_ASCII database, which checks nothing, only if its
-- bytes are valid UTF-8 (slonik takes a cluster name with any high byte).
CREATE OR REPLACE FUNCTION slony_nodelock.converts_to_utf8(p_name name)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- And back: in EUC_JP a few characters (NEC row 13) come back as other bytes, so the name the
    -- kit's Python would query by would be another schema's.
    RETURN pg_catalog.convert(pg_catalog.convert_to(p_name::pg_catalog.text, 'UTF8'), 'UTF8', pg_catalog.getdatabaseencoding())
           OPERATOR(pg_catalog.=) pg_catalog.convert_to(p_name::pg_catalog.text, pg_catalog.getdatabaseencoding());
EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
    RETURN false;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.converts_to_utf8(name) IS 'slony-nodelock: whether a name converts to UTF-8 and back, as PL/Python needs';
