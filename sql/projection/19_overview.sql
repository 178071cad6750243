-- ---------------------------------------------------------------------------------------------
-- Serving: overview, detail, resolution, live run evidence (DOMAIN.md section 6)
-- ---------------------------------------------------------------------------------------------

-- The row shapes the serving functions return, each column written once: an overview row is a
-- stored row (refproj.connection_summary) plus its read-time state; a detail row is an overview
-- row plus its runs and streams. Views that never return rows, so the shapes follow their sources.
CREATE VIEW refproj.overview_row AS
SELECT s.*, NULL::jsonb AS freshness, NULL::jsonb AS health
FROM refproj.connection_summary AS s
WHERE false;
COMMENT ON VIEW refproj.overview_row IS
    'The shape of an overview row (refproj.connection_summaries): the stored fields of refproj.connection_summary, then freshness and health. Returns no rows.';
COMMENT ON COLUMN refproj.overview_row.freshness IS
    'Freshness at the read time: {status current | stale | unknown, captured_at, last_attempted_at, max_staleness_seconds}.';
COMMENT ON COLUMN refproj.overview_row.health IS
    'Health at the read time: {state, reason}, the first rule of DOMAIN.md section 5 that applies.';

CREATE VIEW refproj.detail_row AS
SELECT o.*, NULL::jsonb AS recent_runs, NULL::jsonb AS streams_retained, NULL::int AS unattributed_runs
FROM refproj.overview_row AS o;
COMMENT ON VIEW refproj.detail_row IS
    'The shape of a detail row (refproj.connection_detail): an overview row, then recent_runs, streams_retained and unattributed_runs. Returns no rows.';
COMMENT ON COLUMN refproj.detail_row.recent_runs IS
    'The latest runs of the connection, newest first, each its run object plus the rest of its summary.';
COMMENT ON COLUMN refproj.detail_row.streams_retained IS
    'Retained size per stream of the connection: [{stream, record_count, current_record_json_bytes, record_history_json_bytes, blob_bytes, computed_at}].';
COMMENT ON COLUMN refproj.detail_row.unattributed_runs IS
    'Runs of the connector that belong to no connection.';

-- An overview row from a row in stored form and its freshness status at the read time: the
-- stored fields with the run objects as served (refproj.json_run), then freshness and health.
-- The overview and the detail both shape their rows here. Plain SQL, so it inlines: callers
-- select (refproj.overview_row_of(...)).* and each column becomes its expression, not a call.
CREATE FUNCTION refproj.overview_row_of(s refproj.connection_summary, p_freshness text)
RETURNS refproj.overview_row
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT ROW(
        s.connector_instance_id, s.connection_id, s.connector_id, s.display_name,
        s.connector_display_name, s.status, s.source_kind, s.created_at, s.revoked_at, s.streams,
        s.stream_count, s.total_records, s.retained_bytes, s.total_retained_bytes,
        refproj.json_run(s.last_run), refproj.json_run(s.last_successful_run),
        s.failures_since_last_success, s.max_staleness,
        refproj.freshness_object(p_freshness, s.last_run, s.last_successful_run, s.max_staleness),
        refproj.health_at(s.status, s.last_run, p_freshness))::refproj.overview_row
$$;
COMMENT ON FUNCTION refproj.overview_row_of(refproj.connection_summary, text) IS
    'An overview row from a stored-form row and its freshness status (current, stale, unknown) at the read time: run objects as served, then freshness and health.';

CREATE FUNCTION refproj.connection_summaries(
    p_at timestamptz DEFAULT now(), p_connector_id text DEFAULT NULL)
RETURNS SETOF refproj.overview_row
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
-- plpgsql rather than SQL: the session keeps the plan instead of planning on every read.
AS $$
BEGIN
    PERFORM refproj.require_read_time(p_at);
    IF NOT refproj.overview_built() THEN
        RAISE EXCEPTION 'refproj: the overview is still being built (the first refresh after install has not committed yet)'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'refproj.projection_status() says building; refproj.connection_detail() answers meanwhile.';
    END IF;
    RETURN QUERY
    SELECT (refproj.overview_row_of(s, read_time.freshness)).*
    FROM refproj.connection_summary AS s
    CROSS JOIN LATERAL (
        SELECT refproj.freshness_status(
                   refproj.fresh_until(s.last_run, s.last_successful_run, s.max_staleness), p_at) AS freshness
        OFFSET 0
    ) AS read_time
    WHERE p_connector_id IS NULL
       OR s.connector_id = p_connector_id
    ORDER BY s.connector_id, s.created_at, s.connector_instance_id;
