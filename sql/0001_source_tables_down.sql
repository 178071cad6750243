DROP TABLE IF EXISTS retained_size_stream;
DROP TABLE IF EXISTS retained_size_connection;
DROP TABLE IF EXISTS controller_active_runs;
DROP TABLE IF EXISTS spine_events;
DROP TABLE IF EXISTS connector_instances;
DROP TABLE IF EXISTS connectors;
