"""Every column, index and function of refproj explains itself in the catalog (\\d+, \\di+, \\df+)."""

from __future__ import annotations

import psycopg


def test_every_column_and_index_is_described(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        undescribed_columns = conn.execute(
            """
            SELECT c.oid::regclass::text || '.' || a.attname
            FROM pg_class AS c
            JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'p', 'v', 'm')
              AND (c.relnamespace = 'refproj'::regnamespace
                   OR c.oid IN ('connectors'::regclass, 'connector_instances'::regclass,
                                'spine_events'::regclass, 'controller_active_runs'::regclass,
                                'retained_size_connection'::regclass, 'retained_size_stream'::regclass))
              AND col_description(c.oid, a.attnum) IS NULL
            ORDER BY 1
            """
        ).fetchall()
        undescribed_objects = conn.execute(
            """
            SELECT c.oid::regclass::text
            FROM pg_class AS c
            WHERE (c.relnamespace = 'refproj'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'i', 'S')
                   OR c.relname = 'spine_events_source_run_summary_idx')
              AND obj_description(c.oid, 'pg_class') IS NULL
            UNION ALL
            SELECT p.oid::regprocedure::text
            FROM pg_proc AS p
            WHERE p.pronamespace = 'refproj'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
            ORDER BY 1
            """
        ).fetchall()
    assert undescribed_columns == []
    assert undescribed_objects == []
