-- Before the projection schema is re-created: whether a projection was serving here (an upgrade)
-- rather than being installed (sql/projection/23_first_build.sql decides by it).
CREATE TEMPORARY TABLE refproj_previous_projection ON COMMIT DROP AS
SELECT to_regclass('refproj.connection_summary') IS NOT NULL AS serving;
