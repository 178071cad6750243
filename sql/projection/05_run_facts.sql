-- ---------------------------------------------------------------------------------------------
-- Run facts: one row per run, maintained (DOMAIN.md section 6: the overview's cost must not grow
-- with run history)
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

-- Created empty: the first refresh fills it (sql/projection/23_first_build.sql), outside the
-- migration's transaction, so installing on a long history never holds locks for minutes.
CREATE INDEX run_facts_run_idx
    ON refproj.run_facts (connector_id, run_id);
CREATE INDEX run_facts_latest_idx
    ON refproj.run_facts (connector_id, match_token, last_at DESC, last_event_seq DESC);
CREATE INDEX run_facts_latest_success_idx
    ON refproj.run_facts (connector_id, match_token, last_at DESC, last_event_seq DESC)
    WHERE status = 'succeeded';
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
