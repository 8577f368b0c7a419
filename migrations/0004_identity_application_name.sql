-- slony-nodelock migration 0004 (release 0.5.0): record the name the taker carried. Never edit
-- once released; add a new step instead.

-- slon names each connection once, as it opens it, and never renames it. Behind a session pooler
-- (pgbouncer in session mode) the server backend that took a lock outlives slon: the pooler resets
-- it (DISCARD ALL also resets application_name) and hands it to the next client, with the same
-- PID and start time as the record. A holder that no longer carries the name it took the lock
-- with is no longer the session that took it. Records made by earlier releases have none.
ALTER TABLE slony_nodelock.lock_identity ADD COLUMN application_name text;
COMMENT ON COLUMN slony_nodelock.lock_identity.application_name IS 'application_name of the backend when it took the row';
