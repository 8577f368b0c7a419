-- Patch every Slony cluster schema in this database, then commit all of it at once.
SELECT slony_nodelock.patch_all_clusters() AS patched \gset
COMMIT;
