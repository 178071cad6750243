-- ---------------------------------------------------------------------------------------------
-- A connection's profile: what its overview row says apart from runs (DOMAIN.md section 5)
-- ---------------------------------------------------------------------------------------------

-- Connections the console lists: all but retired setup attempts. The columns refproj reads, as
-- the types it declares (see refproj.run_events): an adopted table's varchar(n) ids come out text.
CREATE VIEW refproj.visible_connections AS
SELECT
    ci.connector_instance_id::text AS connector_instance_id,
    ci.connector_id::text AS connector_id,
    ci.display_name::text AS display_name,
    ci.status::text AS status,
    ci.source_kind::text AS source_kind,
    ci.source_binding,
    ci.created_at,
    ci.revoked_at
FROM connector_instances AS ci
WHERE NOT (ci.status = 'revoked'
           AND COALESCE(ci.source_binding ->> 'kind', '') IN ('browser_enrollment_shell',
                                                              'static_secret_draft',
                                                              'manual_upload_draft'));
COMMENT ON VIEW refproj.visible_connections IS
    'Connections shown by the console: every connection except revoked retired setup attempts (source_binding.kind browser_enrollment_shell, static_secret_draft, manual_upload_draft).';

CREATE VIEW refproj.retained_streams AS
SELECT
    s.connector_instance_id::text AS connector_instance_id,
    s.stream::text AS stream,
    s.connector_id::text AS connector_id,
    s.record_count::bigint AS record_count,
    s.current_record_json_bytes::bigint AS current_record_json_bytes,
    s.record_history_json_bytes::bigint AS record_history_json_bytes,
    s.blob_bytes::bigint AS blob_bytes,
    s.computed_at
FROM retained_size_stream AS s;
COMMENT ON VIEW refproj.retained_streams IS
    'Retained size per (connection, stream), as the application reports it.';

-- What a connection row says apart from its runs and its connector's refresh policy, computed
-- live: the stored overview and the detail put the run evidence after these columns, then
-- max_staleness (refproj.connector_max_staleness).
CREATE VIEW refproj.connection_profile AS
SELECT
    ci.connector_instance_id,
    ci.connector_instance_id AS connection_id,
    ci.connector_id,
    COALESCE(NULLIF(ci.display_name, ''), NULLIF(c.display_name::text, ''), c.connector_id::text) AS display_name,
    COALESCE(NULLIF(c.display_name::text, ''), c.connector_id::text) AS connector_display_name,
    ci.status,
    ci.source_kind,
    ci.created_at,
    ci.revoked_at,
    ARRAY(
        SELECT name
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(c.manifest -> 'streams') = 'array'
                                       THEN c.manifest -> 'streams' END)
             WITH ORDINALITY AS stream (item, position)
        CROSS JOIN LATERAL (
            SELECT CASE WHEN jsonb_typeof(stream.item) = 'string' THEN NULLIF(stream.item #>> '{}', '')
                        ELSE refproj.jsonb_text(stream.item, 'name') END AS name
        ) AS named
        WHERE name IS NOT NULL
        ORDER BY stream.position
    ) AS streams,
    COALESCE(retained_stream.stream_count, 0)::int AS stream_count,
    -- Sums of bigint columns can leave the bigint range: NULL then ("too large to count"),
    -- never a failed refresh. No rows at all is 0.
    CASE WHEN retained_stream.connector_instance_id IS NULL THEN 0
         ELSE refproj.bigint_or_null(retained_stream.total_records) END AS total_records,
    CASE WHEN rc.connector_instance_id IS NOT NULL THEN jsonb_build_object(
        'record_json_bytes', rc.current_record_json_bytes::bigint,
        'record_changes_json_bytes', rc.record_history_json_bytes::bigint,
        'blob_bytes', rc.blob_bytes::bigint,
        'total_bytes', refproj.bigint_or_null(
            rc.current_record_json_bytes::numeric + rc.record_history_json_bytes + rc.blob_bytes))
    END AS retained_bytes,
    CASE WHEN rc.connector_instance_id IS NULL THEN 0
         ELSE refproj.bigint_or_null(
             rc.current_record_json_bytes::numeric + rc.record_history_json_bytes + rc.blob_bytes)
    END AS total_retained_bytes
FROM refproj.visible_connections AS ci
JOIN connectors AS c
    ON c.connector_id = ci.connector_id
LEFT JOIN (
    SELECT
        s.connector_instance_id,
        count(*) AS stream_count,
        sum(s.record_count) AS total_records
    FROM refproj.retained_streams AS s
    GROUP BY s.connector_instance_id
) AS retained_stream
    ON retained_stream.connector_instance_id = ci.connector_instance_id
LEFT JOIN retained_size_connection AS rc
    ON rc.connector_instance_id = ci.connector_instance_id;
COMMENT ON VIEW refproj.connection_profile IS
    'Every visible connection with the fields of DOMAIN.md section 5 that do not come from runs or from its connector''s refresh policy: names, status, streams, retained sizes.';

-- How long a success keeps the connections of a connector current (DOMAIN.md section 5).
CREATE VIEW refproj.connector_max_staleness AS
SELECT
    c.connector_id::text AS connector_id,
    -- jsonb holds any decimal; a double cannot (1e-400 would fail the cast), so what is below
    -- a double's precision here counts as 0 seconds, which is what it rounds to anyway.
    CASE WHEN jsonb_typeof(c.manifest #> '{refresh_policy,max_staleness_seconds}') = 'number'
              AND (c.manifest #>> '{refresh_policy,max_staleness_seconds}')::numeric
                  BETWEEN 0 AND 3153600000
         THEN make_interval(secs => CASE
             WHEN (c.manifest #>> '{refresh_policy,max_staleness_seconds}')::numeric < 1e-300 THEN 0
             ELSE (c.manifest #>> '{refresh_policy,max_staleness_seconds}')::numeric::double precision END)
         ELSE interval '24 hours'
    END AS max_staleness
FROM connectors AS c;
COMMENT ON VIEW refproj.connector_max_staleness IS
    'Per connector: max_staleness, the manifest''s refresh_policy.max_staleness_seconds, else 24 hours.';
