-- ---------------------------------------------------------------------------------------------
-- Run marks: whether run_facts still describes a connector, without trusting a trigger
--
-- run_facts is kept current by the statement triggers. A write they never saw (a DBA's DISABLE
-- TRIGGER, a data-only restore with triggers disabled) leaves it describing runs as they were,
-- and no refresh will notice. The detail is live, so it must not depend on a trigger having
-- fired: every refresh also stores, per run it computed, cheap marks of the source rows it read
-- (how many run events, a fingerprint of their run ids, how many active-run rows).
-- The detail sums the marks of a connector's runs and compares them with the same marks read
-- from the source tables now: the events through the summary index alone (an index-only scan of
-- the connector's range, no heap), the active runs from their small table. When they differ,
-- something changed that no trigger recorded, and the detail computes that connector's runs
-- live. What the marks cannot see is an UPDATE that keeps an event's run (its time, type, status
-- or payload changed) while triggers are disabled: refproj verify finds that. Marks of times
-- would catch more, but summing numeric times cost 5x the scan itself (measured at S).
-- ---------------------------------------------------------------------------------------------

-- The source rows the marks count: the run events' keys (refproj.run_events' filter, so the
-- summary index answers alone) and the active-run rows.
CREATE VIEW refproj.run_event_keys AS
SELECT e.source_id AS connector_id, e.run_id, e.occurred_at
FROM spine_events AS e
WHERE e.run_id IS NOT NULL
  AND octet_length(e.source_kind) + octet_length(e.source_id) + octet_length(e.run_id) <= 2000
  AND e.source_kind = 'connector'
  AND e.source_id IS NOT NULL;
COMMENT ON VIEW refproj.run_event_keys IS
    'The (connector_id, run_id, occurred_at) of every run event, read from the source/run summary index alone: what run marks count.';
COMMENT ON COLUMN refproj.run_event_keys.connector_id IS 'The run''s connector (spine_events.source_id).';
COMMENT ON COLUMN refproj.run_event_keys.run_id IS 'The run id the event carries.';
COMMENT ON COLUMN refproj.run_event_keys.occurred_at IS 'spine_events.occurred_at.';

-- The same 2,000-byte bound as a run event's ids (source_kind 'connector' is 9 bytes): a row
-- beyond it names no run that can have events, and run_marks' index could not hold its key.
CREATE VIEW refproj.active_run_keys AS
SELECT a.connector_id, a.run_id
FROM controller_active_runs AS a
WHERE a.connector_id IS NOT NULL
  AND a.run_id IS NOT NULL
  AND octet_length('connector') + octet_length(a.connector_id) + octet_length(a.run_id) <= 2000;
COMMENT ON VIEW refproj.active_run_keys IS
    'The (connector_id, run_id) of every controller_active_runs row that can name a run with events (ids within 2,000 bytes together, as run events): what run marks count as active rows.';
COMMENT ON COLUMN refproj.active_run_keys.connector_id IS 'controller_active_runs.connector_id.';
COMMENT ON COLUMN refproj.active_run_keys.run_id IS 'controller_active_runs.run_id.';

CREATE TABLE refproj.run_marks (
    connector_id text NOT NULL,
    run_id text NOT NULL,
    events bigint NOT NULL,
    fingerprint numeric NOT NULL,
    active_rows bigint NOT NULL
);
CREATE INDEX run_marks_run_idx ON refproj.run_marks (connector_id, run_id);
COMMENT ON TABLE refproj.run_marks IS
    'Per run id the refresh computed, marks of the source rows it read: run events, their fingerprint, active-run rows. Summed per connector and compared with the source tables by refproj.run_facts_unseen_change().';
COMMENT ON COLUMN refproj.run_marks.connector_id IS 'The run''s connector.';
COMMENT ON COLUMN refproj.run_marks.run_id IS 'The run id.';
COMMENT ON COLUMN refproj.run_marks.events IS 'How many run events carried this run id (every identity).';
COMMENT ON COLUMN refproj.run_marks.fingerprint IS 'Sum of hashtext(run_id) over those events: with events, it changes when events move between runs.';
COMMENT ON COLUMN refproj.run_marks.active_rows IS 'How many controller_active_runs rows named this run.';
COMMENT ON INDEX refproj.run_marks_run_idx IS 'Finds a run''s marks (replaced by each refresh) and a connector''s (summed by the detail).';

