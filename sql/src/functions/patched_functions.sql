-- The Slony functions the kit replaces in each cluster, with what each needs: the argument list
-- (names as Slony declares them, since CREATE OR REPLACE keeps them), the entry point in
-- logic_source() and what it is called with, and our comment. Every comment of ours starts with
-- 'slony-nodelock:', which is how the rest of the kit tells it from Slony's.
CREATE OR REPLACE FUNCTION slony_nodelock.patched_functions()
RETURNS TABLE (function_name name, arguments text, argument_types text, entry text, entry_arguments text, comment text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    VALUES ('cleanupnodelock'::name, ''::text, ''::text, 'cleanup'::text, 'plpy, SD, CLUSTER'::text,
            'slony-nodelock: removes sl_nodelock rows whose holder is gone, judged by PID and backend start time'::text),
           ('terminatenodeconnections', 'p_failed_node int4', 'int4', 'terminate', 'plpy, SD, CLUSTER, p_failed_node',
            'slony-nodelock: at failover, terminates the live backends that took a failed node''s locks (and nothing else), and deletes its lock rows')
$fn$;
COMMENT ON FUNCTION slony_nodelock.patched_functions() IS 'slony-nodelock: the Slony functions replaced in each cluster';
