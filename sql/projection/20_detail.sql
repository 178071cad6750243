-- ---------------------------------------------------------------------------------------------
-- Serving the detail (DOMAIN.md section 6): one connection computed live, with its recent runs,
-- streams and the connector's unattributed runs; how a detail id resolves; live run evidence.
-- ---------------------------------------------------------------------------------------------

-- The shape of a detail row: an overview row (refproj.overview_row) plus its runs and streams.
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

-- The detail's recent runs: the p_limit latest of runs given newest first, each its run object
-- plus the rest of its summary.
CREATE FUNCTION refproj.recent_runs_of(p_newest_first refproj.run_facts[], p_limit int)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- As served: times no ISO-8601 parser reads are null (refproj.json_run).
    SELECT COALESCE(jsonb_agg(refproj.json_run(r.brief || r.details) ORDER BY r.ordinality), '[]')
    FROM unnest(p_newest_first) WITH ORDINALITY AS r
    WHERE r.ordinality <= p_limit
$$;
COMMENT ON FUNCTION refproj.recent_runs_of(refproj.run_facts[], int) IS
    'The p_limit latest of the runs (refproj.newest_first) as a JSON array of run objects with their full summaries.';

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
            k.match_tokens AS tokens
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
    -- (refproj.write_detection_intact, sql/projection/14_triggers_armed.sql).
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
