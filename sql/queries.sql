-- Queries the Python shim sends. Each starts with "-- name: NAME" and a one-line description;
-- refproj/queries.py parses this file into a dict. Values are bound parameters (:name), never
-- assembled into the text.

-- name: overview
-- The overview and how current it is, in one statement and therefore one snapshot.
SELECT
    to_jsonb(status) AS status,
    COALESCE(
        (SELECT jsonb_agg(to_jsonb(s) ORDER BY s.connector_id, s.created_at, s.connector_instance_id)
         FROM refproj.connection_summaries(COALESCE(CAST(:at AS timestamptz), now()),
                                           CAST(:connector_id AS text)) AS s),
        '[]'::jsonb) AS connections
FROM refproj.projection_status() AS status;

-- name: detail
-- How the requested id resolves, and the live detail when it resolves to one connection.
SELECT
    resolved.resolution,
    resolved.candidates,
    to_jsonb(detail) AS detail
FROM refproj.resolve_connection(CAST(:connection AS text)) AS resolved
LEFT JOIN LATERAL refproj.connection_detail(
    CAST(:connection AS text), CAST(:run_limit AS int), COALESCE(CAST(:at AS timestamptz), now())) AS detail
    ON true;

-- name: refresh
-- A coalesced, read-your-writes refresh (see refproj.refresh_connection_summary).
SELECT to_jsonb(r)
FROM refproj.refresh_connection_summary(CAST(:only_if_changed AS boolean)) AS r;

-- name: status
-- When the stored evidence was computed and whether a source write happened since.
SELECT to_jsonb(s)
FROM refproj.projection_status() AS s;
