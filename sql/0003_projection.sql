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

-- ---------------------------------------------------------------------------------------------
-- Small pure helpers. They are deliberately plain SQL without SET clauses so that PostgreSQL
-- inlines them into the queries that use them (a SET clause forbids inlining and would cost a
-- function call per row). Those that build jsonb are STABLE, not IMMUTABLE: jsonb_build_object
-- is STABLE, and PostgreSQL refuses to inline a function declared stricter than its body. They
-- call only built-in functions and operators, which PostgreSQL resolves from pg_catalog before
-- any other schema.
-- ---------------------------------------------------------------------------------------------

-- A payload field as text, only when it is a non-empty JSON string; anything else is NULL.
CREATE FUNCTION refproj.jsonb_text(p_object jsonb, p_key text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN jsonb_typeof(p_object -> p_key) = 'string'
                THEN NULLIF(p_object ->> p_key, '') END
$$;
COMMENT ON FUNCTION refproj.jsonb_text(jsonb, text) IS
    'The value of p_key in p_object when it is a non-empty JSON string, else NULL (never fails on malformed payloads).';

-- The run shape shown in last_run / last_successful_run (DOMAIN.md section 5).
CREATE FUNCTION refproj.run_brief(
    p_run_id text, p_status text, p_started_at timestamptz, p_last_at timestamptz,
    p_finished_at timestamptz, p_failure_reason text, p_event_count bigint,
    p_browser_surface_profile_key text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object(
        'run_id', p_run_id,
        'status', p_status,
        'started_at', p_started_at,
        'last_at', p_last_at,
        'finished_at', p_finished_at,
        'failure_reason', p_failure_reason,
        'event_count', p_event_count,
        'browser_surface_profile_key', p_browser_surface_profile_key)
$$;
COMMENT ON FUNCTION refproj.run_brief(text, text, timestamptz, timestamptz, timestamptz, text, bigint, text) IS
    'The jsonb run object of last_run and last_successful_run.';

-- The one match token a run offers (DOMAIN.md section 4, rule order): its browser profile key,
-- else its identity, else "legacy" (a connector-wide run). Keys and identities are hashed so a
-- token always fits in an index entry, however long the value a payload carried.
CREATE FUNCTION refproj.run_match_token(p_browser_surface_profile_key text, p_identity text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_browser_surface_profile_key IS NOT NULL THEN 'key:' || md5(p_browser_surface_profile_key)
        WHEN p_identity IS NOT NULL THEN 'id:' || md5(p_identity)
        ELSE 'legacy'
    END
$$;
COMMENT ON FUNCTION refproj.run_match_token(text, text) IS
    'The match token of a run: key:<md5 of its profile key>, else id:<md5 of its identity>, else legacy.';

-- The tokens a connection accepts: its expected profile key, its own id, and "legacy" when it is
-- its connector's only active connection. A run belongs to the connection accepting its token.
CREATE FUNCTION refproj.connection_match_tokens(
    p_connector_instance_id text, p_expected_profile_key text, p_sole_active boolean)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT array_remove(
        ARRAY['key:' || md5(p_expected_profile_key),
              'id:' || md5(p_connector_instance_id),
              CASE WHEN p_sole_active THEN 'legacy' END],
        NULL)
$$;
COMMENT ON FUNCTION refproj.connection_match_tokens(text, text, boolean) IS
    'The match tokens a connection accepts: key:<md5 of its expected profile key>, id:<md5 of its id>, and legacy when it is the only active connection of its connector.';

-- ---------------------------------------------------------------------------------------------
-- Runs (DOMAIN.md section 3)
-- ---------------------------------------------------------------------------------------------

-- Every run event with the identity it claims and the typed facts the summary needs.
-- The WHERE clause matches the source/run summary index, so a filter on connector_id becomes
-- an index range scan.
CREATE VIEW refproj.run_events AS
SELECT
    e.event_seq,
    e.source_id AS connector_id,
    e.run_id,
    e.event_type,
    e.occurred_at,
    e.status,
    e.data,
    COALESCE(
        NULLIF(e.connector_instance_id, ''),
        refproj.jsonb_text(e.data, 'connector_instance_id'),
        refproj.jsonb_text(e.data, 'connection_id')) AS identity,
    e.event_type IN ('run.completed', 'run.failed', 'run.cancelled',
                     'run.browser_surface_failed', 'run.abandoned') AS is_terminal,
    e.status NOT IN ('', 'unknown') AS has_status,
    starts_with(e.event_type, 'run.browser_surface_')
        AND jsonb_typeof(e.data -> 'browser_surface') = 'object' AS is_browser_surface,
    COALESCE(refproj.jsonb_text(e.data, 'reason'),
             refproj.jsonb_text(e.data, 'failure_reason')) AS reason
FROM spine_events AS e
WHERE e.run_id IS NOT NULL
  AND e.source_kind = 'connector'
  AND e.source_id IS NOT NULL;
COMMENT ON VIEW refproj.run_events IS
    'Run events (source_kind = connector, run_id set) with their claimed identity: connector_instance_id column, else data.connector_instance_id, else data.connection_id.';

-- One row per run: (connector_id, run_id, identity). Events are first folded per claimed
-- identity; an identity-less fold joins the run id's single identity, stands alone as a legacy
-- run when the run id has no identity at all, and is ignored when the run id has several.
-- Every step keeps connector_id in its grouping/partitioning so a connector filter is pushed
-- down to the index.
CREATE VIEW refproj.run_summaries AS
WITH identity_folds AS NOT MATERIALIZED (
    SELECT
        re.connector_id,
        re.run_id,
        re.identity,
        min(re.occurred_at) AS started_at,
        max(re.occurred_at) AS last_at,
        count(*) AS event_count,
        max(re.event_seq) AS last_event_seq,
        max(re.event_seq) FILTER (WHERE re.is_terminal AND re.has_status) AS terminal_seq,
        max(re.event_seq) FILTER (WHERE re.has_status) AS status_seq,
        max(re.event_seq) FILTER (WHERE re.is_browser_surface) AS surface_seq,
        min(re.event_seq) FILTER (WHERE re.status IN ('failed', 'rejected')
                                    AND re.reason IS NOT NULL) AS first_failure_seq,
        bool_or(re.event_type = 'run.started') AS has_started
    FROM refproj.run_events AS re
    GROUP BY re.connector_id, re.run_id, re.identity
),
assigned_folds AS NOT MATERIALIZED (
    SELECT
        f.*,
        COALESCE(f.identity, CASE WHEN f.identities = 1 THEN f.sole_identity END) AS run_identity
    FROM (
        SELECT
            fo.*,
            count(fo.identity) OVER run_id_folds AS identities,
            max(fo.identity) OVER run_id_folds AS sole_identity
        FROM identity_folds AS fo
        WINDOW run_id_folds AS (PARTITION BY fo.connector_id, fo.run_id)
    ) AS f
    WHERE f.identity IS NOT NULL
       OR f.identities <= 1
),
runs AS NOT MATERIALIZED (
    SELECT
        af.connector_id,
        af.run_id,
        af.run_identity AS connector_instance_id,
        min(af.started_at) AS started_at,
        max(af.last_at) AS last_at,
        sum(af.event_count)::bigint AS event_count,
        max(af.last_event_seq) AS last_event_seq,
        max(af.terminal_seq) AS terminal_seq,
        max(af.status_seq) AS status_seq,
        max(af.surface_seq) AS surface_seq,
        min(af.first_failure_seq) AS first_failure_seq,
        bool_or(af.has_started) AS has_started
    FROM assigned_folds AS af
    GROUP BY af.connector_id, af.run_id, af.run_identity
),
run_outcomes AS NOT MATERIALIZED (
    SELECT
        r.*,
        CASE
            WHEN terminal.event_seq IS NOT NULL THEN terminal.status
            WHEN r.has_started AND active.run_id IS NOT NULL THEN 'in_progress'
            WHEN r.has_started THEN 'failed'
            WHEN newest_status.event_seq IS NOT NULL THEN newest_status.status
            ELSE 'unknown'
        END AS status,
        terminal.event_seq IS NULL AND r.has_started AND active.run_id IS NULL AS orphaned,
        terminal.reason AS terminal_reason,
        first_failure.reason AS first_failure_reason,
        terminal.data AS terminal_data,
        refproj.jsonb_text(surface.data -> 'browser_surface', 'browser_surface_profile_key')
            AS browser_surface_profile_key,
        refproj.jsonb_text(surface.data -> 'browser_surface', 'browser_surface_status')
            AS browser_surface_status,
        refproj.jsonb_text(surface.data -> 'browser_surface', 'browser_surface_wait_reason')
            AS browser_surface_wait_reason
    FROM runs AS r
    LEFT JOIN refproj.run_events AS terminal
        ON terminal.event_seq = r.terminal_seq
    LEFT JOIN refproj.run_events AS newest_status
        ON newest_status.event_seq = r.status_seq
    LEFT JOIN refproj.run_events AS surface
        ON surface.event_seq = r.surface_seq
    LEFT JOIN refproj.run_events AS first_failure
        ON first_failure.event_seq = r.first_failure_seq
    -- The controller's row must be for this connector and, when the run has an identity, for
    -- that connection: a reused run id must not make a sibling's dead run look alive.
    LEFT JOIN controller_active_runs AS active
        ON active.run_id = r.run_id
       AND active.connector_id = r.connector_id
       AND (r.connector_instance_id IS NULL
            OR active.connector_instance_id = r.connector_instance_id)
)
SELECT
    o.connector_id,
    o.run_id,
    o.connector_instance_id,
    o.status,
    o.started_at,
    o.last_at,
    CASE WHEN o.status <> 'in_progress' THEN o.last_at END AS finished_at,
    CASE
        WHEN o.status IN ('succeeded', 'in_progress') THEN NULL
        ELSE COALESCE(
            o.terminal_reason,
            CASE WHEN o.orphaned THEN 'orphaned_started_run' END,
            o.first_failure_reason,
            CASE WHEN o.status = 'surface_failed'
                 THEN COALESCE(o.browser_surface_wait_reason, o.browser_surface_status,
                               'browser_surface_failed') END)
    END AS failure_reason,
    o.event_count,
    o.last_event_seq,
    o.browser_surface_profile_key,
    o.browser_surface_status,
    o.browser_surface_wait_reason,
    CASE WHEN jsonb_typeof(o.terminal_data -> 'known_gaps') = 'array'
         THEN o.terminal_data -> 'known_gaps' ELSE '[]'::jsonb END AS known_gaps,
    CASE WHEN jsonb_typeof(o.terminal_data -> 'collection_facts') = 'object'
         THEN o.terminal_data -> 'collection_facts' END AS collection_facts,
    CASE WHEN jsonb_typeof(o.terminal_data -> 'records_emitted') = 'number'
              AND (o.terminal_data ->> 'records_emitted')::numeric BETWEEN 0 AND 9000000000000000000
              AND (o.terminal_data ->> 'records_emitted')::numeric
                  = trunc((o.terminal_data ->> 'records_emitted')::numeric)
         THEN (o.terminal_data ->> 'records_emitted')::numeric::bigint END AS records_emitted
FROM run_outcomes AS o;
COMMENT ON VIEW refproj.run_summaries IS
    'One row per run (connector_id, run_id, connector_instance_id = the run''s identity or NULL) with status, timing, failure reason and terminal payload facts (DOMAIN.md section 3). Computed live.';

-- ---------------------------------------------------------------------------------------------
-- Which runs belong to which connection (DOMAIN.md section 4)
-- ---------------------------------------------------------------------------------------------

-- Every connection (including retired setup attempts, which still claim their own runs) with
-- its expected browser profile key and whether it is its connector's only active connection.
CREATE VIEW refproj.connection_keys AS
SELECT
    ci.connector_instance_id,
    ci.connector_id,
    ci.status,
    CASE WHEN ci.connector_instance_id = ci.connector_id
         THEN profile.base
         ELSE profile.base || ':' || ci.connector_instance_id
    END AS expected_profile_key,
    count(*) FILTER (WHERE ci.status = 'active') OVER (PARTITION BY ci.connector_id) = 1
        AND ci.status = 'active' AS sole_active
FROM connector_instances AS ci
JOIN connectors AS c
    ON c.connector_id = ci.connector_id
CROSS JOIN LATERAL (
    SELECT COALESCE(
        NULLIF(btrim(CASE WHEN jsonb_typeof(c.manifest #> '{capabilities,browser_surface,profile_key}') = 'string'
                          THEN c.manifest #>> '{capabilities,browser_surface,profile_key}' END,
                     E' \t\n\r\f\x0B'), ''),
        c.connector_id) AS base
) AS profile;
COMMENT ON VIEW refproj.connection_keys IS
    'Every connection with its expected browser profile key (manifest profile_key or connector_id, plus '':'' || connector_instance_id unless they are equal) and whether it is the only active connection of its connector.';

-- Each run with the connection it belongs to (attributed_to), or NULL when it matches nobody.
-- A run offers one match token and each connection accepts up to three, so the rule order of
-- DOMAIN.md section 4 is one equi-join.
CREATE VIEW refproj.attributed_runs AS
SELECT
    r.*,
    accepting.connector_instance_id AS attributed_to
FROM refproj.run_summaries AS r
LEFT JOIN (
    SELECT k.connector_id, k.connector_instance_id, token.match_token
    FROM refproj.connection_keys AS k
    CROSS JOIN LATERAL unnest(refproj.connection_match_tokens(
        k.connector_instance_id, k.expected_profile_key, k.sole_active)) AS token (match_token)
) AS accepting
    ON accepting.connector_id = r.connector_id
   AND accepting.match_token = refproj.run_match_token(r.browser_surface_profile_key, r.connector_instance_id);
COMMENT ON VIEW refproj.attributed_runs IS
    'Every run summary with attributed_to: the connection it belongs to under DOMAIN.md section 4 (profile key, else identity, else sole active connection), NULL when unattributed.';

-- Per connection: latest run, latest successful run and failures since that success.
-- "Latest" is (last_at DESC, last_event_seq DESC) everywhere.
CREATE VIEW refproj.connection_run_rollup AS
SELECT
    ranked.connector_id,
    ranked.attributed_to AS connector_instance_id,
    (array_agg(refproj.run_brief(ranked.run_id, ranked.status, ranked.started_at, ranked.last_at,
                                 ranked.finished_at, ranked.failure_reason, ranked.event_count,
                                 ranked.browser_surface_profile_key))
        FILTER (WHERE ranked.recency = 1))[1] AS last_run,
    (array_agg(refproj.run_brief(ranked.run_id, ranked.status, ranked.started_at, ranked.last_at,
                                 ranked.finished_at, ranked.failure_reason, ranked.event_count,
                                 ranked.browser_surface_profile_key))
        FILTER (WHERE ranked.status = 'succeeded' AND ranked.outcome_recency = 1))[1]
        AS last_successful_run,
    (count(*) FILTER (WHERE ranked.status IN ('failed', 'surface_failed', 'abandoned')
                        AND (ranked.success_at IS NULL OR ranked.last_at > ranked.success_at)))::int
        AS failures_since_last_success
FROM (
    SELECT
        ar.*,
        row_number() OVER (PARTITION BY ar.connector_id, ar.attributed_to
                           ORDER BY ar.last_at DESC, ar.last_event_seq DESC) AS recency,
        row_number() OVER (PARTITION BY ar.connector_id, ar.attributed_to, ar.status = 'succeeded'
                           ORDER BY ar.last_at DESC, ar.last_event_seq DESC) AS outcome_recency,
        max(ar.last_at) FILTER (WHERE ar.status = 'succeeded')
            OVER (PARTITION BY ar.connector_id, ar.attributed_to) AS success_at
    FROM refproj.attributed_runs AS ar
    WHERE ar.attributed_to IS NOT NULL
) AS ranked
GROUP BY ranked.connector_id, ranked.attributed_to;
COMMENT ON VIEW refproj.connection_run_rollup IS
    'Per connection with at least one run: last_run, last_successful_run, failures_since_last_success (DOMAIN.md section 4). Computed live.';

-- ---------------------------------------------------------------------------------------------
-- The connection summary (DOMAIN.md section 5)
-- ---------------------------------------------------------------------------------------------

-- Connections the console lists: all but retired setup attempts.
CREATE VIEW refproj.visible_connections AS
SELECT ci.*
FROM connector_instances AS ci
WHERE NOT (ci.status = 'revoked'
           AND COALESCE(ci.source_binding ->> 'kind', '') IN ('browser_enrollment_shell',
                                                              'static_secret_draft',
                                                              'manual_upload_draft'));
COMMENT ON VIEW refproj.visible_connections IS
    'Connections shown by the console: every connection except revoked retired setup attempts (source_binding.kind browser_enrollment_shell, static_secret_draft, manual_upload_draft).';

CREATE VIEW refproj.retained_streams AS
SELECT s.*
FROM retained_size_stream AS s;
COMMENT ON VIEW refproj.retained_streams IS
    'Retained size per (connection, stream), as the application reports it.';

-- What a connection row says apart from its runs, computed live.
CREATE VIEW refproj.connection_profile AS
SELECT
    ci.connector_instance_id,
    ci.connector_instance_id AS connection_id,
    ci.connector_id,
    COALESCE(NULLIF(ci.display_name, ''), NULLIF(c.display_name, ''), c.connector_id) AS display_name,
    COALESCE(NULLIF(c.display_name, ''), c.connector_id) AS connector_display_name,
    ci.status,
    ci.source_kind,
    ci.created_at,
    ci.revoked_at,
    ARRAY(
        SELECT name
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(c.manifest -> 'streams') = 'array'
                                       THEN c.manifest -> 'streams' END)
             WITH ORDINALITY AS stream (item, position)
        CROSS JOIN LATERAL (
            SELECT CASE WHEN jsonb_typeof(stream.item) = 'string' THEN NULLIF(stream.item #>> '{}', '')
                        ELSE refproj.jsonb_text(stream.item, 'name') END AS name
        ) AS named
        WHERE name IS NOT NULL
        ORDER BY stream.position
    ) AS streams,
    COALESCE(retained_stream.stream_count, 0)::int AS stream_count,
    COALESCE(retained_stream.total_records, 0)::bigint AS total_records,
    CASE WHEN rc.connector_instance_id IS NOT NULL THEN jsonb_build_object(
        'record_json_bytes', rc.current_record_json_bytes,
        'record_changes_json_bytes', rc.record_history_json_bytes,
        'blob_bytes', rc.blob_bytes,
        'total_bytes', rc.current_record_json_bytes + rc.record_history_json_bytes + rc.blob_bytes)
    END AS retained_bytes,
    COALESCE(rc.current_record_json_bytes + rc.record_history_json_bytes + rc.blob_bytes, 0)::bigint
        AS total_retained_bytes,
    CASE WHEN jsonb_typeof(c.manifest #> '{refresh_policy,max_staleness_seconds}') = 'number'
              AND (c.manifest #>> '{refresh_policy,max_staleness_seconds}')::numeric
                  BETWEEN 0 AND 3153600000
         THEN make_interval(secs => (c.manifest #>> '{refresh_policy,max_staleness_seconds}')::double precision)
         ELSE interval '24 hours'
    END AS max_staleness
FROM refproj.visible_connections AS ci
JOIN connectors AS c
    ON c.connector_id = ci.connector_id
LEFT JOIN (
    SELECT
        s.connector_instance_id,
        count(*) AS stream_count,
        sum(s.record_count) AS total_records
    FROM retained_size_stream AS s
    GROUP BY s.connector_instance_id
) AS retained_stream
    ON retained_stream.connector_instance_id = ci.connector_instance_id
LEFT JOIN retained_size_connection AS rc
    ON rc.connector_instance_id = ci.connector_instance_id;
COMMENT ON VIEW refproj.connection_profile IS
    'Every visible connection with the fields of DOMAIN.md section 5 that do not come from runs: names, status, streams, retained sizes, max_staleness.';
-- The stored evidence of every visible connection, computed live from the source tables;
-- connection_detail reads it for one connection.
CREATE VIEW refproj.connection_evidence AS
SELECT
    p.connector_instance_id, p.connection_id, p.connector_id, p.display_name,
    p.connector_display_name, p.status, p.source_kind, p.created_at, p.revoked_at, p.streams,
    p.stream_count, p.total_records, p.retained_bytes, p.total_retained_bytes,
    rollup.last_run,
    rollup.last_successful_run,
    COALESCE(rollup.failures_since_last_success, 0) AS failures_since_last_success,
    p.max_staleness
FROM refproj.connection_profile AS p
LEFT JOIN refproj.connection_run_rollup AS rollup
    ON rollup.connector_id = p.connector_id
   AND rollup.connector_instance_id = p.connector_instance_id;
COMMENT ON VIEW refproj.connection_evidence IS
    'The stored evidence of every visible connection (DOMAIN.md section 5), computed live from the source tables (refproj.connection_summary holds the same, maintained).';

-- ---------------------------------------------------------------------------------------------
-- The maintained overview (DOMAIN.md section 6: its cost must not grow with run history)
--
-- run_facts holds one row per run with its match token and brief, maintained by each refresh
-- for exactly the runs whose events changed (refproj.dirty_runs, filled by statement triggers).
-- The stored overview then costs a few index probes per connection, whatever the history.
-- ---------------------------------------------------------------------------------------------

CREATE TYPE refproj.run_key AS (connector_id text, run_id text);
COMMENT ON TYPE refproj.run_key IS 'A run id of a connector: every identity of it is recomputed together.';

CREATE TABLE refproj.run_facts (
    connector_id text NOT NULL,
    run_id text NOT NULL,
    connector_instance_id text NULL,
    match_token text NOT NULL,
    status text NOT NULL,
    last_at timestamptz NOT NULL,
    last_event_seq bigint NOT NULL,
    brief jsonb NOT NULL,
    details jsonb NOT NULL
);
-- The run_facts rows computed from the source tables; a refresh stores them for changed runs.
CREATE VIEW refproj.run_facts_live AS
SELECT
    r.connector_id, r.run_id, r.connector_instance_id,
    refproj.run_match_token(r.browser_surface_profile_key, r.connector_instance_id) AS match_token,
    r.status, r.last_at, r.last_event_seq,
    refproj.run_brief(r.run_id, r.status, r.started_at, r.last_at, r.finished_at, r.failure_reason,
                      r.event_count, r.browser_surface_profile_key) AS brief,
    jsonb_build_object(
        'connector_instance_id', r.connector_instance_id,
        'browser_surface_status', r.browser_surface_status,
        'browser_surface_wait_reason', r.browser_surface_wait_reason,
        'known_gaps', r.known_gaps,
        'collection_facts', r.collection_facts,
        'records_emitted', r.records_emitted) AS details
FROM refproj.run_summaries AS r;
COMMENT ON VIEW refproj.run_facts_live IS
    'What refproj.run_facts holds for every run, computed live from the source tables.';

INSERT INTO refproj.run_facts
SELECT *
FROM refproj.run_facts_live;
CREATE INDEX run_facts_run_idx
    ON refproj.run_facts (connector_id, run_id);
CREATE INDEX run_facts_latest_idx
    ON refproj.run_facts (connector_id, match_token, last_at DESC, last_event_seq DESC);
CREATE INDEX run_facts_latest_success_idx
    ON refproj.run_facts (connector_id, match_token, last_at DESC, last_event_seq DESC)
    WHERE status = 'succeeded';
CREATE INDEX run_facts_failures_idx
    ON refproj.run_facts (connector_id, match_token, last_at)
    WHERE status IN ('failed', 'surface_failed', 'abandoned');
COMMENT ON TABLE refproj.run_facts IS
    'One row per run as of the last refresh: match token, status, recency, the last_run object (brief) and the rest of the run summary (details). Maintained incrementally by refproj.refresh_connection_summary(); always equal to refproj.run_facts_live once dirty_runs is empty.';

-- run_facts_live for the given runs only. OFFSET 0 keeps the lateral subquery from being
-- flattened, so each key becomes an index range scan on the source/run summary index.
CREATE FUNCTION refproj.run_facts_of(p_keys refproj.run_key[])
RETURNS SETOF refproj.run_facts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
AS $$
    SELECT f.*
    FROM unnest(p_keys) AS k
    CROSS JOIN LATERAL (
        SELECT *
        FROM refproj.run_facts_live AS live
        WHERE live.connector_id = k.connector_id
          AND live.run_id = k.run_id
        OFFSET 0
    ) AS f
$$;
COMMENT ON FUNCTION refproj.run_facts_of(refproj.run_key[]) IS
    'refproj.run_facts_live rows of the given (connector_id, run_id) keys, each read through the source/run summary index.';

-- A connector's run facts as the source tables say right now: the stored rows of runs that did
-- not change since the last refresh, and the changed ones recomputed. Equal to
-- run_facts_live filtered to the connector, at the cost of its changed runs only.
CREATE FUNCTION refproj.current_run_facts(p_connector_id text)
RETURNS SETOF refproj.run_facts
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
AS $$
DECLARE
    v_rebuild boolean;
    v_changed refproj.run_key[];
BEGIN
    SELECT ps.rebuild_requests > ps.rebuild_done INTO v_rebuild FROM refproj.projection_state AS ps;
    SELECT COALESCE(array_agg(DISTINCT ROW(d.connector_id, d.run_id)::refproj.run_key), '{}')
    INTO v_changed
    FROM refproj.dirty_runs AS d
    WHERE d.connector_id = p_connector_id
      AND d.run_id IS NOT NULL;

    IF v_rebuild THEN
        RETURN QUERY
        SELECT * FROM refproj.run_facts_live AS live WHERE live.connector_id = p_connector_id;
        RETURN;
    END IF;

    RETURN QUERY
    SELECT f.*
    FROM refproj.run_facts AS f
    WHERE f.connector_id = p_connector_id
      AND NOT (ROW(f.connector_id, f.run_id)::refproj.run_key = ANY (v_changed));
    -- Planning the recomputation costs milliseconds: only when there is something to recompute.
    IF cardinality(v_changed) > 0 THEN
        RETURN QUERY
        SELECT * FROM refproj.run_facts_of(v_changed);
    END IF;
END
$$;
COMMENT ON FUNCTION refproj.current_run_facts(text) IS
    'The run facts of one connector as of the caller''s snapshot (stored rows of unchanged runs plus changed runs recomputed): equal to refproj.run_facts_live for that connector.';

-- Latest run, latest success and failures since, for one connection, from run_facts: one index
-- probe per accepted token for each of the first two, one range scan for the count.
CREATE FUNCTION refproj.stored_run_evidence(p_connector_id text, p_tokens text[])
RETURNS TABLE (last_run jsonb, last_successful_run jsonb, failures_since_last_success int)
LANGUAGE sql STABLE
ROWS 1
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    WITH latest AS (
        SELECT newest.brief
        FROM unnest(p_tokens) AS token (match_token)
        CROSS JOIN LATERAL (
            SELECT f.brief, f.last_at, f.last_event_seq
            FROM refproj.run_facts AS f
            WHERE f.connector_id = p_connector_id
              AND f.match_token = token.match_token
            ORDER BY f.last_at DESC, f.last_event_seq DESC
            LIMIT 1
        ) AS newest
        ORDER BY newest.last_at DESC, newest.last_event_seq DESC
        LIMIT 1
    ),
    latest_success AS (
        SELECT newest.brief, newest.last_at
        FROM unnest(p_tokens) AS token (match_token)
        CROSS JOIN LATERAL (
            SELECT f.brief, f.last_at, f.last_event_seq
            FROM refproj.run_facts AS f
            WHERE f.connector_id = p_connector_id
              AND f.match_token = token.match_token
              AND f.status = 'succeeded'
            ORDER BY f.last_at DESC, f.last_event_seq DESC
            LIMIT 1
        ) AS newest
        ORDER BY newest.last_at DESC, newest.last_event_seq DESC
        LIMIT 1
    )
    SELECT
        (SELECT brief FROM latest),
        (SELECT brief FROM latest_success),
        (SELECT count(*)::int
         FROM unnest(p_tokens) AS token (match_token)
         JOIN refproj.run_facts AS f
             ON f.connector_id = p_connector_id
            AND f.match_token = token.match_token
         WHERE f.status IN ('failed', 'surface_failed', 'abandoned')
           AND f.last_at > COALESCE((SELECT last_at FROM latest_success), '-infinity'))
$$;
COMMENT ON FUNCTION refproj.stored_run_evidence(text, text[]) IS
    'last_run, last_successful_run and failures_since_last_success of a connection accepting p_tokens, from refproj.run_facts.';

CREATE MATERIALIZED VIEW refproj.connection_summary AS
SELECT
    p.connector_instance_id, p.connection_id, p.connector_id, p.display_name,
    p.connector_display_name, p.status, p.source_kind, p.created_at, p.revoked_at, p.streams,
    p.stream_count, p.total_records, p.retained_bytes, p.total_retained_bytes,
    evidence.last_run,
    evidence.last_successful_run,
    evidence.failures_since_last_success,
    p.max_staleness
FROM refproj.connection_profile AS p
JOIN refproj.connection_keys AS k
    ON k.connector_instance_id = p.connector_instance_id
CROSS JOIN LATERAL refproj.stored_run_evidence(
    p.connector_id,
    refproj.connection_match_tokens(k.connector_instance_id, k.expected_profile_key, k.sole_active)
) AS evidence;
CREATE UNIQUE INDEX connection_summary_connector_instance_id_idx
    ON refproj.connection_summary (connector_instance_id);
CREATE INDEX connection_summary_overview_order_idx
    ON refproj.connection_summary (connector_id, created_at, connector_instance_id);
COMMENT ON MATERIALIZED VIEW refproj.connection_summary IS
    'Stored evidence per visible connection (DOMAIN.md section 5), from refproj.run_facts. Never holds freshness or health: read it through refproj.connection_summaries(p_at). Refresh with refproj.refresh_connection_summary().';

-- ---------------------------------------------------------------------------------------------
-- Read-time state (DOMAIN.md section 5): computed from the stored evidence and the read's clock,
-- never stored, so a stored row can never claim "healthy" after it went stale.
-- ---------------------------------------------------------------------------------------------

-- Freshness is a step in read time (DOMAIN.md section 5): a connection reads current up to one
-- moment and not after it. fresh_until computes that moment once from the stored evidence, so
-- the read itself is one comparison. Each helper takes plain values so it inlines with no
-- argument evaluated twice: callers compute fresh_until and the status once (OFFSET 0 keeps
-- each a column) and pass them on.
CREATE FUNCTION refproj.fresh_until(
    p_last_run jsonb, p_last_successful_run jsonb, p_max_staleness interval)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_last_run ->> 'status' IN ('failed', 'surface_failed', 'cancelled', 'abandoned')
             AND (p_last_successful_run IS NULL
                  OR (p_last_run ->> 'last_at')::timestamptz
                     >= (p_last_successful_run ->> 'last_at')::timestamptz)
            THEN timestamptz '-infinity'
        WHEN p_last_successful_run IS NULL
            THEN NULL
        -- Past this bound the sum would leave the timestamp range; such a connection is current
        -- at any read time that fits in it.
        WHEN (p_last_successful_run ->> 'last_at')::timestamptz
             < timestamptz '294000-01-01 00:00:00+00' - p_max_staleness
            THEN (p_last_successful_run ->> 'last_at')::timestamptz + p_max_staleness
        ELSE timestamptz 'infinity'
    END
$$;
COMMENT ON FUNCTION refproj.fresh_until(jsonb, jsonb, interval) IS
    'The last read time at which a connection is current: -infinity when its last run failed after its last success, NULL when nothing succeeded (unknown), else the last success plus max_staleness (DOMAIN.md section 5).';

CREATE FUNCTION refproj.freshness_status(p_fresh_until timestamptz, p_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_at <= p_fresh_until THEN 'current'
        WHEN p_fresh_until IS NULL THEN 'unknown'
        ELSE 'stale'
    END
$$;
COMMENT ON FUNCTION refproj.freshness_status(timestamptz, timestamptz) IS
    'current, stale or unknown for a connection read at p_at, from its refproj.fresh_until (DOMAIN.md section 5).';

CREATE FUNCTION refproj.freshness_object(
    p_status text, p_last_run jsonb, p_last_successful_run jsonb, p_max_staleness interval)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object(
        'status', p_status,
        'captured_at', p_last_successful_run -> 'last_at',
        'last_attempted_at', p_last_run -> 'last_at',
        'max_staleness_seconds', extract(epoch FROM p_max_staleness))
$$;
COMMENT ON FUNCTION refproj.freshness_object(text, jsonb, jsonb, interval) IS
    'The freshness object {status, captured_at, last_attempted_at, max_staleness_seconds}.';

CREATE FUNCTION refproj.health_at(p_status text, p_last_run jsonb, p_freshness_status text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_status = 'revoked' THEN jsonb_build_object('state', 'revoked', 'reason', 'connection_revoked')
        WHEN p_status = 'paused' THEN jsonb_build_object('state', 'paused', 'reason', 'connection_paused')
        WHEN p_status = 'draft' THEN jsonb_build_object('state', 'setup', 'reason', 'connection_draft')
        WHEN p_last_run ->> 'status' = 'in_progress'
            THEN jsonb_build_object('state', 'running', 'reason', 'run_in_progress')
        WHEN p_last_run IS NULL THEN jsonb_build_object('state', 'idle', 'reason', 'never_run')
        WHEN p_last_run ->> 'status' IN ('failed', 'surface_failed', 'cancelled', 'abandoned')
            THEN jsonb_build_object('state', 'failing',
                                    'reason', COALESCE(p_last_run ->> 'failure_reason', p_last_run ->> 'status'))
        WHEN p_freshness_status = 'stale'
            THEN jsonb_build_object('state', 'stale', 'reason', 'past_max_staleness')
        WHEN p_freshness_status = 'current'
            THEN jsonb_build_object('state', 'healthy', 'reason', NULL)
        ELSE jsonb_build_object('state', 'unknown', 'reason', 'no_successful_run')
    END
$$;
COMMENT ON FUNCTION refproj.health_at(text, jsonb, text) IS
    'Health {state, reason} from connection status, last run and freshness status; first rule that applies (DOMAIN.md section 5).';

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

-- Timestamps and intervals are written in one fixed style (UTC, postgres intervals), whatever
-- the settings of the session that refreshes.
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
        left(to_json(stored)::text, -1),
        step.fresh_until,
        refproj.overview_row_ending(
            refproj.freshness_status(step.fresh_until, timestamptz '-infinity'),
            s.status, s.last_run, s.last_successful_run, s.max_staleness),
        refproj.overview_row_ending(
            refproj.freshness_status(step.fresh_until, timestamptz 'infinity'),
            s.status, s.last_run, s.last_successful_run, s.max_staleness)
    FROM refproj.connection_summary AS s
    CROSS JOIN LATERAL (
        SELECT
            s.connector_instance_id, s.connection_id, s.connector_id, s.display_name,
            s.connector_display_name, s.status, s.source_kind, s.created_at, s.revoked_at,
            s.streams, s.stream_count, s.total_records, s.retained_bytes, s.total_retained_bytes,
            s.last_run, s.last_successful_run, s.failures_since_last_success, s.max_staleness
    ) AS stored
    CROSS JOIN LATERAL (
        SELECT refproj.fresh_until(s.last_run, s.last_successful_run, s.max_staleness) AS fresh_until
        OFFSET 0
    ) AS step
$$;
COMMENT ON FUNCTION refproj.connection_summary_json_rows() IS
    'Each row of refproj.connection_summary as overview JSON text: the stored fields, fresh_until, and the two possible endings (freshness and health) for read times up to fresh_until and after it.';

CREATE MATERIALIZED VIEW refproj.connection_summary_json AS
SELECT * FROM refproj.connection_summary_json_rows();
CREATE UNIQUE INDEX connection_summary_json_connector_instance_id_idx
    ON refproj.connection_summary_json (connector_instance_id);
COMMENT ON MATERIALIZED VIEW refproj.connection_summary_json IS
    'refproj.connection_summary serialised for refproj.connection_summaries_json(): per row the stored fields as JSON text and the endings for read times up to fresh_until (ending_until) and after (ending_after). Refreshed with it by refproj.refresh_connection_summary().';

-- ---------------------------------------------------------------------------------------------
-- Write detection and refresh bookkeeping (DOMAIN.md section 7, CONTRACT.md section 3)
-- ---------------------------------------------------------------------------------------------

-- One row per transaction that wrote connectors, connector_instances or the retained-size tables
-- since the last refresh. Inserts never block each other (each transaction has its own key), so
-- writers do not serialise on a shared counter, and a late-committing transaction stays here
-- until a refresh whose snapshot includes it.
CREATE TABLE refproj.source_writes (
    xid xid8 PRIMARY KEY
);
ALTER TABLE refproj.source_writes SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
COMMENT ON TABLE refproj.source_writes IS
    'Transactions that wrote connectors, connector_instances or the retained-size tables and are not yet reflected in refproj.connection_summary.';

-- Runs whose spine events or active-run rows changed since the last refresh; one row per
-- statement and run id (a spine write that touches no run leaves one row of NULLs, so it still
-- counts as a source write). The next refresh claims the committed rows and recomputes exactly
-- those runs; rows of a transaction that commits later stay for the refresh after.
CREATE TABLE refproj.dirty_runs (
    connector_id text NULL,
    run_id text NULL
);
-- A detail reads its connector's rows.
CREATE INDEX dirty_runs_connector_idx ON refproj.dirty_runs (connector_id);
-- Every refresh deletes what it claimed: vacuum soon after, not after a fifth of the table died.
ALTER TABLE refproj.dirty_runs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
COMMENT ON TABLE refproj.dirty_runs IS
    'Runs changed since the last refresh (connector_id, run_id). Claimed and emptied by refproj.refresh_connection_summary(). A TRUNCATE counts in projection_state.rebuild_requests instead.';

CREATE TABLE refproj.projection_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    as_of timestamptz NOT NULL,
    refresh_ticket bigint NOT NULL DEFAULT 0,
    last_refresh_ms double precision NULL,
    refresh_count bigint NOT NULL DEFAULT 0,
    -- TRUNCATEs of spine_events or controller_active_runs seen, and handled by a full rebuild.
    rebuild_requests bigint NOT NULL DEFAULT 0,
    rebuild_done bigint NOT NULL DEFAULT 0
);
INSERT INTO refproj.projection_state (as_of) VALUES (now());
COMMENT ON TABLE refproj.projection_state IS
    'Single row: when the stored evidence was computed (as_of), the ticket its refresh started at, and refresh statistics.';

-- Tickets order refresh requests against refresh starts: nextval is non-transactional and
-- strictly increasing across sessions.
CREATE SEQUENCE refproj.refresh_ticket;
COMMENT ON SEQUENCE refproj.refresh_ticket IS
    'Orders refresh requests against refresh starts for read-your-writes coalescing.';

-- Trigger functions are SECURITY DEFINER so the application's writers need no privilege on the
-- refproj schema. All are statement-level: one small insert per writing statement.
CREATE FUNCTION refproj.note_source_write()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO refproj.source_writes (xid)
    VALUES (pg_current_xact_id())
    ON CONFLICT (xid) DO NOTHING;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION refproj.note_source_write() IS
    'Statement trigger: records that the current transaction wrote a source table.';

-- The runs a spine_events statement touched, from its transition tables.
CREATE FUNCTION refproj.note_spine_write()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- A TRUNCATE has no transition table: ask the next refresh to rebuild everything.
        UPDATE refproj.projection_state SET rebuild_requests = rebuild_requests + 1;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT DISTINCT k.connector_id, k.run_id
        FROM new_rows AS n
        CROSS JOIN LATERAL refproj.spine_run_key(n.source_kind, n.source_id, n.run_id) AS k;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT DISTINCT k.connector_id, k.run_id
        FROM (SELECT * FROM old_rows UNION ALL SELECT * FROM new_rows) AS n
        CROSS JOIN LATERAL refproj.spine_run_key(n.source_kind, n.source_id, n.run_id) AS k;
    ELSE
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT DISTINCT k.connector_id, k.run_id
        FROM old_rows AS n
        CROSS JOIN LATERAL refproj.spine_run_key(n.source_kind, n.source_id, n.run_id) AS k;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION refproj.note_spine_write() IS
    'Statement trigger on spine_events: records the (connector_id, run_id) of every run event the statement inserted, updated or deleted.';

-- A spine row's run key, or NULLs when it is not a run event (refproj.run_events' filter).
CREATE FUNCTION refproj.spine_run_key(p_source_kind text, p_source_id text, p_run_id text)
RETURNS TABLE (connector_id text, run_id text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT
        CASE WHEN p_source_kind = 'connector' AND p_run_id IS NOT NULL THEN p_source_id END,
        CASE WHEN p_source_kind = 'connector' AND p_source_id IS NOT NULL THEN p_run_id END
$$;
COMMENT ON FUNCTION refproj.spine_run_key(text, text, text) IS
    'The (connector_id, run_id) a spine row contributes to, or NULLs for a row that is no run event.';

-- Whether the controller runs a run decides in_progress versus failed: its rows dirty their runs.
CREATE FUNCTION refproj.note_active_run_write()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- A TRUNCATE has no transition table: ask the next refresh to rebuild everything.
        UPDATE refproj.projection_state SET rebuild_requests = rebuild_requests + 1;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT DISTINCT n.connector_id, n.run_id FROM new_rows AS n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT n.connector_id, n.run_id FROM old_rows AS n
        UNION
        SELECT n.connector_id, n.run_id FROM new_rows AS n;
    ELSE
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT DISTINCT n.connector_id, n.run_id FROM old_rows AS n;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION refproj.note_active_run_write() IS
    'Statement trigger on controller_active_runs: records the runs whose in_progress status may have changed.';

CREATE TRIGGER refproj_note_source_write
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON connectors
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_source_write();
CREATE TRIGGER refproj_note_source_write
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON connector_instances
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_source_write();
CREATE TRIGGER refproj_note_source_write
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON retained_size_connection
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_source_write();
CREATE TRIGGER refproj_note_source_write
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON retained_size_stream
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_source_write();

CREATE TRIGGER refproj_note_insert
    AFTER INSERT ON spine_events REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_spine_write();
CREATE TRIGGER refproj_note_update
    AFTER UPDATE ON spine_events REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_spine_write();
CREATE TRIGGER refproj_note_delete
    AFTER DELETE ON spine_events REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_spine_write();
CREATE TRIGGER refproj_note_truncate
    AFTER TRUNCATE ON spine_events
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_spine_write();

CREATE TRIGGER refproj_note_insert
    AFTER INSERT ON controller_active_runs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_active_run_write();
CREATE TRIGGER refproj_note_update
    AFTER UPDATE ON controller_active_runs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_active_run_write();
CREATE TRIGGER refproj_note_delete
    AFTER DELETE ON controller_active_runs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_active_run_write();
CREATE TRIGGER refproj_note_truncate
    AFTER TRUNCATE ON controller_active_runs
    FOR EACH STATEMENT EXECUTE FUNCTION refproj.note_active_run_write();

-- Coalesced, read-your-writes refresh.
--
-- Invariant: when this returns, a refresh whose snapshot was taken after this call began has
-- committed. Each call draws a ticket on entry; each refresh draws a ticket just before its
-- snapshot and stores it. Callers queue on one transaction-scoped advisory lock; the holder
-- returns at once if the stored ticket is newer than its own (a refresh that started after it
-- arrived has committed), and otherwise refreshes. So a burst of N callers costs at most the
-- refresh already running plus one more.
CREATE FUNCTION refproj.refresh_connection_summary(
    p_only_if_changed boolean DEFAULT false,
    OUT refreshed boolean, OUT as_of timestamptz, OUT refresh_ms double precision)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
AS $$
DECLARE
    v_ticket bigint := nextval('refproj.refresh_ticket');
    v_started_ticket bigint;
    v_started timestamptz;
    v_snapshot pg_snapshot;
    v_rebuild boolean;
    v_rebuild_requests bigint;
    v_keys refproj.run_key[];
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'refproj.refresh_connection_summary() needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;

    PERFORM pg_advisory_xact_lock(7418206610342958901);

    SELECT ps.refresh_ticket, ps.as_of
    INTO v_started_ticket, v_started
    FROM refproj.projection_state AS ps;
    -- p_only_if_changed is for watchers that saw source_changed: when another refresh has
    -- already absorbed every write, there is nothing left to do.
    IF v_started_ticket > v_ticket
       OR (p_only_if_changed
           AND NOT (SELECT ps.source_changed FROM refproj.projection_status() AS ps)) THEN
        refreshed := false;
        as_of := v_started;
        refresh_ms := 0;
        RETURN;
    END IF;

    v_started_ticket := nextval('refproj.refresh_ticket');
    v_started := clock_timestamp();
    v_snapshot := pg_current_snapshot();

    -- Claim the changed runs committed so far and bring their run_facts up to date. A backlog
    -- larger than a tenth of all runs (a bulk load, a TRUNCATE) is cheaper to rebuild whole.
    WITH claimed AS (
        DELETE FROM refproj.dirty_runs
        RETURNING connector_id, run_id
    )
    SELECT COALESCE(array_agg(DISTINCT ROW(claimed.connector_id, claimed.run_id)::refproj.run_key)
                        FILTER (WHERE claimed.run_id IS NOT NULL), '{}')
    INTO v_keys
    FROM claimed;
    SELECT ps.rebuild_requests, ps.rebuild_requests > ps.rebuild_done
    INTO v_rebuild_requests, v_rebuild
    FROM refproj.projection_state AS ps;

    IF v_rebuild OR cardinality(v_keys) > GREATEST(1000, (
        SELECT c.reltuples / 10 FROM pg_class AS c WHERE c.oid = 'refproj.run_facts'::regclass)) THEN
        DELETE FROM refproj.run_facts;
        INSERT INTO refproj.run_facts
        SELECT * FROM refproj.run_facts_live;
    ELSIF cardinality(v_keys) > 0 THEN
        DELETE FROM refproj.run_facts AS f
        USING unnest(v_keys) AS k
        WHERE f.connector_id = k.connector_id
          AND f.run_id = k.run_id;
        INSERT INTO refproj.run_facts
        SELECT * FROM refproj.run_facts_of(v_keys);
    END IF;

    REFRESH MATERIALIZED VIEW CONCURRENTLY refproj.connection_summary;
    REFRESH MATERIALIZED VIEW CONCURRENTLY refproj.connection_summary_json;

    -- Forget exactly the writes the refresh saw; later commits keep source_changed true.
    DELETE FROM refproj.source_writes
    WHERE pg_visible_in_snapshot(xid, v_snapshot);

    refresh_ms := extract(epoch FROM clock_timestamp() - v_started) * 1000;
    UPDATE refproj.projection_state
    SET as_of = v_started,
        refresh_ticket = v_started_ticket,
        last_refresh_ms = refresh_ms,
        refresh_count = projection_state.refresh_count + 1,
        rebuild_done = CASE WHEN v_rebuild THEN v_rebuild_requests ELSE projection_state.rebuild_done END;
    refreshed := true;
    as_of := v_started;
END
$$;
COMMENT ON FUNCTION refproj.refresh_connection_summary(boolean) IS
    'Refresh refproj.connection_summary without blocking readers. Returns once a refresh that started after the call has committed (read-your-writes); concurrent callers share refreshes (at most the running one plus one more). refreshed says whether this call ran it. With p_only_if_changed, returns at once when no source write is pending.';

CREATE FUNCTION refproj.projection_status(
    OUT as_of timestamptz, OUT source_changed boolean, OUT last_refresh_ms double precision,
    OUT refresh_count bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT
        ps.as_of,
        EXISTS (SELECT 1 FROM refproj.source_writes)
            OR EXISTS (SELECT 1 FROM refproj.dirty_runs)
            OR ps.rebuild_requests > ps.rebuild_done,
        ps.last_refresh_ms,
        ps.refresh_count
    FROM refproj.projection_state AS ps
$$;
COMMENT ON FUNCTION refproj.projection_status() IS
    'One row: as_of (when the stored evidence was computed), source_changed (a source table was written since), last_refresh_ms, refresh_count. Costs two index probes whatever the history size.';

-- ---------------------------------------------------------------------------------------------
-- Serving: overview, detail, resolution, live run evidence (DOMAIN.md section 6)
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION refproj.connection_summaries(
    p_at timestamptz DEFAULT now(), p_connector_id text DEFAULT NULL)
RETURNS TABLE (
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
    stream_count int,
    total_records bigint,
    retained_bytes jsonb,
    total_retained_bytes bigint,
    last_run jsonb,
    last_successful_run jsonb,
    failures_since_last_success int,
    max_staleness interval,
    freshness jsonb,
    health jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
-- plpgsql rather than SQL: the session keeps the plan instead of planning on every read.
AS $$
BEGIN
    RETURN QUERY
    SELECT
        s.connector_instance_id, s.connection_id, s.connector_id, s.display_name,
        s.connector_display_name, s.status, s.source_kind, s.created_at, s.revoked_at, s.streams,
        s.stream_count, s.total_records, s.retained_bytes, s.total_retained_bytes, s.last_run,
        s.last_successful_run, s.failures_since_last_success, s.max_staleness,
        refproj.freshness_object(read_time.freshness, s.last_run, s.last_successful_run, s.max_staleness),
        refproj.health_at(s.status, s.last_run, read_time.freshness)
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
    RETURN (
        SELECT '[' || COALESCE(
            string_agg(
                j.stored_fields
                    || CASE WHEN p_at <= j.fresh_until THEN j.ending_until ELSE j.ending_after END,
                ',' ORDER BY j.connector_id, j.created_at, j.connector_instance_id),
            '') || ']'
        FROM refproj.connection_summary_json AS j
        WHERE p_connector_id IS NULL
           OR j.connector_id = p_connector_id);
END
$$;
COMMENT ON FUNCTION refproj.connection_summaries_json(timestamptz, text) IS
    'refproj.connection_summaries(p_at, p_connector_id) as one JSON array text, in the same order with the same fields and values (timestamps in UTC), read from refproj.connection_summary_json: what the Python shim serves.';

-- Detail resolution: an exact visible connection id, else a connector id with exactly one
-- visible connection. An ambiguous connector id resolves to nothing, and says so.
CREATE FUNCTION refproj.resolve_connection(p_connection text)
RETURNS TABLE (connector_instance_id text, connector_id text, resolution text, candidates int)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH exact AS (
        SELECT v.connector_instance_id, v.connector_id
        FROM refproj.visible_connections AS v
        WHERE v.connector_instance_id = p_connection
    ),
    by_connector AS (
        SELECT min(v.connector_instance_id) AS connector_instance_id, count(*)::int AS candidates
        FROM refproj.visible_connections AS v
        WHERE v.connector_id = p_connection
    )
    SELECT e.connector_instance_id, e.connector_id, 'exact', 1
    FROM exact AS e
    UNION ALL
    SELECT
        CASE WHEN b.candidates = 1 THEN b.connector_instance_id END,
        CASE WHEN b.candidates >= 1 THEN p_connection END,
        CASE b.candidates WHEN 0 THEN 'not_found' WHEN 1 THEN 'connector' ELSE 'ambiguous' END,
        b.candidates
    FROM by_connector AS b
    WHERE NOT EXISTS (SELECT 1 FROM exact)
$$;
COMMENT ON FUNCTION refproj.resolve_connection(text) IS
    'How a detail request resolves: resolution exact | connector (connector id with one visible connection) | ambiguous | not_found, with the number of candidates.';

CREATE FUNCTION refproj.connection_run_evidence(p_connector_instance_id text)
RETURNS TABLE (last_run jsonb, last_successful_run jsonb, failures_since_last_success int)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
AS $$
DECLARE
    v_connector_id text;
BEGIN
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

CREATE FUNCTION refproj.connection_detail(
    p_connection text, p_run_limit int DEFAULT 20, p_at timestamptz DEFAULT now())
RETURNS TABLE (
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
    stream_count int,
    total_records bigint,
    retained_bytes jsonb,
    total_retained_bytes bigint,
    last_run jsonb,
    last_successful_run jsonb,
    failures_since_last_success int,
    max_staleness interval,
    freshness jsonb,
    health jsonb,
    recent_runs jsonb,
    streams_retained jsonb,
    unattributed_runs int)
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
    v_last_run jsonb;
    v_last_successful_run jsonb;
    v_failures int;
    v_recent_runs jsonb;
    v_unattributed int;
BEGIN
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

    IF NOT EXISTS (SELECT 1 FROM refproj.dirty_runs AS d WHERE d.connector_id = v_connector_id)
       AND (SELECT ps.rebuild_requests = ps.rebuild_done FROM refproj.projection_state AS ps) THEN
        -- Nothing of this connector changed since the last refresh: run_facts is current for it,
        -- and the stored rows answer with the same index probes as the overview.
        SELECT ev.last_run, ev.last_successful_run, ev.failures_since_last_success
        INTO v_last_run, v_last_successful_run, v_failures
        FROM refproj.stored_run_evidence(v_connector_id, v_tokens) AS ev;
        SELECT COALESCE(jsonb_agg(recent.brief || recent.details
                                  ORDER BY recent.last_at DESC, recent.last_event_seq DESC), '[]')
        INTO v_recent_runs
        FROM (
            SELECT newest.*
            FROM unnest(v_tokens) AS token (match_token)
            CROSS JOIN LATERAL (
                SELECT f.brief, f.details, f.last_at, f.last_event_seq
                FROM refproj.run_facts AS f
                WHERE f.connector_id = v_connector_id
                  AND f.match_token = token.match_token
                ORDER BY f.last_at DESC, f.last_event_seq DESC
                LIMIT GREATEST(p_run_limit, 0)
            ) AS newest
            ORDER BY newest.last_at DESC, newest.last_event_seq DESC
            LIMIT GREATEST(p_run_limit, 0)
        ) AS recent;
        SELECT count(*)::int
        INTO v_unattributed
        FROM refproj.run_facts AS f
        WHERE f.connector_id = v_connector_id
          AND f.match_token <> ALL (v_connector_tokens);
    ELSE
        -- Some runs changed: read the connector's current facts (changed runs recomputed).
        WITH facts AS MATERIALIZED (
            SELECT * FROM refproj.current_run_facts(v_connector_id)
        ),
        mine AS MATERIALIZED (
            SELECT f.* FROM facts AS f WHERE f.match_token = ANY (v_tokens)
        ),
        latest_success AS (
            SELECT m.brief, m.last_at
            FROM mine AS m
            WHERE m.status = 'succeeded'
            ORDER BY m.last_at DESC, m.last_event_seq DESC
            LIMIT 1
        )
        SELECT
            (SELECT m.brief FROM mine AS m ORDER BY m.last_at DESC, m.last_event_seq DESC LIMIT 1),
            (SELECT ls.brief FROM latest_success AS ls),
            (SELECT count(*)::int
             FROM mine AS m
             WHERE m.status IN ('failed', 'surface_failed', 'abandoned')
               AND m.last_at > COALESCE((SELECT ls.last_at FROM latest_success AS ls), '-infinity')),
            COALESCE((
                SELECT jsonb_agg(recent.brief || recent.details
                                 ORDER BY recent.last_at DESC, recent.last_event_seq DESC)
                FROM (
                    SELECT m.brief, m.details, m.last_at, m.last_event_seq
                    FROM mine AS m
                    ORDER BY m.last_at DESC, m.last_event_seq DESC
                    LIMIT GREATEST(p_run_limit, 0)
                ) AS recent), '[]'),
            (SELECT count(*)::int FROM facts AS f WHERE f.match_token <> ALL (v_connector_tokens))
        INTO v_last_run, v_last_successful_run, v_failures, v_recent_runs, v_unattributed;
    END IF;

    RETURN QUERY
    SELECT
        p.connector_instance_id, p.connection_id, p.connector_id, p.display_name,
        p.connector_display_name, p.status, p.source_kind, p.created_at, p.revoked_at, p.streams,
        p.stream_count, p.total_records, p.retained_bytes, p.total_retained_bytes,
        v_last_run, v_last_successful_run, v_failures, p.max_staleness,
        refproj.freshness_object(read_time.freshness, v_last_run, v_last_successful_run, p.max_staleness),
        refproj.health_at(p.status, v_last_run, read_time.freshness),
        v_recent_runs,
        COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                    'stream', s.stream,
                    'record_count', s.record_count,
                    'current_record_json_bytes', s.current_record_json_bytes,
                    'record_history_json_bytes', s.record_history_json_bytes,
                    'blob_bytes', s.blob_bytes,
                    'computed_at', s.computed_at)
                ORDER BY s.stream)
            FROM refproj.retained_streams AS s
            WHERE s.connector_instance_id = v_connection), '[]'::jsonb),
        v_unattributed
    FROM refproj.connection_profile AS p
    CROSS JOIN LATERAL (
        SELECT refproj.freshness_status(
                   refproj.fresh_until(v_last_run, v_last_successful_run, p.max_staleness), p_at) AS freshness
        OFFSET 0
    ) AS read_time
    WHERE p.connector_id = v_connector_id
      AND p.connector_instance_id = v_connection;
END
$$;
COMMENT ON FUNCTION refproj.connection_detail(text, int, timestamptz) IS
    'Live detail (as of the caller''s snapshot, whatever the last refresh) of one connection, resolved by exact connection id or by a connector id with exactly one visible connection (zero rows otherwise): every overview field plus recent_runs (up to p_run_limit latest runs, full summaries), streams_retained and unattributed_runs (the connector''s runs that match no connection).';

-- ---------------------------------------------------------------------------------------------
-- Least privilege
-- ---------------------------------------------------------------------------------------------

-- Nothing here is for PUBLIC. Trigger functions need no EXECUTE privilege to fire, so the
-- application's writers keep writing the source tables without any grant on this schema.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA refproj FROM PUBLIC;

-- What a console reader gets: read the overview, the detail and the status, and request a
-- refresh (refresh_connection_summary is SECURITY DEFINER because only the owner may refresh the
-- view and write the projection's state). SELECT is granted on the refproj relations those
-- functions read, never on a source table: views read the source tables with their owner's
-- rights. Run it as the projection's owner (or a superuser): SELECT refproj.grant_reader('role').
CREATE FUNCTION refproj.grant_reader(p_role text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_object text;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA refproj TO %I', p_role);
    FOREACH v_object IN ARRAY ARRAY[
        'refproj.connection_summary', 'refproj.connection_summary_json', 'refproj.projection_state', 'refproj.source_writes',
        'refproj.dirty_runs', 'refproj.run_facts', 'refproj.run_facts_live', 'refproj.connection_keys',
        'refproj.connection_profile', 'refproj.visible_connections', 'refproj.retained_streams',
        'refproj.connection_run_rollup']
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO %I', v_object, p_role);
    END LOOP;
    FOREACH v_object IN ARRAY ARRAY[
        'refproj.connection_summaries(timestamptz, text)',
        'refproj.connection_summaries_json(timestamptz, text)',
        'refproj.connection_detail(text, int, timestamptz)',
        'refproj.resolve_connection(text)',
        'refproj.connection_run_evidence(text)',
        'refproj.projection_status()',
        'refproj.refresh_connection_summary(boolean)',
        'refproj.current_run_facts(text)',
        'refproj.stored_run_evidence(text, text[])',
        'refproj.run_facts_of(refproj.run_key[])',
        'refproj.fresh_until(jsonb, jsonb, interval)',
        'refproj.freshness_status(timestamptz, timestamptz)',
        'refproj.freshness_object(text, jsonb, jsonb, interval)',
        'refproj.health_at(text, jsonb, text)',
        'refproj.jsonb_text(jsonb, text)',
        'refproj.run_brief(text, text, timestamptz, timestamptz, timestamptz, text, bigint, text)',
        'refproj.run_match_token(text, text)',
        'refproj.connection_match_tokens(text, text, boolean)']
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_object, p_role);
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION refproj.grant_reader(text) FROM PUBLIC;
COMMENT ON FUNCTION refproj.grant_reader(text) IS
    'Let p_role read the overview, detail and status and request refreshes, and nothing else (no source table, no write). Run as the projection''s owner.';
