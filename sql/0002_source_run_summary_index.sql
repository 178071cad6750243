-- The source/run summary index (DOMAIN.md section 2). Built CONCURRENTLY so a live database keeps
-- accepting writes while it builds; the migration runs it outside a transaction.
--
-- A btree entry must fit in a third of a page (2,704 bytes): with the ids of a row together
-- longer than that, the application's own INSERT would fail because of this index. Rows whose
-- source_kind, source_id and run_id exceed 2,000 bytes together are therefore left out of it
-- (refproj.run_events leaves them out the same way, so every plan can use the index).
CREATE INDEX CONCURRENTLY IF NOT EXISTS spine_events_source_run_summary_idx
    ON spine_events (source_kind, source_id, run_id, occurred_at DESC)
    WHERE run_id IS NOT NULL
      AND octet_length(source_kind) + octet_length(source_id) + octet_length(run_id) <= 2000
