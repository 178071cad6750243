-- ---------------------------------------------------------------------------------------------
-- Verification: the stored overview against a from-scratch computation
--
-- The stored overview is exact as long as every source write fires refproj's triggers. Writes no
-- trigger sees (ALTER TABLE ... DISABLE TRIGGER by a DBA, a data-only restore with
-- --disable-triggers) and refreshes refproj did not run (a DBA's REFRESH MATERIALIZED VIEW of
-- one of the two views) cannot be detected as they happen, so operators get this check and a
-- full rebuild (refresh_connection_summary(p_full => true)) to repair what it finds.
--
-- It compares, per connection:
--   refproj.connection_summary       with refproj.connection_evidence (the live reference, the same
--                                    evidence rules over every run computed from the source tables);
--   refproj.connection_summary_json  with the JSON rows refproj.connection_summary gives now
--                                    (refproj.connection_summary_json_rows), so a typed and a JSON
--                                    overview refreshed apart are reported.
-- Plain reads at one snapshot: AccessShare locks only, so writers and refreshes never wait for it
-- (it costs a from-scratch computation, like the live set-based query: seconds at M).
-- ---------------------------------------------------------------------------------------------

-- The top-level fields of two rows (as jsonb) whose values differ, in name order.
CREATE FUNCTION refproj.differing_fields(p_stored jsonb, p_reference jsonb)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(array_agg(k.key ORDER BY k.key), '{}')
    FROM (SELECT jsonb_object_keys(COALESCE(p_stored, '{}') || COALESCE(p_reference, '{}')) AS key) AS k
    WHERE p_stored -> k.key IS DISTINCT FROM p_reference -> k.key
$$;
COMMENT ON FUNCTION refproj.differing_fields(jsonb, jsonb) IS
    'The top-level keys whose values differ between two JSON objects (a key missing on one side counts), in name order.';

CREATE FUNCTION refproj.verify_projection()
RETURNS TABLE (connector_instance_id text, overview text, difference text, fields text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- The stored run objects were written in UTC (refresh_connection_summary pins it): compute the
-- reference the same way, whatever the caller's session says.
SET "TimeZone" = 'UTC'
SET "IntervalStyle" = 'postgres'
SET jit = off
AS $$
BEGIN
    -- First the rows of no connection, whatever else differs: an unpopulated view (the first
    -- build pending, a DBA's WITH NO DATA) cannot be read, so it is the difference to report
    -- (the next refresh populates it); and refproj's triggers that do not fire for every write:
    -- disabled (what they would have seen is missing, and stays missing), replica only (a DBA's
    -- ENABLE REPLICA TRIGGER: ordinary writes go unseen), or not always (an ENABLE TRIGGER ALL
    -- made them ordinary: writes under session_replication_role = replica go unseen until the
    -- next refresh makes them ALWAYS again, see refproj.keep_triggers_always).
    RETURN QUERY
    SELECT u.id, u.overview, u.difference, u.fields
    FROM (
        SELECT NULL::text AS id, c.relname::text AS overview, 'unpopulated'::text AS difference,
               '{}'::text[] AS fields
        FROM pg_class AS c
        WHERE c.oid IN ('refproj.connection_summary'::regclass, 'refproj.connection_summary_json'::regclass)
          AND NOT c.relispopulated
        UNION ALL
        SELECT NULL, 'trigger',
               CASE t.enabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica_only' ELSE 'not_always' END,
               ARRAY[t.relation::text || '.' || t.trigger]
        FROM refproj.source_triggers AS t
        WHERE t.enabled <> 'A'
    ) AS u
    -- The same order in every database, whatever its collation.
    ORDER BY u.overview, u.fields[1] COLLATE "C";
    IF NOT refproj.overview_built() THEN
        RETURN;
    END IF;
    -- Then the connections, in id order.
    RETURN QUERY
    WITH stored AS (
        SELECT s.connector_instance_id AS id, to_jsonb(s) AS row FROM refproj.connection_summary AS s
    ),
    reference AS (
        SELECT e.connector_instance_id AS id, to_jsonb(e) AS row FROM refproj.connection_evidence AS e
    ),
    served AS (
        SELECT j.connector_instance_id AS id, to_jsonb(j) AS row FROM refproj.connection_summary_json AS j
    ),
    expected AS (
        SELECT j.connector_instance_id AS id, to_jsonb(j) AS row FROM refproj.connection_summary_json_rows() AS j
    ),
    differences AS (
        SELECT COALESCE(s.id, r.id) AS id, 'connection_summary' AS overview,
               CASE WHEN s.id IS NULL THEN 'missing' WHEN r.id IS NULL THEN 'unexpected' ELSE 'differs' END
                   AS difference,
               CASE WHEN s.id IS NOT NULL AND r.id IS NOT NULL
                    THEN refproj.differing_fields(s.row, r.row) ELSE '{}' END AS fields
        FROM stored AS s
        FULL JOIN reference AS r ON r.id = s.id
        WHERE s.row IS DISTINCT FROM r.row
        UNION ALL
        SELECT COALESCE(j.id, x.id), 'connection_summary_json',
               CASE WHEN j.id IS NULL THEN 'missing' WHEN x.id IS NULL THEN 'unexpected' ELSE 'differs' END,
               CASE WHEN j.id IS NOT NULL AND x.id IS NOT NULL
                    THEN refproj.differing_fields(j.row, x.row) ELSE '{}' END
        FROM served AS j
        FULL JOIN expected AS x ON x.id = j.id
        WHERE j.row IS DISTINCT FROM x.row
    )
    SELECT d.id, d.overview, d.difference, d.fields
    FROM differences AS d
    ORDER BY d.id COLLATE "C", d.overview, d.fields[1] COLLATE "C";
END
$$;
COMMENT ON FUNCTION refproj.verify_projection() IS
    'The connections whose stored overview differs from a from-scratch computation, one row per connection and view: overview connection_summary (against refproj.connection_evidence) or connection_summary_json (against the JSON of connection_summary now: the two views refreshed apart), difference missing | unexpected | differs, and the differing fields; also one row per refproj trigger on a source table that does not fire for every write (connector_instance_id NULL, overview trigger, difference disabled | replica_only | not_always, fields {table.trigger}; the next refresh makes not_always ones fire always again); while a view is unpopulated (the first build pending, a REFRESH MATERIALIZED VIEW ... WITH NO DATA) only one row per such view (connector_instance_id NULL, overview the view name, difference unpopulated, fields {}) and the trigger rows. No rows when the projection is exact. Plain reads (AccessShare locks): never blocks writers. Differences after writes no trigger saw are repaired by refresh_connection_summary(p_full => true); those between the two views by any refresh. Run it after a refresh: writes still pending (projection_status().source_changed) show as differences too.';
