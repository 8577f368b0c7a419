-- slony-nodelock migration 0001 (release 0.1.0): the tables. Never edit once released; add a new
-- step instead. Runs inside sql/install.sql's transaction, after the schema exists.

-- Who took each lock: the backend's PID and start time, recorded when the sl_nodelock row was
-- inserted (by the trigger slony_nodelock_identity). (pid, backend_start) names one backend for
-- the life of the server, so a reused PID cannot pass for the lock holder.
CREATE TABLE slony_nodelock.lock_identity (
    cluster_schema name NOT NULL,
    nl_nodeid      int4 NOT NULL,
    nl_conncnt     int4 NOT NULL,
    pid            int4 NOT NULL,
    backend_start  timestamptz NOT NULL,
    PRIMARY KEY (cluster_schema, nl_nodeid, nl_conncnt)
);
COMMENT ON TABLE slony_nodelock.lock_identity IS 'slony-nodelock: the backend that took each sl_nodelock row (pid and backend_start)';
-- Slony's own roles read it through cleanupnodelock(); PIDs and start times are no secret.
GRANT SELECT ON slony_nodelock.lock_identity TO PUBLIC;

-- Slony's cleanupnodelock() as it was before we replaced it, so that uninstall can put it back.
CREATE TABLE slony_nodelock.stock_function (
    cluster_schema name PRIMARY KEY,
    definition     text NOT NULL,
    prosrc         text NOT NULL,
    language       name NOT NULL,
    owner          name NOT NULL,
    comment        text,
    saved_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE slony_nodelock.stock_function IS 'slony-nodelock: each cluster''s cleanupnodelock() as Slony last installed it (pg_get_functiondef)';
