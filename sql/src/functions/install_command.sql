-- The psql command that runs one of the kit's scripts (install.sql by default: it installs, or
-- repairs) in this database: what messages tell the operator to run. The path is where make
-- install puts the scripts. The database name is quoted for a POSIX shell as Python's
-- shlex.quote() does (plpy_glue.install_command() uses that), since the command is meant to be
-- pasted into one: bare when it holds only safe characters, else in single quotes. The expression
-- is sql/src/expressions/install_command.sql, also written in where no function may be called.
CREATE OR REPLACE FUNCTION slony_nodelock.install_command(p_script text DEFAULT 'install.sql')
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT @install_command(p_script)@
$fn$;
COMMENT ON FUNCTION slony_nodelock.install_command(text) IS 'slony-nodelock: the psql command that runs one of the kit''s scripts here';
