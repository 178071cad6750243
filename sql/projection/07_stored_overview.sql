-- The stored overview: each visible connection's profile and the evidence rules over its
-- stored run facts (refproj.stored_run_facts), refreshed by refproj.refresh_connection_summary().
CREATE MATERIALIZED VIEW refproj.connection_summary AS
SELECT p.*, evidence.*, staleness.max_staleness
FROM refproj.connection_profile AS p
JOIN refproj.connector_max_staleness AS staleness
    ON staleness.connector_id = p.connector_id
JOIN refproj.connection_keys AS k
    ON k.connector_instance_id = p.connector_instance_id
CROSS JOIN LATERAL refproj.run_evidence_of(refproj.newest_first(ARRAY(
    SELECT f
    FROM refproj.stored_run_facts(
        p.connector_id,
        refproj.connection_match_tokens(k.connector_instance_id, k.expected_profile_key, k.sole_active)) AS f
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

