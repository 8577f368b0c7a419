-- Run as a superuser:  psql -v ON_ERROR_STOP=1 -d DB -f sql/install.sql
-- Everything below is one transaction: it installs all of it or, on any error, nothing.
\set ON_ERROR_STOP 1
\set VERBOSITY terse
\set QUIET 1
BEGIN;
-- Nothing the script runs can be redirected by a schema on the caller's search_path.
SET LOCAL search_path = pg_catalog, pg_temp;
-- One install (or uninstall) at a time in a database: a second waits here, then finds the kit
-- installed; without it, two first installs collide on CREATE EXTENSION and CREATE SCHEMA.
DO $one_at_a_time$ BEGIN PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('slony_nodelock install')); END $one_at_a_time$;
