-- Refuse, before changing anything, what we cannot install into.
DO $guard$
DECLARE
    v_major constant int4 := pg_catalog.current_setting('server_version_num')::int4 / 10000;
    v_problem text;
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'slony-nodelock: % is not a superuser; run the script as postgres or another superuser', current_user;
    END IF;
    -- Before anything reads or runs what the schema holds: the kit runs it as a superuser.
    v_problem := @kit_schema_problem()@;
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'slony-nodelock: %; nothing changed. The kit runs what that schema holds as a superuser, so only superusers may own or change anything in it, and whoever did this could gain superuser rights through it: find out who did; to start afresh, drop it as a superuser (DROP SCHEMA slony_nodelock CASCADE) and run the script again', v_problem;
    END IF;
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'slony-nodelock: this server is a hot standby; run the script on its primary, and the standby gets the kit by replication';
    END IF;
    IF pg_catalog.current_setting('transaction_read_only')::boolean THEN
        RAISE EXCEPTION 'slony-nodelock: this session is read-only (a read-only transaction); run the script in a read-write session: PGOPTIONS=''-c default_transaction_read_only=off'' psql ...';
    END IF;
    IF pg_catalog.current_setting('server_version_num')::int4 < @MIN_SERVER_VERSION_NUM@ THEN
        RAISE EXCEPTION 'slony-nodelock: PostgreSQL % is too old; it needs PostgreSQL @MIN_SERVER_MAJOR@ or later (pg_stat_activity.backend_type)',
            pg_catalog.current_setting('server_version');
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name = 'plpython3u') THEN
        RAISE EXCEPTION 'slony-nodelock: PL/Python (plpython3u) is not available to this PostgreSQL %; nothing changed. Install the package postgresql-plpython3-% (Debian, Ubuntu; postgresql%-plpython3 on RHEL) where the server runs (on its machine, or in its container image), then run the script again',
            v_major, v_major, v_major;
    END IF;
END
$guard$;
