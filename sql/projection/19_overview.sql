-- ---------------------------------------------------------------------------------------------
-- Serving the overview (DOMAIN.md section 6): all rows, as JSON text, or one page at a time
-- ---------------------------------------------------------------------------------------------

-- The row shapes the serving functions return, each column written once: an overview row is a
-- stored row (refproj.connection_summary) plus its read-time state; a detail row
-- (refproj.detail_row, 20_detail.sql) is an overview row plus its runs and streams. Views that
-- never return rows, so the shapes follow their sources.
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
