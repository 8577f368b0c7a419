-- The schema, and the registry of applied migrations that decides which steps below still run.
-- IF NOT EXISTS is how a re-run stays harmless; its "already exists, skipping" is noise here.
SET LOCAL client_min_messages = warning;
-- Made here, or found as the guard checked it (superusers' only): never taken over from another
-- role. Two first installs at once: the second waits here for the first to commit, then finds the
-- schema, checks it as the guard would, and waits for the registry's lock (see locks.sql).
DO $schema$
DECLARE
    v_problem text;
BEGIN
    IF pg_catalog.to_regnamespace('slony_nodelock') IS NULL THEN
        BEGIN
            CREATE SCHEMA slony_nodelock;
        EXCEPTION WHEN duplicate_schema OR unique_violation THEN
            v_problem := @kit_schema_problem()@;
            IF v_problem IS NOT NULL THEN
                RAISE EXCEPTION 'slony-nodelock: %, made while this script ran; nothing changed. The kit runs what that schema holds as a superuser, so only superusers may own or change anything in it: find out who did; to start afresh, drop it as a superuser (DROP SCHEMA slony_nodelock CASCADE) and run the script again', v_problem;
            END IF;
            IF pg_catalog.to_regclass('slony_nodelock.migration') IS NOT NULL THEN
                LOCK TABLE slony_nodelock.migration IN SHARE ROW EXCLUSIVE MODE;
            END IF;
        END;
    END IF;
END
$schema$;
CREATE EXTENSION IF NOT EXISTS plpython3u;
COMMENT ON SCHEMA slony_nodelock IS 'slony-nodelock: a cleanupNodelock() for Slony-I that is not fooled by PID reuse';
GRANT USAGE ON SCHEMA slony_nodelock TO PUBLIC;

CREATE TABLE IF NOT EXISTS slony_nodelock.migration (
    version       int4 PRIMARY KEY,
    name          text NOT NULL,
    script_sha256 text NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SET LOCAL client_min_messages = notice;
COMMENT ON TABLE slony_nodelock.migration IS 'slony-nodelock: migrations/NNNN_*.sql steps applied here, with the hash of each script';

DO $newer$
DECLARE
    v_newest int4 := (SELECT pg_catalog.max(version) FROM slony_nodelock.migration);
    v_installed text;
BEGIN
    IF v_newest > @LATEST_MIGRATION@ THEN
        IF pg_catalog.to_regprocedure('slony_nodelock.version()') IS NOT NULL THEN
            EXECUTE 'SELECT slony_nodelock.version()' INTO v_installed;
        END IF;
        RAISE EXCEPTION 'slony-nodelock: database % holds migration % (installed release: %), newer than this script, release @VERSION@, whose newest migration is @LATEST_MIGRATION@; nothing changed. Install with the install.sql of release % or later; to go back to @VERSION@, run that release''s uninstall.sql first',
            pg_catalog.quote_ident(pg_catalog.current_database()), v_newest, COALESCE(v_installed, 'unknown'), COALESCE(v_installed, 'unknown');
    END IF;
END
$newer$;

-- Applies one migration unless the registry already has it; a recorded step whose script has
-- changed since is refused, because released migrations are never edited.
CREATE OR REPLACE FUNCTION pg_temp.slony_nodelock_migrate(p_version int4, p_name text, p_release text, p_sha256 text, p_script text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $migrate$
DECLARE
    v_recorded text;
BEGIN
    SELECT m.script_sha256 INTO v_recorded FROM slony_nodelock.migration m WHERE m.version = p_version;
    IF FOUND THEN
        IF v_recorded <> p_sha256 THEN
            RAISE EXCEPTION 'slony-nodelock: migration % (%, of release %) was applied here from another script than this install.sql of release @VERSION@ carries (sha256 % recorded, % here); nothing changed. Released migrations never change, so one of the two scripts was edited: install with an unmodified slony-nodelock @VERSION@ (its release files, or git checkout v@VERSION@); if this database was installed from an edited script, run uninstall.sql first, then install',
                p_version, p_name, p_release, pg_catalog.left(v_recorded, 12), pg_catalog.left(p_sha256, 12);
        END IF;
        RETURN;
    END IF;
    EXECUTE p_script;
    INSERT INTO slony_nodelock.migration (version, name, script_sha256) VALUES (p_version, p_name, p_sha256);
    RAISE NOTICE 'slony-nodelock: applied migration % (%, of release %)', p_version, p_name, p_release;
END
$migrate$;
