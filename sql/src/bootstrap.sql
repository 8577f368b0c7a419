-- The schema, and the registry of applied migrations that decides which steps below still run.
-- IF NOT EXISTS is how a re-run stays harmless; its "already exists, skipping" is noise here.
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS plpython3u;
CREATE SCHEMA IF NOT EXISTS slony_nodelock;
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
BEGIN
    IF v_newest > @LATEST_MIGRATION@ THEN
        RAISE EXCEPTION 'slony-nodelock: this database is at migration %, newer than this script knows (%); install with the script of the newer release',
            v_newest, @LATEST_MIGRATION@;
    END IF;
END
$newer$;

-- Applies one migration unless the registry already has it; a recorded step whose script has
-- changed since is refused, because released migrations are never edited.
CREATE OR REPLACE FUNCTION pg_temp.slony_nodelock_migrate(p_version int4, p_name text, p_sha256 text, p_script text)
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
            RAISE EXCEPTION 'slony-nodelock: migration % (%) was applied from a different script (sha256 % recorded, % here); released migrations must not change',
                p_version, p_name, v_recorded, p_sha256;
        END IF;
        RETURN;
    END IF;
    EXECUTE p_script;
    INSERT INTO slony_nodelock.migration (version, name, script_sha256) VALUES (p_version, p_name, p_sha256);
    RAISE NOTICE 'slony-nodelock: applied migration %', p_name;
END
$migrate$;
