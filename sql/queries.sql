-- Queries the Python shim sends. Each starts with "-- name: NAME" and a one-line description;
-- refproj/queries.py parses this file into a dict. Values are bound parameters (:name), never
-- assembled into the text; built-ins are qualified with pg_catalog so no object on the caller's
-- search_path can stand in for them.

-- name: overview
-- The overview and how current it is, in one statement and therefore one snapshot. The rows
-- arrive as one JSON text, serialised at refresh time (see refproj.connection_summary_json),
-- that the shim parses once.
SELECT
    pg_catalog.to_jsonb(status) AS status,
    refproj.connection_summaries_json(
        COALESCE(CAST(:at AS pg_catalog.timestamptz), pg_catalog.now()),
        CAST(:connector_id AS pg_catalog.text)) AS connections
FROM refproj.projection_status() AS status;

-- name: overview_page
-- One page (or all) of the overview as the database serialised it, with valid_until and the key
-- of the page's last row, plus how current it is: one statement, one snapshot. The HTTP service
-- writes `connections` into its response as is.
SELECT
    pg_catalog.to_jsonb(status) AS status,
    pg_catalog.jsonb_build_object(
        'valid_until', page.valid_until,
        'row_count', page.row_count,
        'last_key', page.last_key,
        'more', page.more) AS page,
    page.connections
FROM refproj.projection_status() AS status
CROSS JOIN refproj.connection_summaries_page(
    COALESCE(CAST(:at AS pg_catalog.timestamptz), pg_catalog.now()),
    CAST(:connector_id AS pg_catalog.text),
    CAST(:limit AS pg_catalog.int4),
    CAST(:after_connector_id AS pg_catalog.text),
    CAST(:after_created_at AS pg_catalog.timestamptz),
    CAST(:after_connector_instance_id AS pg_catalog.text)) AS page;

-- name: detail
-- How the requested id resolves, and the live detail as JSON text when it resolves to one
-- connection (serialised by the database in one fixed style, as the overview is).
SELECT
    resolved.resolution,
    resolved.candidate_ids,
    refproj.connection_detail_json(
        CAST(:connection AS pg_catalog.text),
        CAST(:run_limit AS pg_catalog.int4),
        COALESCE(CAST(:at AS pg_catalog.timestamptz), pg_catalog.now())) AS detail
FROM refproj.resolve_connection(CAST(:connection AS pg_catalog.text)) AS resolved;

-- name: read_committed
-- First statement of a refresh's transaction: the refresh needs READ COMMITTED, and a database or
-- role default (default_transaction_isolation) may say otherwise. Per transaction, so pooler-safe.
SET TRANSACTION ISOLATION LEVEL READ COMMITTED;

-- name: refresh_timeout
-- Bounds the refresh about to run in this transaction, waiting for other refreshes included.
SELECT pg_catalog.set_config('statement_timeout', CAST(:milliseconds AS pg_catalog.text), true);

-- name: refresh
-- A coalesced, read-your-writes refresh (see refproj.refresh_connection_summary).
SELECT pg_catalog.to_jsonb(r)
FROM refproj.refresh_connection_summary(
    CAST(:only_if_changed AS pg_catalog.bool), CAST(:full AS pg_catalog.bool)) AS r;

-- name: verify
-- The differences between the stored overview and a from-scratch computation, as one JSON array.
SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(v)), '[]')
FROM refproj.verify_projection() AS v;

-- name: status
-- When the stored evidence was computed and whether a source write happened since.
SELECT pg_catalog.to_jsonb(s)
FROM refproj.projection_status() AS s;

-- name: backend_pid
-- The server process of this session. psycopg's backend pid is the one announced at connection
-- start: a pooler (PgBouncer) announces one of its own, so the two differ behind it and the
-- watcher polls instead of listening (refproj/watcher_async.py).
SELECT pg_catalog.pg_backend_pid();

-- name: listen
-- The watcher's wake-ups: every writing transaction on a source table and every refresh notify
-- at commit (sql/projection/12_write_notification.sql, 17_refresh.sql). The session is meant to
-- stay idle for long: a database's idle_session_timeout would end it at that rate.
SET idle_session_timeout = 0; LISTEN refproj_source_changed; LISTEN refproj_refreshed;

-- name: session_settings
-- What refproj's own connections need, set for the current transaction only (no startup
-- options, nothing left behind on a pooled server session): the read's statement timeout, and
-- UTC for the timestamps the detail serialises.
SELECT
    pg_catalog.set_config('statement_timeout', CAST(:statement_timeout AS pg_catalog.text), true),
    pg_catalog.set_config('TimeZone', 'UTC', true);
