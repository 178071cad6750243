-- ---------------------------------------------------------------------------------------------
-- The live reference: the evidence rules over every run, computed from the source tables. What
-- the stored overview must equal (refproj.verify_projection) and what the detail reads live.
-- ---------------------------------------------------------------------------------------------

-- The live reference: every run fact computed from the source tables, attributed by the tokens
-- connections accept, the rules applied per connection.
CREATE VIEW refproj.connection_run_rollup AS
SELECT mine.connector_id, mine.connector_instance_id, evidence.*
FROM (
    SELECT k.connector_id, k.connector_instance_id, array_agg(ROW(f.*)::refproj.run_facts) AS runs
    FROM refproj.connection_keys AS k
    CROSS JOIN LATERAL unnest(k.match_tokens) AS token (match_token)
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
