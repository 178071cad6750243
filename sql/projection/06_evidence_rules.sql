-- ---------------------------------------------------------------------------------------------
-- The evidence rules (DOMAIN.md section 4), written once
--
-- A connection's last run, last successful run and failures since that success are decided by
-- refproj.run_evidence_of() from a set of its run facts, newest first by refproj.newest_first().
-- Who reads the evidence differs only in which run facts it hands over, as
-- run_evidence_of(newest_first(<which facts>)):
--   the stored overview   refproj.stored_run_facts(): run_facts rows, found by index probes
--   the live reference    refproj.connection_run_rollup: run_facts_live, every run
--   the detail            refproj.connection_detail(): stored, or the connector's current facts
-- ---------------------------------------------------------------------------------------------

CREATE TYPE refproj.run_evidence AS (
    last_run jsonb,
    last_successful_run jsonb,
    failures_since_last_success int);
COMMENT ON TYPE refproj.run_evidence IS
    'A connection''s run evidence: last_run, last_successful_run (run objects, NULL when none) and failures_since_last_success.';

-- "Latest", once: the run that ended last, ties broken by the later last event. A run handed over
-- twice (by two of a reader's probes) counts once. Plain SQL so that it inlines into its callers.
CREATE FUNCTION refproj.newest_first(p_runs refproj.run_facts[])
RETURNS refproj.run_facts[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY(
        SELECT DISTINCT ON (r.last_at, r.last_event_seq) r
        FROM unnest(p_runs) AS r
        ORDER BY r.last_at DESC, r.last_event_seq DESC)
$$;
COMMENT ON FUNCTION refproj.newest_first(refproj.run_facts[]) IS
    'The runs latest first (last_at descending, then last_event_seq descending), each once. Every "latest" of the projection is this order.';

-- The rules, over runs given newest first (refproj.newest_first): the latest run; the latest run
-- that succeeded; the runs that failed (failed, surface_failed, abandoned; not cancelled) and
-- ended after that success, or all of them when nothing succeeded. plpgsql: a walk over a
-- handful of runs costs less than a query over them.
CREATE FUNCTION refproj.run_evidence_of(p_newest_first refproj.run_facts[])
RETURNS refproj.run_evidence
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_run refproj.run_facts;
    v_evidence refproj.run_evidence := ROW(NULL, NULL, 0);
    v_failed_at timestamptz[] := '{}';
    v_at timestamptz;
    v_succeeded boolean := false;
    v_success_at timestamptz;
BEGIN
    -- Newest first: the first run is the latest, the first success the latest success, and no
    -- run older than that success changes the evidence.
    FOREACH v_run IN ARRAY p_newest_first LOOP
        IF v_evidence.last_run IS NULL THEN
            v_evidence.last_run := v_run.brief;
        END IF;
        IF v_run.status = 'succeeded' THEN
            v_evidence.last_successful_run := v_run.brief;
            v_succeeded := true;
            v_success_at := v_run.last_at;
            EXIT;
        END IF;
        IF v_run.status IN ('failed', 'surface_failed', 'abandoned') THEN
            v_failed_at := v_failed_at || v_run.last_at;
        END IF;
    END LOOP;
    -- "Since" is strict: a failure ending at the very moment of the success is not after it.
    -- With no success every failure counts, one ending at -infinity too (no sentinel time).
    FOREACH v_at IN ARRAY v_failed_at LOOP
        IF NOT v_succeeded OR v_at > v_success_at THEN
            v_evidence.failures_since_last_success := v_evidence.failures_since_last_success + 1;
        END IF;
    END LOOP;
    RETURN v_evidence;
END
$$;
COMMENT ON FUNCTION refproj.run_evidence_of(refproj.run_facts[]) IS
    'The evidence rules over a connection''s run facts given newest first (refproj.newest_first): last_run, last_successful_run, failures_since_last_success (failed, surface_failed or abandoned runs ending after the last success). The only definition of these rules.';

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

-- Which stored run facts the rules can look at for a connection accepting p_tokens: its runs
-- that ended at or after its latest success (all of them when nothing succeeded), since older
-- runs cannot change its evidence, plus the p_latest latest of each token for the detail's recent
-- runs. Index probes and range scans on run_facts_latest_success_idx and run_facts_latest_idx,
-- so the cost follows the runs since the last success, not the history. A set of rows in plain
-- SQL without a pinned search_path, so PostgreSQL inlines it into its callers: the stored
-- overview makes no function call per connection for it (a sixth less time computing the view at
-- M) and the detail's plan, which the session keeps, includes it (no planning per detail).
CREATE FUNCTION refproj.stored_run_facts(p_connector_id text, p_tokens text[], p_latest int DEFAULT 0)
RETURNS SETOF refproj.run_facts
LANGUAGE sql STABLE
AS $$
    WITH latest_success AS (
        SELECT COALESCE(max(success.last_at), '-infinity') AS last_at
        FROM unnest(p_tokens) AS token (match_token)
        CROSS JOIN LATERAL (
            SELECT f.last_at
            FROM refproj.run_facts AS f
            WHERE f.connector_id = p_connector_id
              AND f.match_token = token.match_token
              AND f.status = 'succeeded'
            ORDER BY f.last_at DESC, f.last_event_seq DESC
            LIMIT 1
        ) AS success
    )
    SELECT f.*
    FROM unnest(p_tokens) AS token (match_token)
    JOIN refproj.run_facts AS f
        ON f.connector_id = p_connector_id
       AND f.match_token = token.match_token
    WHERE f.last_at >= (SELECT ls.last_at FROM latest_success AS ls)
    UNION ALL
    SELECT latest.*
    FROM unnest(p_tokens) AS token (match_token)
    CROSS JOIN LATERAL (
        SELECT f.*
        FROM refproj.run_facts AS f
        WHERE p_latest > 0
          AND f.connector_id = p_connector_id
          AND f.match_token = token.match_token
        ORDER BY f.last_at DESC, f.last_event_seq DESC
        LIMIT p_latest
    ) AS latest
$$;
COMMENT ON FUNCTION refproj.stored_run_facts(text, text[], int) IS
    'The refproj.run_facts rows the evidence rules can look at for a connection accepting p_tokens (its runs since its latest success) and the p_latest latest runs of each token, by index.';

-- The live reference: every run fact computed from the source tables, attributed by the tokens
-- connections accept, the rules applied per connection.
CREATE VIEW refproj.connection_run_rollup AS
SELECT mine.connector_id, mine.connector_instance_id, evidence.*
FROM (
    SELECT k.connector_id, k.connector_instance_id, array_agg(ROW(f.*)::refproj.run_facts) AS runs
    FROM refproj.connection_keys AS k
    CROSS JOIN LATERAL unnest(refproj.connection_match_tokens(
        k.connector_instance_id, k.expected_profile_key, k.sole_active)) AS token (match_token)
    JOIN refproj.run_facts_live AS f
        ON f.connector_id = k.connector_id
       AND f.match_token = token.match_token
    GROUP BY k.connector_id, k.connector_instance_id
) AS mine
CROSS JOIN LATERAL refproj.run_evidence_of(refproj.newest_first(mine.runs)) AS evidence;
COMMENT ON VIEW refproj.connection_run_rollup IS
    'Per connection with at least one run: last_run, last_successful_run, failures_since_last_success (DOMAIN.md section 4), the rules of refproj.run_evidence_of over refproj.run_facts_live. Computed live.';

-- The stored evidence of every visible connection, computed live from the source tables: the
-- reference the stored overview (refproj.connection_summary) must equal.
CREATE VIEW refproj.connection_evidence AS
SELECT p.*, evidence.*, staleness.max_staleness
FROM refproj.connection_profile AS p
JOIN refproj.connector_max_staleness AS staleness
    ON staleness.connector_id = p.connector_id
LEFT JOIN refproj.connection_run_rollup AS rollup
    ON rollup.connector_id = p.connector_id
   AND rollup.connector_instance_id = p.connector_instance_id
-- A connection without runs has the evidence of no runs.
CROSS JOIN LATERAL (
    SELECT rollup.last_run, rollup.last_successful_run,
           COALESCE(rollup.failures_since_last_success, 0) AS failures_since_last_success
) AS evidence;
COMMENT ON VIEW refproj.connection_evidence IS
    'The stored evidence of every visible connection (DOMAIN.md section 5), computed live from the source tables (refproj.connection_summary holds the same, maintained).';
