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

