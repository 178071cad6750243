-- ---------------------------------------------------------------------------------------------
-- The stored overview: each visible connection's profile and the evidence rules over the run
-- facts stored for it, as a materialized view refreshed by refproj.refresh_connection_summary().
-- ---------------------------------------------------------------------------------------------

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

-- The stored overview: each visible connection's profile and the evidence rules over its
-- stored run facts (refproj.stored_run_facts), refreshed by refproj.refresh_connection_summary().
-- A row is p.*, the evidence, max_staleness, as in refproj.connection_evidence and
-- refproj.connection_detail_parts. That join stays written in each: the evidence comes from a
-- different place in each, and it sits between the profile and max_staleness in the contract's
-- column order, so a shared view of profile and staleness would need its columns listed again.
CREATE MATERIALIZED VIEW refproj.connection_summary AS
SELECT p.*, evidence.*, staleness.max_staleness
FROM refproj.connection_profile AS p
JOIN refproj.connector_max_staleness AS staleness
    ON staleness.connector_id = p.connector_id
JOIN refproj.connection_keys AS k
    ON k.connector_instance_id = p.connector_instance_id
CROSS JOIN LATERAL refproj.run_evidence_of(refproj.newest_first(ARRAY(
    SELECT f
    FROM refproj.stored_run_facts(p.connector_id, k.match_tokens) AS f
))) AS evidence
WITH NO DATA;
CREATE UNIQUE INDEX connection_summary_connector_instance_id_idx
    ON refproj.connection_summary (connector_instance_id);
-- One connector's rows (connection_summaries(p_at, p_connector_id)). A hash index: a btree
-- entry of (connector_id, created_at, connector_instance_id) cannot hold two ids longer than
-- 2,704 bytes together, and one such connection would fail every refresh. The overview order
-- itself is a sort of the few rows read.
CREATE INDEX connection_summary_connector_idx
    ON refproj.connection_summary USING hash (connector_id);
COMMENT ON MATERIALIZED VIEW refproj.connection_summary IS
    'Stored evidence per visible connection (DOMAIN.md section 5), from refproj.run_facts. Never holds freshness or health: read it through refproj.connection_summaries(p_at). Refresh with refproj.refresh_connection_summary().';
