"""The baselines the overview read is compared with: a raw fetch of the stored rows, a live
set-based query over the source tables, and the naive N+1 reads of the old system.

They use only public names: the SQL objects of CONTRACT.md (plus the ``connection_evidence`` view
for the live baseline) and the source tables.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from refproj_bench.config import Json

RAW_FETCH = "SELECT * FROM refproj.connection_summary"
# A diagnostic between the two: the overview function list() wraps, fetched through psycopg.
SUMMARIES_FETCH = "SELECT * FROM refproj.connection_summaries()"

# The overview computed live from the source tables in one set-based statement: the evidence view
# the materialized view stores, plus read-time freshness and health (the rules of DOMAIN.md
# section 5, written out here so the baseline depends on no internal helper), in overview order.
LIVE_QUERY = """
SELECT
    e.*,
    jsonb_build_object(
        'status', read_time.freshness,
        'captured_at', e.last_successful_run -> 'last_at',
        'last_attempted_at', e.last_run -> 'last_at',
        'max_staleness_seconds', extract(epoch FROM e.max_staleness)) AS freshness,
    CASE
        WHEN e.status = 'revoked' THEN jsonb_build_object('state', 'revoked', 'reason', 'connection_revoked')
        WHEN e.status = 'paused' THEN jsonb_build_object('state', 'paused', 'reason', 'connection_paused')
        WHEN e.status = 'draft' THEN jsonb_build_object('state', 'setup', 'reason', 'connection_draft')
        WHEN e.last_run ->> 'status' = 'in_progress'
            THEN jsonb_build_object('state', 'running', 'reason', 'run_in_progress')
        WHEN e.last_run IS NULL THEN jsonb_build_object('state', 'idle', 'reason', 'never_run')
        WHEN e.last_run ->> 'status' IN ('failed', 'surface_failed', 'cancelled', 'abandoned')
            THEN jsonb_build_object(
                'state', 'failing',
                'reason', COALESCE(e.last_run ->> 'failure_reason', e.last_run ->> 'status'))
        WHEN read_time.freshness = 'stale'
            THEN jsonb_build_object('state', 'stale', 'reason', 'past_max_staleness')
        WHEN read_time.freshness = 'current'
            THEN jsonb_build_object('state', 'healthy', 'reason', NULL)
        ELSE jsonb_build_object('state', 'unknown', 'reason', 'no_successful_run')
    END AS health
FROM refproj.connection_evidence AS e
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN e.last_run ->> 'status' IN ('failed', 'surface_failed', 'cancelled', 'abandoned')
             AND (e.last_successful_run IS NULL
                  OR (e.last_run ->> 'last_at')::timestamptz
                     >= (e.last_successful_run ->> 'last_at')::timestamptz)
            THEN 'stale'
        WHEN e.last_successful_run IS NOT NULL
            THEN CASE WHEN now() - (e.last_successful_run ->> 'last_at')::timestamptz <= e.max_staleness
                      THEN 'current' ELSE 'stale' END
        ELSE 'unknown'
    END AS freshness
) AS read_time
ORDER BY e.connector_id, e.created_at, e.connector_instance_id
"""

# The naive baseline: what the console did before the projection, N+1 style. One statement for the
# visible connections, then four per connection: its latest run and its latest successful run
# (each grouping the connector's spine events by run through the source/run summary index), its
# retained stream rows and its retained connection row.
NAIVE_CONNECTIONS = """
SELECT
    ci.connector_instance_id,
    ci.connector_id,
    COALESCE(NULLIF(ci.display_name, ''), c.display_name, c.connector_id) AS display_name,
    ci.status,
    ci.source_kind,
    ci.created_at,
    c.manifest
FROM connector_instances AS ci
JOIN connectors AS c
    ON c.connector_id = ci.connector_id
WHERE NOT (ci.status = 'revoked'
           AND COALESCE(ci.source_binding ->> 'kind', '') IN ('browser_enrollment_shell',
                                                              'static_secret_draft',
                                                              'manual_upload_draft'))
ORDER BY ci.connector_id, ci.created_at, ci.connector_instance_id
"""

_NAIVE_RUN = """
SELECT
    e.run_id,
    min(e.occurred_at) AS started_at,
    max(e.occurred_at) AS last_at,
    count(*) AS event_count,
    (array_agg(e.status ORDER BY e.event_seq DESC)
        FILTER (WHERE e.event_type IN ('run.completed', 'run.failed', 'run.cancelled',
                                       'run.browser_surface_failed', 'run.abandoned')))[1] AS status,
    (array_agg(COALESCE(e.data ->> 'reason', e.data ->> 'failure_reason') ORDER BY e.event_seq)
        FILTER (WHERE e.status IN ('failed', 'rejected')))[1] AS failure_reason
FROM spine_events AS e
WHERE e.source_kind = 'connector'
  AND e.source_id = %(connector_id)s
  AND e.run_id IS NOT NULL
  -- the source/run summary index's bound on id lengths, so the old design keeps its index
  AND octet_length(e.source_kind) + octet_length(e.source_id) + octet_length(e.run_id) <= 2000
GROUP BY e.run_id
HAVING bool_or(COALESCE(e.connector_instance_id, e.data ->> 'connector_instance_id',
                        e.data ->> 'connection_id') = %(connection)s){extra}
ORDER BY max(e.occurred_at) DESC
LIMIT 1
"""
NAIVE_LATEST_RUN = _NAIVE_RUN.format(extra="")
NAIVE_LATEST_SUCCESS = _NAIVE_RUN.format(
    extra="\n   AND bool_or(e.event_type = 'run.completed' AND e.status = 'succeeded')"
)
NAIVE_STREAMS = """
SELECT stream, record_count, current_record_json_bytes, record_history_json_bytes, blob_bytes, computed_at
FROM retained_size_stream
WHERE connector_instance_id = %(connection)s
ORDER BY stream
"""
NAIVE_RETAINED = """
SELECT record_count, current_record_json_bytes, record_history_json_bytes, blob_bytes, computed_at
FROM retained_size_connection
WHERE connector_instance_id = %(connection)s
"""


def naive_overview(conn: psycopg.Connection[Any]) -> tuple[list[Json], int]:
    """The overview the old way; returns the rows and the number of statements it took."""
    cur = conn.cursor(row_factory=dict_row)
    connections = cur.execute(NAIVE_CONNECTIONS).fetchall()
    statements = 1
    rows: list[Json] = []
    for connection in connections:
        params = {
            "connector_id": connection["connector_id"],
            "connection": connection["connector_instance_id"],
        }
        last_run = cur.execute(NAIVE_LATEST_RUN, params).fetchone()
        last_success = cur.execute(NAIVE_LATEST_SUCCESS, params).fetchone()
        streams = cur.execute(NAIVE_STREAMS, params).fetchall()
        retained = cur.execute(NAIVE_RETAINED, params).fetchone()
        statements += 4
        rows.append(
            {
                **connection,
                "last_run": last_run,
                "last_successful_run": last_success,
                "streams_retained": streams,
                "total_records": sum(int(s["record_count"]) for s in streams),
                "retained": retained,
            }
        )
    return rows, statements
