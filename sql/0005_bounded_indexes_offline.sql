-- Offline (alembic upgrade --sql) the script cannot look at the database first: it replaces the
-- two unbounded index shapes where it finds them, in one plain statement each (an offline script
-- installs on a database it was written for, usually empty). Online, revision 0005 replaces
-- them CONCURRENTLY (refproj/migration_support.py).
-- Each replaced index keeps its catalog comment (as replace_index does online).
DO $refproj_bounded_indexes$
DECLARE
    v_comment text;
BEGIN
    IF pg_get_indexdef(to_regclass('connector_instances_connector_idx'))
           LIKE '%USING btree (connector_id, created_at, connector_instance_id)'
       AND obj_description(to_regclass('connector_instances'), 'pg_class')
           LIKE '%Source table created by refproj (revision 0001)%' THEN
        v_comment := obj_description(to_regclass('connector_instances_connector_idx'), 'pg_class');
        DROP INDEX connector_instances_connector_idx;
        CREATE INDEX connector_instances_connector_idx
            ON connector_instances USING hash (connector_id);
        EXECUTE format('COMMENT ON INDEX connector_instances_connector_idx IS %L', v_comment);
    END IF;
    IF pg_get_indexdef(to_regclass('spine_events_source_run_summary_idx')) NOT LIKE '%octet_length%' THEN
        v_comment := obj_description(to_regclass('spine_events_source_run_summary_idx'), 'pg_class');
        DROP INDEX spine_events_source_run_summary_idx;
        CREATE INDEX spine_events_source_run_summary_idx
            ON spine_events (source_kind, source_id, run_id, occurred_at DESC)
            WHERE run_id IS NOT NULL
              AND octet_length(source_kind) + octet_length(source_id) + octet_length(run_id) <= 2000;
        EXECUTE format('COMMENT ON INDEX spine_events_source_run_summary_idx IS %L', v_comment);
    END IF;
END
$refproj_bounded_indexes$
