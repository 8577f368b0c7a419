-- slony-nodelock migration 0005 (release 0.5.0): PUBLIC reads none of the kit's tables. Never
-- edit once released; add a new step instead.

-- Release 0.1.0 let every role read lock_identity; nothing in it is for them (status(), for
-- pg_monitor, is the reader), and reading lets any role LOCK it IN ACCESS SHARE MODE, which holds
-- up every upgrade and uninstall for as long as it likes. The cleanups read it as slon does: as
-- a superuser.
REVOKE SELECT ON slony_nodelock.lock_identity FROM PUBLIC;
