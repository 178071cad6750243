-- ---------------------------------------------------------------------------------------------
-- Runs (DOMAIN.md section 3)
-- ---------------------------------------------------------------------------------------------

-- Every run event with the identity it claims and the typed facts the summary needs.
-- Columns come out as the types refproj declares (text, bigint) whatever narrower type an adopted
-- table has (sql/0001_source_tables.sql accepts varchar(n), integer, smallint): on a table of the
-- declared types a cast to it is no cast at all, so plans do not change. The views that read the
-- source tables (here and in 03_attribution.sql, 04_connection_profile.sql) do this; nothing
-- above them sees an application's types.
-- The WHERE clause matches the source/run summary index, so a filter on connector_id becomes
-- an index range scan. That index cannot hold rows whose ids exceed 2,000 bytes together (see
-- sql/0002_source_run_summary_index.sql), and neither could refproj's own indexes: such a row
-- is not a run event (README, "Decisions").
CREATE VIEW refproj.run_events AS
SELECT
    e.event_seq::bigint AS event_seq,
    e.source_id::text AS connector_id,
    e.run_id::text AS run_id,
    e.event_type::text AS event_type,
    e.occurred_at,
    e.status::text AS status,
    e.data,
    COALESCE(
        NULLIF(e.connector_instance_id::text, ''),
        refproj.jsonb_text(e.data, 'connector_instance_id'),
        refproj.jsonb_text(e.data, 'connection_id')) AS identity,
    e.event_type IN ('run.completed', 'run.failed', 'run.cancelled',
                     'run.browser_surface_failed', 'run.abandoned') AS is_terminal,
    e.status NOT IN ('', 'unknown') AS has_status,
    starts_with(e.event_type, 'run.browser_surface_')
        AND jsonb_typeof(e.data -> 'browser_surface') = 'object' AS is_browser_surface,
    payload.reason,
    e.status IN ('failed', 'rejected') AND payload.reason IS NOT NULL AS is_failure
FROM spine_events AS e
CROSS JOIN LATERAL (
    SELECT COALESCE(refproj.jsonb_text(e.data, 'reason'),
                    refproj.jsonb_text(e.data, 'failure_reason')) AS reason) AS payload
WHERE e.run_id IS NOT NULL
  AND octet_length(e.source_kind) + octet_length(e.source_id) + octet_length(e.run_id) <= 2000
  AND e.source_kind = 'connector'
  AND e.source_id IS NOT NULL;
COMMENT ON VIEW refproj.run_events IS
    'Run events (source_kind = connector, run_id set, ids within 2,000 bytes together) with their claimed identity: connector_instance_id column, else data.connector_instance_id, else data.connection_id.';

-- One event of a run as a run summary keeps it whole: the newest terminal event, the newest
-- browser-surface event. Its event_seq comes first, so max() over an array of one of these picks
-- the newest event whole in the same pass that counts the run's events (issue 10). Every run
-- has a terminal event once it ended, so that pick cannot be deferred; the surface pick is rare.
CREATE TYPE refproj.run_event_pick AS (event_seq bigint, status text, reason text, data jsonb);
COMMENT ON TYPE refproj.run_event_pick IS
    'An event of a run as refproj.run_summaries picks it: event_seq first, so arrays of these compare by event_seq.';

-- A run id's events folded into one row (refproj.run_id_folds), or into one row per claimed
-- identity, the identity-less events together (refproj.identity_folds): two views from one
-- text, so how events fold is written once. Views, not one function taking the grain: a view
-- reads run_events with its owner's rights, while an inlined function would check them against
-- the console's reader, who may not read events. Each is a plain hash aggregate: parallel over
-- the whole history, an index range for one run id.
-- The terminal and surface events are carried whole by max(); of the newest event with a
-- status and the first failure only the event_seq is kept (building a pick for every event with
-- a status was a fifth of the first build): the few runs whose outcome needs them read them
-- back (picked_later in refproj.run_summaries).
DO $run_event_folds$
DECLARE
    -- %1$s: what a fold is keyed by besides connector_id and run_id.
    v_folds CONSTANT text := $folds$
