-- ---------------------------------------------------------------------------------------------
-- The overview as JSON text, serialised at refresh rather than on every read
--
-- Serialising a thousand rows of jsonb costs more than everything else a read does, and the
-- stored part of a row only changes at a refresh. Since freshness is a step in read time (see
-- refproj.fresh_until), a row's freshness and health take one of two values: one for read times
-- up to fresh_until, one after. connection_summary_json keeps each row's stored fields as JSON
-- text and both endings, so a read picks an ending per row and concatenates. It lives beside
-- refproj.connection_summary, not in it, so the contract's view keeps its columns.
-- ---------------------------------------------------------------------------------------------

-- The end of a row's JSON object: freshness and health for one freshness status.
CREATE FUNCTION refproj.overview_row_ending(
    p_freshness text, p_status text, p_last_run jsonb, p_last_successful_run jsonb,
    p_max_staleness interval)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT ',"freshness":'
        || refproj.freshness_object(p_freshness, p_last_run, p_last_successful_run, p_max_staleness)::text
        || ',"health":' || refproj.health_at(p_status, p_last_run, p_freshness)::text
        || '}'
$$;
COMMENT ON FUNCTION refproj.overview_row_ending(text, text, jsonb, jsonb, interval) IS
    'The JSON text that closes an overview row: its freshness and health objects for freshness status p_freshness.';

-- The stored fields of an overview row as served (the JSON object without its closing brace):
-- the overview (connection_summary_json) and the detail (connection_detail_json) both write
-- them here, so list() and get() agree byte for byte whatever the session's TimeZone,
-- IntervalStyle or DateStyle. Timestamps are UTC, or null when an ISO-8601 parser could not read
-- them (refproj.json_time); max_staleness is a number of seconds.
-- The stored columns are listed again in refproj.overview_row_of (19_overview.sql), typed there.
-- Here four of them take their JSON form, and to_json of this row type keeps the served key
-- order; converting them on a jsonb of the typed row instead would reorder the keys (jsonb sorts
-- them). A column added to connection_summary is added to both and to this type.
CREATE TYPE refproj.served_summary_fields AS (
    connector_instance_id text,
    connection_id text,
    connector_id text,
    display_name text,
    connector_display_name text,
    status text,
    source_kind text,
    created_at timestamptz,
    revoked_at timestamptz,
    streams text[],
    stream_count integer,
    total_records bigint,
    retained_bytes jsonb,
    total_retained_bytes bigint,
    last_run jsonb,
    last_successful_run jsonb,
    failures_since_last_success integer,
    max_staleness numeric);
COMMENT ON TYPE refproj.served_summary_fields IS
    'The stored fields of an overview row in their served JSON form and order: the row type refproj.summary_fields_json serialises.';

-- One expression over a named row type, with no pinned setting, so PostgreSQL inlines it into
-- both callers. A function of its own it cost one executor start per row, about 40 ms of every
-- refresh at profile M (968 rows; README "Performance"). Both callers pin TimeZone = 'UTC', which
-- is what makes the timestamps UTC: a direct call renders them in the caller's TimeZone.
CREATE FUNCTION refproj.summary_fields_json(s refproj.connection_summary)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT left(to_json(ROW(
        s.connector_instance_id, s.connection_id, s.connector_id, s.display_name,
        s.connector_display_name, s.status, s.source_kind,
        refproj.json_time(s.created_at),
        refproj.json_time(s.revoked_at),
        s.streams, s.stream_count, s.total_records, s.retained_bytes, s.total_retained_bytes,
        refproj.json_run(s.last_run),
        refproj.json_run(s.last_successful_run),
        s.failures_since_last_success,
        refproj.json_seconds(s.max_staleness))::refproj.served_summary_fields)::text, -1)
$$;
COMMENT ON FUNCTION refproj.summary_fields_json(refproj.connection_summary) IS
    'The stored fields of an overview row as served JSON text without the closing brace (max_staleness in seconds; timestamps null when outside years 1-9999, rendered in the caller''s TimeZone: both refproj callers pin UTC). Inlined into connection_summary_json_rows and connection_detail_json.';

-- Written in one fixed style (UTC), whatever the settings of the session that refreshes.
CREATE FUNCTION refproj.connection_summary_json_rows()
RETURNS TABLE (
    connector_instance_id text,
    connector_id text,
    created_at timestamptz,
    stored_fields text,
    fresh_until timestamptz,
    ending_until text,
    ending_after text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET "IntervalStyle" = 'postgres'
SET jit = off
AS $$
    SELECT
        s.connector_instance_id, s.connector_id, s.created_at,
        -- The object without its closing brace: an ending closes it.
        refproj.summary_fields_json(s),
        step.fresh_until,
        refproj.overview_row_ending(
            refproj.freshness_status(step.fresh_until, timestamptz '-infinity'),
            s.status, s.last_run, s.last_successful_run, s.max_staleness),
        refproj.overview_row_ending(
            refproj.freshness_status(step.fresh_until, timestamptz 'infinity'),
            s.status, s.last_run, s.last_successful_run, s.max_staleness)
    FROM refproj.connection_summary AS s
    CROSS JOIN LATERAL (
        SELECT refproj.fresh_until(s.last_run, s.last_successful_run, s.max_staleness) AS fresh_until
        OFFSET 0
    ) AS step
$$;
COMMENT ON FUNCTION refproj.connection_summary_json_rows() IS
    'Each row of refproj.connection_summary as overview JSON text: the stored fields, fresh_until, and the two possible endings (freshness and health) for read times up to fresh_until and after it.';

-- A row of refproj.connection_summary_json as served at p_at: its stored fields, then the ending
-- for that read time (current up to fresh_until). Every served list aggregates its rows through
-- this. Plain SQL so that it inlines into the aggregate.
CREATE FUNCTION refproj.served_row(
    p_stored_fields text, p_fresh_until timestamptz, p_ending_until text, p_ending_after text, p_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_stored_fields || CASE WHEN p_at <= p_fresh_until THEN p_ending_until ELSE p_ending_after END
$$;
COMMENT ON FUNCTION refproj.served_row(text, timestamptz, text, text, timestamptz) IS
    'A refproj.connection_summary_json row as served JSON text at p_at: stored_fields, then ending_until when p_at <= fresh_until, else ending_after.';

CREATE MATERIALIZED VIEW refproj.connection_summary_json AS
SELECT * FROM refproj.connection_summary_json_rows()
WITH NO DATA;
CREATE UNIQUE INDEX connection_summary_json_connector_instance_id_idx
    ON refproj.connection_summary_json (connector_instance_id);
-- Overview order, so a keyset page (refproj.connection_summaries_page) reads its rows and no others.
-- A btree entry holds 2,704 bytes: rows whose two ids are longer than 2,000 bytes together stay
-- out of the order index (one of them would otherwise fail every refresh), and the page reads
-- them through the second index, by the length of their key (refproj.connection_summaries_page).
CREATE INDEX connection_summary_json_overview_order_idx
    ON refproj.connection_summary_json (connector_id, created_at, connector_instance_id)
    WHERE octet_length(connector_id) + octet_length(connector_instance_id) <= 2000;
CREATE INDEX connection_summary_json_key_length_idx
    ON refproj.connection_summary_json ((octet_length(connector_id) + octet_length(connector_instance_id)));
COMMENT ON MATERIALIZED VIEW refproj.connection_summary_json IS
    'refproj.connection_summary serialised for refproj.connection_summaries_json(): per row the stored fields as JSON text and the endings for read times up to fresh_until (ending_until) and after (ending_after). Refreshed with it by refproj.refresh_connection_summary().';

