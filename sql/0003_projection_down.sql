-- Removes everything sql/0003_projection.sql created, including the triggers it put on the
-- source tables.
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
DROP SCHEMA IF EXISTS refproj CASCADE;