SELECT
    re.connector_id,
    re.run_id,
    %1$s AS identity,
    min(re.identity) AS least_identity,
    max(re.identity) AS greatest_identity,
    min(re.occurred_at) AS started_at,
    max(re.occurred_at) AS last_at,
    count(*) AS event_count,
    max(re.event_seq) AS last_event_seq,
    (max(ARRAY[ROW(re.event_seq, re.status, re.reason, re.data)::refproj.run_event_pick])
        FILTER (WHERE re.is_terminal AND re.has_status))[1] AS terminal,
    max(re.event_seq) FILTER (WHERE re.has_status) AS newest_status_seq,
    (max(ARRAY[ROW(re.event_seq, NULL, NULL, re.data -> 'browser_surface')::refproj.run_event_pick])
        FILTER (WHERE re.is_browser_surface))[1] AS surface,
    min(re.event_seq) FILTER (WHERE re.is_failure) AS first_failure_seq,
    bool_or(re.event_type = 'run.started') AS has_started
FROM refproj.run_events AS re
GROUP BY re.connector_id, re.run_id, %1$s
$folds$;
BEGIN
    EXECUTE 'CREATE VIEW refproj.run_id_folds AS' || format(v_folds, 'NULL::text');
    EXECUTE 'CREATE VIEW refproj.identity_folds AS' || format(v_folds, 're.identity');
END
$run_event_folds$;
COMMENT ON VIEW refproj.run_id_folds IS
    'The run events of each (connector_id, run_id) folded into one row (identity NULL): their identities'' least and greatest, first and last occurred_at, count, highest event_seq, the newest terminal and browser-surface events whole, the event_seq of the newest event with a status and of the first failure, and whether one was run.started.';
COMMENT ON VIEW refproj.identity_folds IS
    'refproj.run_id_folds with one row per (connector_id, run_id, identity): the events claiming each identity, and those claiming none (identity NULL).';

