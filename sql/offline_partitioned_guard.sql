-- refproj: an offline (--sql) script runs revision 0002's CREATE INDEX CONCURRENTLY on
-- spine_events as written, which PostgreSQL refuses on a partitioned table (online, `refproj
-- migrate` builds the index per partition instead). So the script stops here, before changing
-- anything, when spine_events is partitioned and the database is below revision 0002.
DO $refproj_offline_guard$
DECLARE
    v_revision text;
BEGIN
    IF to_regclass('refproj_alembic_version') IS NOT NULL THEN
        EXECUTE 'SELECT max(version_num) FROM refproj_alembic_version' INTO v_revision;
    END IF;
    IF (SELECT c.relkind FROM pg_catalog.pg_class AS c WHERE c.oid = to_regclass('spine_events')) = 'p'
       AND COALESCE(v_revision, '') < '0002' THEN
        RAISE EXCEPTION 'refproj: an offline (--sql) script cannot build the summary index of a partitioned spine_events; run refproj migrate against the database instead'
            USING ERRCODE = 'feature_not_supported';
    END IF;
END
$refproj_offline_guard$
