-- The event triggers that keep clusters patched through Slony's own DDL. CREATE EVENT TRIGGER has
-- no OR REPLACE, so each is created only when missing. ALWAYS, so that they fire whatever
-- session_replication_role the DDL runs under (and re-enabled if someone disabled them).
DO $event_triggers$
BEGIN
    -- Release 0.2.0 also listened to CREATE TABLE; a trigger with other tags is made anew.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger e WHERE e.evtname = 'slony_nodelock_repatch'
                      AND e.evttags = ARRAY['CREATE FUNCTION', 'COMMENT']) THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger e WHERE e.evtname = 'slony_nodelock_repatch') THEN
            DROP EVENT TRIGGER slony_nodelock_repatch;
        END IF;
        CREATE EVENT TRIGGER slony_nodelock_repatch ON ddl_command_end
            WHEN TAG IN ('CREATE FUNCTION', 'COMMENT')
            EXECUTE PROCEDURE slony_nodelock.repatch_on_ddl();
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger e WHERE e.evtname = 'slony_nodelock_forget') THEN
        CREATE EVENT TRIGGER slony_nodelock_forget ON sql_drop
            EXECUTE PROCEDURE slony_nodelock.forget_dropped_clusters();
    END IF;
    ALTER EVENT TRIGGER slony_nodelock_repatch ENABLE ALWAYS;
    ALTER EVENT TRIGGER slony_nodelock_forget ENABLE ALWAYS;
END
$event_triggers$;