-- One row per run: (connector_id, run_id, identity). A run id whose events claim at most one
-- identity is one run: its identity-less events join that identity, or stand alone as a legacy
-- run when there is none. A run id claiming several identities (rare) is one run per identity,
-- folded again from that run id's events (identity_folds), and its identity-less events are
-- ignored. Every step keeps connector_id and run_id in its grouping, so a key filter is pushed
-- down to the index (refproj.run_facts_of), and the whole history is one pass over spine_events.
CREATE VIEW refproj.run_summaries AS
WITH runs AS NOT MATERIALIZED (
    SELECT g.connector_id, g.run_id, r.*
    FROM refproj.run_id_folds AS g
    CROSS JOIN LATERAL (
        SELECT
            g.least_identity AS connector_instance_id,
            true AS takes_identityless,
            g.started_at, g.last_at, g.event_count, g.last_event_seq, g.terminal,
            g.newest_status_seq, g.surface, g.first_failure_seq, g.has_started
        WHERE g.least_identity IS NOT DISTINCT FROM g.greatest_identity
        UNION ALL
        SELECT
            f.identity,
            false,
            f.started_at, f.last_at, f.event_count, f.last_event_seq, f.terminal,
            f.newest_status_seq, f.surface, f.first_failure_seq, f.has_started
        FROM refproj.identity_folds AS f
        WHERE g.least_identity <> g.greatest_identity
          AND f.connector_id = g.connector_id
          AND f.run_id = g.run_id
          AND f.identity IS NOT NULL
    ) AS r
),
-- The run's events at those two event_seq, only when the outcome can need them: a run with no
-- terminal event and no run.started takes its newest status; a run ending in neither success
-- nor progress whose terminal event gives no reason may take the first failure's. The gate
-- refers to the run alone, so PostgreSQL checks it before reading anything. Compared as the
-- picks were: the highest status, the lowest reason, should two of the run's events share an
-- event_seq (possible on an adopted or partitioned table without a unique event_seq).
picked_later AS NOT MATERIALIZED (
    SELECT r.*, later.newest_status, later.first_failure_reason
    FROM runs AS r
    CROSS JOIN LATERAL (
        SELECT
            max(e.status) FILTER (WHERE e.event_seq = r.newest_status_seq AND e.has_status)
                AS newest_status,
            min(e.reason) FILTER (WHERE e.event_seq = r.first_failure_seq AND e.is_failure)
                AS first_failure_reason
        FROM refproj.run_events AS e
        WHERE (((r.terminal).event_seq IS NULL AND NOT r.has_started)
               OR ((r.terminal).reason IS NULL AND r.first_failure_seq IS NOT NULL
                   AND (r.terminal).status NOT IN ('succeeded', 'in_progress')))
          AND e.connector_id = r.connector_id
          AND e.run_id = r.run_id
          AND e.event_seq IN (r.newest_status_seq, r.first_failure_seq)
          AND (e.identity = r.connector_instance_id OR (e.identity IS NULL AND r.takes_identityless))
    ) AS later
),
run_outcomes AS NOT MATERIALIZED (
    SELECT
        r.connector_id,
        r.run_id,
        r.connector_instance_id,
        r.started_at,
        r.last_at,
        r.event_count,
        r.last_event_seq,
        CASE
            WHEN (r.terminal).event_seq IS NOT NULL THEN (r.terminal).status
            WHEN r.has_started AND active.run_id IS NOT NULL THEN 'in_progress'
            WHEN r.has_started THEN 'failed'
            WHEN r.newest_status IS NOT NULL THEN r.newest_status
            ELSE 'unknown'
        END AS status,
        (r.terminal).event_seq IS NULL AND r.has_started AND active.run_id IS NULL AS orphaned,
        (r.terminal).reason AS terminal_reason,
        r.first_failure_reason,
        (r.terminal).data AS terminal_data,
        refproj.jsonb_text((r.surface).data, 'browser_surface_profile_key')
            AS browser_surface_profile_key,
        refproj.jsonb_text((r.surface).data, 'browser_surface_status')
            AS browser_surface_status,
        refproj.jsonb_text((r.surface).data, 'browser_surface_wait_reason')
            AS browser_surface_wait_reason
    FROM picked_later AS r
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
    -- Copied into the detail as they are, so only when every client can parse them.
    CASE WHEN jsonb_typeof(o.terminal_data -> 'known_gaps') = 'array'
              AND refproj.jsonb_servable(o.terminal_data -> 'known_gaps')
         THEN o.terminal_data -> 'known_gaps' ELSE '[]'::jsonb END AS known_gaps,
    CASE WHEN jsonb_typeof(o.terminal_data -> 'collection_facts') = 'object'
              AND refproj.jsonb_servable(o.terminal_data -> 'collection_facts')
         THEN o.terminal_data -> 'collection_facts' END AS collection_facts,
    CASE WHEN jsonb_typeof(o.terminal_data -> 'records_emitted') = 'number'
              AND (o.terminal_data ->> 'records_emitted')::numeric BETWEEN 0 AND 9000000000000000000
              AND (o.terminal_data ->> 'records_emitted')::numeric
                  = trunc((o.terminal_data ->> 'records_emitted')::numeric)
         THEN (o.terminal_data ->> 'records_emitted')::numeric::bigint END AS records_emitted
FROM run_outcomes AS o;
COMMENT ON VIEW refproj.run_summaries IS
    'One row per run (connector_id, run_id, connector_instance_id = the run''s identity or NULL) with status, timing, failure reason and terminal payload facts (DOMAIN.md section 3). Computed live.';

