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

-- One row per run: (connector_id, run_id, identity). Events are first folded per claimed
-- identity; an identity-less fold joins the run id's single identity, stands alone as a legacy
-- run when the run id has no identity at all, and is ignored when the run id has several.
-- Every step keeps connector_id and run_id in its grouping/partitioning, so a key filter is
-- pushed down to the index (refproj.run_facts_of), and the whole history is one pass over
-- spine_events: one hash aggregate (parallel), with the terminal and surface events carried by
-- max(). The newest status and the first failure's reason are needed only by a run that has
-- no terminal event or whose terminal event gives no reason: the pass keeps their event_seq
-- only (building a pick for every event with a status was a fifth of the first build), and
-- such a run reads those events back through an index (picked_later).
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
        max(ARRAY[ROW(re.event_seq, re.status, re.reason, re.data)::refproj.run_event_pick])
            FILTER (WHERE re.is_terminal AND re.has_status) AS terminal,
        max(re.event_seq) FILTER (WHERE re.has_status) AS newest_status_seq,
        max(ARRAY[ROW(re.event_seq, NULL, NULL, re.data -> 'browser_surface')::refproj.run_event_pick])
            FILTER (WHERE re.is_browser_surface) AS surface,
        min(re.event_seq) FILTER (WHERE re.is_failure) AS first_failure_seq,
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
        -- The same on every fold of the run id: whether its identity-less events are this run's.
        max(af.identities) <= 1 AS takes_identityless,
        min(af.started_at) AS started_at,
        max(af.last_at) AS last_at,
        sum(af.event_count)::bigint AS event_count,
        max(af.last_event_seq) AS last_event_seq,
        (max(af.terminal))[1] AS terminal,
        max(af.newest_status_seq) AS newest_status_seq,
        (max(af.surface))[1] AS surface,
        min(af.first_failure_seq) AS first_failure_seq,
        bool_or(af.has_started) AS has_started
    FROM assigned_folds AS af
    GROUP BY af.connector_id, af.run_id, af.run_identity
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

