-- refproj: the connection-summary projection (DOMAIN.md sections 3-7, CONTRACT.md section 1).
--
-- Read this file top to bottom: run events -> run summaries -> which connection each run
-- belongs to -> per-connection evidence -> the stored overview and its read-time state ->
-- refresh coalescing and write detection.
--
-- Views reference the source tables by name, so they are bound to the tables found at migration
-- time; functions reference only refproj objects and pin their search_path.

-- Stored run objects carry timestamps as text; keep them in one zone whoever migrates.
SET LOCAL "TimeZone" = 'UTC';

CREATE SCHEMA refproj;
COMMENT ON SCHEMA refproj IS
    'refproj: the connection-summary projection over connectors, connector_instances and spine_events.';

