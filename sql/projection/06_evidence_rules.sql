-- ---------------------------------------------------------------------------------------------
-- The evidence rules (DOMAIN.md section 4), written once
--
-- A connection's last run, last successful run and failures since that success are decided by
-- refproj.run_evidence_of() from a set of its run facts, newest first by refproj.newest_first().
-- Who reads the evidence differs only in which run facts it hands over, as
-- run_evidence_of(newest_first(<which facts>)):
--   the stored overview   refproj.stored_run_facts(): run_facts rows, found by index probes
--                         (07_stored_overview.sql)
--   the live reference    refproj.connection_run_rollup: run_facts_live, every run
--                         (08_live_reference.sql)
--   the detail            refproj.connection_detail_parts(): stored_run_facts, or the connector's
--                         current_run_facts() (16_current_run_facts.sql, 20_detail.sql)
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
-- Written elsewhere because of these rules; a change to them changes these too:
--   refproj.newest_first (above): the order "latest" means, (last_at, last_event_seq) descending;
--   refproj.stored_run_facts (07_stored_overview.sql): a success is status 'succeeded', the
--     latest success is the first in that order, and no run ending before it is handed over;
--   run_facts_latest_idx and run_facts_latest_success_idx (05_run_facts.sql): that order, and
--     that success as their WHERE, so stored_run_facts reads by index;
--   refproj.fresh_until (09_read_time_state.sql): compares last_run with last_successful_run by
--     last_at (>=), with its own failed-like statuses (cancelled included) for freshness.
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
