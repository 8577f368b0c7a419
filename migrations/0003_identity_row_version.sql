-- slony-nodelock migration 0003 (release 0.3.0): bind each identity record to the row version it
-- describes. Never edit once released; add a new step instead.

-- A record is matched to its sl_nodelock row by key and PID, and only the trigger keeps the two
-- in step. With the trigger off for a while (DISABLE TRIGGER, pg_restore --disable-triggers), a
-- record could outlive its row and then be read against a later row that has the same key and
-- PID, making that row's live holder look like an impostor. The row's xmin, stored with the
-- record, ties the record to one row version: a record whose row_xmin is not the row's xmin
-- counts as no record. Records made by earlier releases have none, and count as no record.
ALTER TABLE slony_nodelock.lock_identity ADD COLUMN row_xmin xid;
COMMENT ON COLUMN slony_nodelock.lock_identity.row_xmin IS 'xmin of the sl_nodelock row version this record describes';

-- A record made by install's adoption is a judgement from the holder's name, not a sighting of the
-- insert: it may stand for its own row, but it never proves that a backend took that row rather
-- than another.
ALTER TABLE slony_nodelock.lock_identity ADD COLUMN adopted boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN slony_nodelock.lock_identity.adopted IS 'made by install''s adoption of a row taken before install, not by the trigger';

-- Slony's terminateNodeConnections() is replaced too (failover), so each saved function is
-- named. Rows saved by earlier releases are all cleanupnodelock().
ALTER TABLE slony_nodelock.stock_function ADD COLUMN function_name name NOT NULL DEFAULT 'cleanupnodelock';
ALTER TABLE slony_nodelock.stock_function ALTER COLUMN function_name DROP DEFAULT;
ALTER TABLE slony_nodelock.stock_function DROP CONSTRAINT stock_function_pkey;
ALTER TABLE slony_nodelock.stock_function ADD PRIMARY KEY (cluster_schema, function_name);
COMMENT ON TABLE slony_nodelock.stock_function IS 'slony-nodelock: each cluster''s cleanupnodelock() and terminatenodeconnections() as Slony last installed them (pg_get_functiondef)';
