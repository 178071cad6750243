-- The source/run summary index (DOMAIN.md section 2). Built CONCURRENTLY so a live database keeps
-- accepting writes while it builds; the migration runs it outside a transaction.
CREATE INDEX CONCURRENTLY IF NOT EXISTS spine_events_source_run_summary_idx
    ON spine_events (source_kind, source_id, run_id, occurred_at DESC)
    WHERE run_id IS NOT NULL