-- The marks of every run, live: what a rebuild stores.
CREATE VIEW refproj.run_marks_live AS
SELECT
    COALESCE(e.connector_id, a.connector_id) AS connector_id,
    COALESCE(e.run_id, a.run_id) AS run_id,
    COALESCE(e.events, 0) AS events,
    COALESCE(e.fingerprint, 0) AS fingerprint,
    COALESCE(a.active_rows, 0) AS active_rows
FROM (
    SELECT k.connector_id, k.run_id, count(*) AS events,
           sum(hashtext(k.run_id)) AS fingerprint
    FROM refproj.run_event_keys AS k
    GROUP BY k.connector_id, k.run_id
) AS e
FULL JOIN (
    SELECT k.connector_id, k.run_id, count(*) AS active_rows
    FROM refproj.active_run_keys AS k
    GROUP BY k.connector_id, k.run_id
) AS a
    ON a.connector_id = e.connector_id
   AND a.run_id = e.run_id;
COMMENT ON VIEW refproj.run_marks_live IS
    'What refproj.run_marks holds for every run, computed from the source tables.';
COMMENT ON COLUMN refproj.run_marks_live.connector_id IS 'The run''s connector.';
COMMENT ON COLUMN refproj.run_marks_live.run_id IS 'The run id.';
COMMENT ON COLUMN refproj.run_marks_live.events IS 'How many run events carry this run id now.';
COMMENT ON COLUMN refproj.run_marks_live.fingerprint IS 'Sum of hashtext(run_id) over them.';
COMMENT ON COLUMN refproj.run_marks_live.active_rows IS 'How many controller_active_runs rows name this run now.';

-- The marks of the given runs, live (a refresh stores them for the runs it recomputed).
CREATE FUNCTION refproj.run_marks_of(p_keys refproj.run_key[])
RETURNS SETOF refproj.run_marks
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.connector_id, k.run_id, e.events, e.fingerprint, a.active_rows
    FROM unnest(p_keys) AS k
    CROSS JOIN LATERAL (
        SELECT count(*) AS events, COALESCE(sum(hashtext(r.run_id)), 0) AS fingerprint
        FROM refproj.run_event_keys AS r
        WHERE r.connector_id = k.connector_id
          AND r.run_id = k.run_id
    ) AS e
    CROSS JOIN LATERAL (
        SELECT count(*) AS active_rows
        FROM refproj.active_run_keys AS r
        WHERE r.connector_id = k.connector_id
          AND r.run_id = k.run_id
    ) AS a
    WHERE e.events > 0 OR a.active_rows > 0
$$;
COMMENT ON FUNCTION refproj.run_marks_of(refproj.run_key[]) IS
    'refproj.run_marks_live rows of the given (connector_id, run_id) keys, each read through the source/run summary index.';

-- Whether a connector's runs, apart from p_except (run ids the triggers did record), changed in
-- a way no trigger recorded: their marks now differ from those the refreshes stored.
CREATE FUNCTION refproj.run_facts_unseen_change(p_connector_id text, p_except text[] DEFAULT '{}')
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
-- A detail's check: starting parallel workers costs more than the scan of one connector.
SET max_parallel_workers_per_gather = 0
AS $$
    SELECT (
        SELECT ROW(count(*)::numeric, COALESCE(sum(hashtext(k.run_id)), 0)::numeric)
        FROM refproj.run_event_keys AS k
        WHERE k.connector_id = p_connector_id
          AND k.run_id <> ALL (p_except)
    ) IS DISTINCT FROM (
        SELECT ROW(COALESCE(sum(m.events), 0)::numeric, COALESCE(sum(m.fingerprint), 0))
        FROM refproj.run_marks AS m
        WHERE m.connector_id = p_connector_id
          AND m.run_id <> ALL (p_except)
    )
    OR (
        SELECT count(*)
        FROM refproj.active_run_keys AS k
        WHERE k.connector_id = p_connector_id
          AND k.run_id <> ALL (p_except)
    ) IS DISTINCT FROM (
        SELECT COALESCE(sum(m.active_rows), 0)
        FROM refproj.run_marks AS m
        WHERE m.connector_id = p_connector_id
          AND m.run_id <> ALL (p_except)
    )
$$;
COMMENT ON FUNCTION refproj.run_facts_unseen_change(text, text[]) IS
    'true when the run events or active runs of a connector (apart from the run ids p_except) differ from the marks the refreshes stored: a change no trigger recorded, so its stored run facts cannot be trusted. An index-only scan of the connector''s summary index range.';
