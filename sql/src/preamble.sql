-- Run as a superuser:  psql -v ON_ERROR_STOP=1 -d DB -f sql/install.sql
-- Everything below is one transaction: it installs all of it or, on any error, nothing.
-- No lock is waited for longer than lock_timeout (10s unless psql -v lock_timeout=60s is given).
\set ON_ERROR_STOP 1
\set VERBOSITY terse
\set QUIET 1
\if :{?lock_timeout}
\else
\set lock_timeout 10s
\endif
BEGIN;
SET LOCAL lock_timeout = :'lock_timeout';
-- Nothing the script runs can be redirected by a schema on the caller's search_path.
SET LOCAL search_path = pg_catalog, pg_temp;
