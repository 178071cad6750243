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
DROP SCHEMA IF EXISTS refproj CASCADE;