END
$$;
COMMENT ON FUNCTION refproj.connection_summaries(timestamptz, text) IS
    'The overview: stored evidence of every visible connection plus freshness and health computed for p_at, ordered by (connector_id, created_at, connector_instance_id), optionally for one connector. Only as current as the last refresh: see refproj.projection_status().';

CREATE FUNCTION refproj.connection_summaries_json(
    p_at timestamptz DEFAULT now(), p_connector_id text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    PERFORM refproj.require_read_time(p_at);
    -- Before the first build there are no rows to serve, and an empty array would read as
    -- "no connections": NULL, with building = true in projection_status().
    IF NOT refproj.overview_built() THEN
        RETURN NULL;
    END IF;
    RETURN (
        SELECT '[' || COALESCE(
            string_agg(
                refproj.served_row(j.stored_fields, j.fresh_until, j.ending_until, j.ending_after, p_at),
                ',' ORDER BY j.connector_id, j.created_at, j.connector_instance_id),
            '') || ']'
        FROM refproj.connection_summary_json AS j
        WHERE p_connector_id IS NULL
           OR j.connector_id = p_connector_id);
END
$$;
COMMENT ON FUNCTION refproj.connection_summaries_json(timestamptz, text) IS
    'refproj.connection_summaries(p_at, p_connector_id) as one JSON array text, in the same order with the same fields and values (timestamps in UTC), read from refproj.connection_summary_json: what the Python shim serves. NULL while the first build after install is running (projection_status().building).';

-- The overview as served over HTTP: one page (or all) of the JSON rows, plus valid_until.
--
-- Keyset paging: p_limit rows in overview order after the key (p_after_connector_id,
-- p_after_created_at, p_after_connector_instance_id) of the previous page's last row, read through
-- connection_summary_json_overview_order_idx, so a page costs its rows whatever the list's size.
-- A key, not an offset, so a connection added or removed between two pages shifts nothing.
--
-- valid_until: the first read time at which a served row's freshness or health would change
-- (NULL: none ever will). A row's ending flips once, just after its fresh_until (current while
-- p_at <= fresh_until), so the answer for p_at stays the same for read times up to the smallest
-- fresh_until >= p_at. Infinite steps never come. Within one refresh (one as_of), valid_until
-- therefore names the answer exactly: every row whose fresh_until is >= valid_until ends
-- "until", every other row "after".
CREATE FUNCTION refproj.connection_summaries_page(
    p_at timestamptz DEFAULT now(),
    p_connector_id text DEFAULT NULL,
    p_limit int DEFAULT NULL,
    p_after_connector_id text DEFAULT NULL,
    p_after_created_at timestamptz DEFAULT NULL,
    p_after_connector_instance_id text DEFAULT NULL,
    OUT connections text,
    OUT valid_until timestamptz,
    OUT row_count int,
    OUT last_key jsonb,
    OUT more boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
AS $$
BEGIN
    PERFORM refproj.require_read_time(p_at);
    IF p_limit IS NOT NULL AND p_limit < 1 THEN
        RAISE EXCEPTION 'refproj: page limit must be at least 1, not %', p_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (p_after_connector_id IS NULL) <> (p_after_created_at IS NULL)
       OR (p_after_connector_id IS NULL) <> (p_after_connector_instance_id IS NULL) THEN
        RAISE EXCEPTION 'refproj: a page key needs connector_id, created_at and connector_instance_id'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Before the first build there is nothing stored: connections NULL, as in
    -- connection_summaries_json (projection_status().building says why).
    IF NOT refproj.overview_built() THEN
        row_count := 0;
        more := false;
        RETURN;
    END IF;

    IF p_limit IS NULL AND p_after_connector_id IS NULL THEN
        -- The whole list (or one connector's): the same aggregate as connection_summaries_json.
        SELECT
            '[' || COALESCE(
                string_agg(
                    refproj.served_row(j.stored_fields, j.fresh_until, j.ending_until, j.ending_after, p_at),
                    ',' ORDER BY j.connector_id, j.created_at, j.connector_instance_id),
                '') || ']',
            min(j.fresh_until) FILTER (WHERE j.fresh_until >= p_at AND j.fresh_until < 'infinity'),
            count(*)::int,
            NULL,
            false
        INTO connections, valid_until, row_count, last_key, more
        FROM refproj.connection_summary_json AS j
        WHERE p_connector_id IS NULL
           OR j.connector_id = p_connector_id;
        RETURN;
    END IF;

    -- One row past the page says whether another page follows. Rows whose ids are too long for
    -- the overview-order index (its predicate, repeated here so the plan can use it) come from
    -- the key-length index and are merged in order.
    WITH page AS MATERIALIZED (
        SELECT j.*, row_number() OVER (ORDER BY j.connector_id, j.created_at, j.connector_instance_id) AS n
        FROM (
            (SELECT j.connector_id, j.created_at, j.connector_instance_id, j.stored_fields,
                    j.fresh_until, j.ending_until, j.ending_after
             FROM refproj.connection_summary_json AS j
             WHERE octet_length(j.connector_id) + octet_length(j.connector_instance_id) <= 2000
               AND (p_connector_id IS NULL OR j.connector_id = p_connector_id)
               AND (p_after_connector_id IS NULL
                    OR (j.connector_id, j.created_at, j.connector_instance_id)
                       > (p_after_connector_id, p_after_created_at, p_after_connector_instance_id))
             ORDER BY j.connector_id, j.created_at, j.connector_instance_id
             LIMIT p_limit::bigint + 1)
            UNION ALL
            (SELECT j.connector_id, j.created_at, j.connector_instance_id, j.stored_fields,
                    j.fresh_until, j.ending_until, j.ending_after
             FROM refproj.connection_summary_json AS j
             WHERE octet_length(j.connector_id) + octet_length(j.connector_instance_id) > 2000
               AND (p_connector_id IS NULL OR j.connector_id = p_connector_id)
               AND (p_after_connector_id IS NULL
                    OR (j.connector_id, j.created_at, j.connector_instance_id)
                       > (p_after_connector_id, p_after_created_at, p_after_connector_instance_id)))
            ORDER BY 1, 2, 3
            LIMIT p_limit::bigint + 1
        ) AS j
    )
    SELECT
        '[' || COALESCE(
            string_agg(
                refproj.served_row(p.stored_fields, p.fresh_until, p.ending_until, p.ending_after, p_at),
                ',' ORDER BY p.n) FILTER (WHERE p.n <= p_limit OR p_limit IS NULL),
            '') || ']',
        min(p.fresh_until) FILTER (WHERE (p.n <= p_limit OR p_limit IS NULL)
                                     AND p.fresh_until >= p_at AND p.fresh_until < 'infinity'),
        count(*) FILTER (WHERE p.n <= p_limit OR p_limit IS NULL)::int,
        (array_agg(jsonb_build_array(p.connector_id, p.created_at, p.connector_instance_id) ORDER BY p.n DESC)
            FILTER (WHERE p.n <= p_limit OR p_limit IS NULL))[1],
        COALESCE(max(p.n) > p_limit, false)
    INTO connections, valid_until, row_count, last_key, more
    FROM page AS p;
END
$$;
COMMENT ON FUNCTION refproj.connection_summaries_page(timestamptz, text, int, text, timestamptz, text) IS
    'One page of refproj.connection_summaries_json(p_at, p_connector_id): up to p_limit rows (NULL: all) in overview order after the key (connector_id, created_at, connector_instance_id) of the previous page''s last row (NULLs: from the start), read by index. Also valid_until (the first read time at which a served row''s freshness or health changes; NULL: never), row_count, last_key (the key of the page''s last row, a JSON array, for the next page) and more (another page follows). connections is NULL while the first build after install runs (projection_status().building).';

-- Detail resolution: an exact visible connection id, else a connector id with exactly one
-- visible connection. An ambiguous connector id resolves to nothing, and says so. plpgsql: every
-- detail resolves twice (its query and connection_detail_parts), and a SQL function with a
-- pinned search_path is planned again on each call; the session keeps a plpgsql plan.
CREATE FUNCTION refproj.resolve_connection(p_connection text)
RETURNS TABLE (connector_instance_id text, connector_id text, resolution text, candidates int,
               candidate_ids text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_connection IS NULL THEN
        PERFORM refproj.refuse_null_argument('p_connection');
    END IF;
    RETURN QUERY
    WITH exact AS (
        SELECT v.connector_instance_id, v.connector_id
        FROM refproj.visible_connections AS v
        WHERE v.connector_instance_id = p_connection
    ),
    by_connector AS (
        SELECT
            count(*)::int AS candidates,
            COALESCE(array_agg(v.connector_instance_id ORDER BY v.created_at, v.connector_instance_id),
                     '{}') AS candidate_ids
        FROM refproj.visible_connections AS v
        WHERE v.connector_id = p_connection
    )
    SELECT e.connector_instance_id, e.connector_id, 'exact', 1, ARRAY[e.connector_instance_id]
    FROM exact AS e
    UNION ALL
    SELECT
        CASE WHEN b.candidates = 1 THEN b.candidate_ids[1] END,
        CASE WHEN b.candidates >= 1 THEN p_connection END,
        CASE b.candidates WHEN 0 THEN 'not_found' WHEN 1 THEN 'connector' ELSE 'ambiguous' END,
        b.candidates,
        b.candidate_ids
    FROM by_connector AS b
    WHERE NOT EXISTS (SELECT 1 FROM exact);
END
$$;
COMMENT ON FUNCTION refproj.resolve_connection(text) IS
    'How a detail request resolves: resolution exact | connector (connector id with one visible connection) | ambiguous | not_found, with the number of candidates and their connection ids in overview order (created_at, connector_instance_id).';

CREATE FUNCTION refproj.connection_run_evidence(p_connector_instance_id text)
RETURNS SETOF refproj.run_evidence
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
AS $$
DECLARE
    v_connector_id text;
BEGIN
    IF p_connector_instance_id IS NULL THEN
        PERFORM refproj.refuse_null_argument('p_connector_instance_id');
    END IF;
    SELECT k.connector_id INTO v_connector_id
    FROM refproj.connection_keys AS k
    WHERE k.connector_instance_id = p_connector_instance_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'refproj: no connection %', quote_literal(p_connector_instance_id)
            USING ERRCODE = 'no_data_found';
    END IF;

    RETURN QUERY
    SELECT rollup.last_run, rollup.last_successful_run, COALESCE(rollup.failures_since_last_success, 0)
    FROM (SELECT 1) AS one
    LEFT JOIN refproj.connection_run_rollup AS rollup
        ON rollup.connector_id = v_connector_id
       AND rollup.connector_instance_id = p_connector_instance_id;
END
$$;
COMMENT ON FUNCTION refproj.connection_run_evidence(text) IS
    'Live run evidence of one connection (any status, including retired setup attempts): last_run, last_successful_run, failures_since_last_success. Raises no_data_found for an unknown id.';

-- The detail of one connection, in parts: the connection's row in stored form computed live, its
-- freshness status at p_at, recent_runs, streams_retained and unattributed_runs. Zero rows when
-- p_connection resolves to no connection. connection_detail and connection_detail_json shape
-- these parts as the overview shapes its rows.
CREATE FUNCTION refproj.connection_detail_parts(
    p_connection text, p_run_limit int, p_at timestamptz,
    OUT summary refproj.connection_summary,
    OUT freshness text,
    OUT recent_runs jsonb,
    OUT streams_retained jsonb,
    OUT unattributed_runs int)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
AS $$
DECLARE
    v_connection text;
    v_connector_id text;
    v_tokens text[];
    v_connector_tokens text[];
    v_mine refproj.run_facts[];
    v_evidence refproj.run_evidence;
BEGIN
    IF p_connection IS NULL THEN
        PERFORM refproj.refuse_null_argument('p_connection');
    END IF;
    PERFORM refproj.require_read_time(p_at);
    IF p_run_limit IS NULL OR p_run_limit < 0 THEN
        RAISE EXCEPTION 'refproj: the run limit p_run_limit must be 0 or more, not %',
            COALESCE(p_run_limit::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT r.connector_instance_id, r.connector_id
    INTO v_connection, v_connector_id
    FROM refproj.resolve_connection(p_connection) AS r;
    IF v_connection IS NULL THEN
        RETURN;
    END IF;

    -- The tokens this connection accepts, and those any connection of its connector accepts.
    WITH accepting AS (
        SELECT
            k.connector_instance_id,
            refproj.connection_match_tokens(k.connector_instance_id, k.expected_profile_key,
                                            k.sole_active) AS tokens
        FROM refproj.connection_keys AS k
        WHERE k.connector_id = v_connector_id
    )
    SELECT
        (SELECT a.tokens FROM accepting AS a WHERE a.connector_instance_id = v_connection),
        ARRAY(SELECT token FROM accepting AS a CROSS JOIN LATERAL unnest(a.tokens) AS token)
    INTO v_tokens, v_connector_tokens;

    -- Which run facts the detail reads: the stored ones when nothing of this connector changed
    -- since the last refresh (the same index probes as the overview), else the connector's
    -- current facts (changed runs recomputed). The rules and the recent runs read them alike.
    -- "Nothing changed" trusts the triggers only while every one of them is armed
    -- (refproj.write_detection_intact, sql/projection/11_write_detection.sql).
    IF NOT EXISTS (SELECT 1 FROM refproj.dirty_runs AS d WHERE d.connector_id = v_connector_id)
       AND NOT refproj.rebuild_pending_now()
       AND refproj.write_detection_intact() THEN
        v_mine := refproj.newest_first(ARRAY(
            SELECT f FROM refproj.stored_run_facts(v_connector_id, v_tokens, p_run_limit) AS f));
        SELECT count(*)::int
        INTO unattributed_runs
        FROM refproj.run_facts AS f
        WHERE f.connector_id = v_connector_id
          AND f.match_token <> ALL (v_connector_tokens);
    ELSE
        SELECT refproj.newest_first(array_agg(f) FILTER (WHERE f.match_token = ANY (v_tokens))),
               count(*) FILTER (WHERE f.match_token <> ALL (v_connector_tokens))::int
        INTO v_mine, unattributed_runs
        FROM refproj.current_run_facts(v_connector_id) AS f;
    END IF;
    v_evidence := refproj.run_evidence_of(v_mine);

    SELECT p.*, (v_evidence).*, staleness.max_staleness
    INTO summary
    FROM refproj.connection_profile AS p
    JOIN refproj.connector_max_staleness AS staleness
        ON staleness.connector_id = p.connector_id
    WHERE p.connector_id = v_connector_id
      AND p.connector_instance_id = v_connection;
    freshness := refproj.freshness_status(
        refproj.fresh_until(summary.last_run, summary.last_successful_run, summary.max_staleness), p_at);
    recent_runs := refproj.recent_runs_of(v_mine, p_run_limit);
    streams_retained := COALESCE((
        SELECT jsonb_agg(jsonb_build_object(
                'stream', s.stream,
                'record_count', s.record_count,
                'current_record_json_bytes', s.current_record_json_bytes,
                'record_history_json_bytes', s.record_history_json_bytes,
                'blob_bytes', s.blob_bytes,
                'computed_at', refproj.json_time(s.computed_at))
            ORDER BY s.stream)
        FROM refproj.retained_streams AS s
        WHERE s.connector_instance_id = v_connection), '[]'::jsonb);
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION refproj.connection_detail_parts(text, int, timestamptz) IS
    'The parts of refproj.connection_detail(p_connection, p_run_limit, p_at): the row in stored form (refproj.connection_summary, computed live), its freshness status at p_at, recent_runs, streams_retained, unattributed_runs. Zero rows when the id resolves to no connection.';

CREATE FUNCTION refproj.connection_detail(
    p_connection text, p_run_limit int DEFAULT 20, p_at timestamptz DEFAULT now())
RETURNS SETOF refproj.detail_row
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
-- plpgsql rather than SQL: the session keeps the plan instead of planning on every read.
AS $$
BEGIN
    RETURN QUERY
    SELECT (refproj.overview_row_of(d.summary, d.freshness)).*,
           d.recent_runs, d.streams_retained, d.unattributed_runs
    FROM refproj.connection_detail_parts(p_connection, p_run_limit, p_at) AS d;
END
$$;
COMMENT ON FUNCTION refproj.connection_detail(text, int, timestamptz) IS
    'Live detail (as of the caller''s snapshot, whatever the last refresh) of one connection, resolved by exact connection id or by a connector id with exactly one visible connection (zero rows otherwise): every overview field plus recent_runs (up to p_run_limit latest runs, full summaries), streams_retained and unattributed_runs (the connector''s runs that match no connection).';

-- The detail as served JSON text (what Projection.get() parses): the stored fields written by
-- the same function as the overview's (refproj.summary_fields_json) and the same freshness and
-- health ending, so a detail and an overview row read at one clock agree byte for byte on every
-- shared field, whatever the session's settings; then recent_runs, streams_retained and
-- unattributed_runs. NULL when the id resolves to no connection.
CREATE FUNCTION refproj.connection_detail_json(
    p_connection text, p_run_limit int DEFAULT 20, p_at timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
-- plpgsql rather than SQL: the session keeps the plan instead of planning on every detail.
AS $$
BEGIN
    RETURN (
        SELECT
            refproj.summary_fields_json(d.summary)
            || left(refproj.overview_row_ending(d.freshness, (d.summary).status, (d.summary).last_run,
                                                (d.summary).last_successful_run, (d.summary).max_staleness), -1)
            || ',"recent_runs":' || d.recent_runs::text
            || ',"streams_retained":' || d.streams_retained::text
            || ',"unattributed_runs":' || d.unattributed_runs::text
            || '}'
        FROM refproj.connection_detail_parts(p_connection, p_run_limit, p_at) AS d);
END
$$;
COMMENT ON FUNCTION refproj.connection_detail_json(text, int, timestamptz) IS
    'refproj.connection_detail(p_connection, p_run_limit, p_at) as served JSON text (NULL when the id resolves to no connection): the shared fields byte for byte as refproj.connection_summaries_json writes them (UTC, seconds, unparsable timestamps as null), whatever the session settings.';
