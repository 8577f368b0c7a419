-- Whether the lock row a record describes is still there as recorded (same key, PID and xmin),
-- in any cluster of this database: only then does the record show what its backend holds.
CREATE OR REPLACE FUNCTION slony_nodelock.record_is_current(p_cluster name, p_nodeid int4, p_conncnt int4,
                                                            p_pid int4, p_row_xmin xid)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_current boolean;
BEGIN
    IF p_row_xmin IS NULL OR pg_catalog.to_regclass(pg_catalog.format('%I.sl_nodelock', p_cluster)) IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE pg_catalog.format('SELECT EXISTS (SELECT FROM %I.sl_nodelock l WHERE l.nl_nodeid = $1 AND l.nl_conncnt = $2 '
                              'AND l.nl_backendpid = $3 AND l.xmin = $4)', p_cluster)
       INTO v_current USING p_nodeid, p_conncnt, p_pid, p_row_xmin;
    RETURN v_current;
END
$fn$;
COMMENT ON FUNCTION slony_nodelock.record_is_current(name, int4, int4, int4, xid) IS 'slony-nodelock: whether a lock record still describes its row';
