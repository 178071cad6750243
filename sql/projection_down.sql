-- Removes everything sql/projection/ creates, including the triggers it puts on the source
-- tables. The source tables and their rows are left as they are.
DROP TRIGGER IF EXISTS refproj_note_source_write ON connectors;
DROP TRIGGER IF EXISTS refproj_note_source_write ON connector_instances;
DROP TRIGGER IF EXISTS refproj_note_insert ON spine_events;
DROP TRIGGER IF EXISTS refproj_note_update ON spine_events;
DROP TRIGGER IF EXISTS refproj_note_delete ON spine_events;
DROP TRIGGER IF EXISTS refproj_note_truncate ON spine_events;
DROP TRIGGER IF EXISTS refproj_note_insert ON controller_active_runs;
DROP TRIGGER IF EXISTS refproj_note_update ON controller_active_runs;
DROP TRIGGER IF EXISTS refproj_note_delete ON controller_active_runs;
DROP TRIGGER IF EXISTS refproj_note_truncate ON controller_active_runs;
DROP TRIGGER IF EXISTS refproj_note_source_write ON retained_size_connection;
DROP TRIGGER IF EXISTS refproj_note_source_write ON retained_size_stream;
DROP TRIGGER IF EXISTS refproj_notify_source_write ON connectors;
DROP TRIGGER IF EXISTS refproj_notify_source_write ON connector_instances;
DROP TRIGGER IF EXISTS refproj_notify_source_write ON retained_size_connection;
DROP TRIGGER IF EXISTS refproj_notify_source_write ON retained_size_stream;
DROP TRIGGER IF EXISTS refproj_notify_source_write ON spine_events;
DROP TRIGGER IF EXISTS refproj_notify_source_write ON controller_active_runs;
-- And those refproj.sync_spine_partitions() put on partitions of spine_events (any table whose
-- refproj_note_* trigger calls a refproj function).
DO $refproj_partition_triggers$
DECLARE
    v_trigger record;
BEGIN
    FOR v_trigger IN
        SELECT t.tgname, t.tgrelid::regclass AS relation
        FROM pg_catalog.pg_trigger AS t
        JOIN pg_catalog.pg_proc AS f ON f.oid = t.tgfoid
        WHERE f.pronamespace = (SELECT n.oid FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'refproj')
          AND NOT t.tgisinternal
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', v_trigger.tgname, v_trigger.relation);
    END LOOP;
END
$refproj_partition_triggers$;
DROP SCHEMA IF EXISTS refproj CASCADE;
