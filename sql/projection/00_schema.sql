-- refproj: the connection-summary projection (DOMAIN.md sections 3-7, CONTRACT.md section 1).
--
-- The files of sql/projection/ run in name order, which is the order the data flows: run events
-- -> run summaries -> which connection each run belongs to -> run facts and the evidence rules
-- -> the stored overview, its live reference, its read-time state and its JSON -> write
-- detection -> the projection's state, refresh and verification -> serving the overview and the
-- detail -> privileges, catalog comments, the first build. One concern per file.
--
-- Views reference the source tables by name, so they are bound to the tables found at migration
-- time; functions reference only refproj objects and pin their search_path.

-- Stored run objects carry timestamps as text; keep them in one zone whoever migrates.
SET LOCAL "TimeZone" = 'UTC';

CREATE SCHEMA refproj;
COMMENT ON SCHEMA refproj IS
    'refproj: the connection-summary projection over connectors, connector_instances and spine_events.';

