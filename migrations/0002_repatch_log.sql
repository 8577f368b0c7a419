-- slony-nodelock migration 0002 (release 0.2.0): a log of automatic re-patching. Never edit once
-- released; add a new step instead.

-- The event trigger slony_nodelock_repatch re-patches a cluster whenever Slony (re)creates its
-- cleanupnodelock() or sl_nodelock: at UPDATE FUNCTIONS, init cluster, store node. That happens
-- inside Slony's own transaction, without anyone watching, so each attempt is written down here.
CREATE TABLE slony_nodelock.repatch_log (
    id             bigserial PRIMARY KEY,
    cluster_schema name NOT NULL,
    command_tag    text NOT NULL,
    succeeded      boolean NOT NULL,
    detail         text,
    at             timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX repatch_log_cluster ON slony_nodelock.repatch_log (cluster_schema);
COMMENT ON TABLE slony_nodelock.repatch_log IS 'slony-nodelock: each automatic re-patch after Slony recreated a cluster''s cleanupnodelock() or sl_nodelock';
