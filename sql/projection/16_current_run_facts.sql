-- ---------------------------------------------------------------------------------------------
-- A connector's run facts right now, for the detail: stored where no write changed them since
-- the last refresh, recomputed where one did (or everything live while run_facts is not trusted).
-- ---------------------------------------------------------------------------------------------

-- A connector's run facts as the source tables say right now: the stored rows of runs that did
-- not change since the last refresh, and the changed ones recomputed. Equal to
-- run_facts_live filtered to the connector, at the cost of its changed runs only, unless a
-- write-detection trigger is not armed (refproj.write_detection_intact, see
-- sql/projection/14_triggers_armed.sql): then writes may have gone unseen and all of its runs
-- are computed live.
CREATE FUNCTION refproj.current_run_facts(p_connector_id text)
RETURNS SETOF refproj.run_facts
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
AS $$
DECLARE
    v_rebuild boolean;
    v_changed refproj.run_key[];
BEGIN
    IF p_connector_id IS NULL THEN
        PERFORM refproj.refuse_null_argument('p_connector_id');
    END IF;
    -- A partition change not yet reconciled by a refresh counts as a pending rebuild, and so
    -- does an unbuilt overview (a schema-only restore leaves run_facts empty).
    v_rebuild := refproj.rebuild_pending_now();
    SELECT COALESCE(array_agg(DISTINCT ROW(d.connector_id, d.run_id)::refproj.run_key), '{}')
    INTO v_changed
    FROM refproj.dirty_runs AS d
    WHERE d.connector_id = p_connector_id
      AND d.run_id IS NOT NULL;

    IF v_rebuild OR NOT refproj.write_detection_intact() THEN
        RETURN QUERY
        SELECT * FROM refproj.run_facts_live AS live WHERE live.connector_id = p_connector_id;
        RETURN;
    END IF;

    RETURN QUERY
    SELECT f.*
    FROM refproj.run_facts AS f
    WHERE f.connector_id = p_connector_id
      AND NOT (ROW(f.connector_id, f.run_id)::refproj.run_key = ANY (v_changed));
    -- Planning the recomputation costs milliseconds: only when there is something to recompute.
    IF cardinality(v_changed) > 0 THEN
        RETURN QUERY
        SELECT * FROM refproj.run_facts_of(v_changed);
    END IF;
END
$$;
COMMENT ON FUNCTION refproj.current_run_facts(text) IS
    'The run facts of one connector as of the caller''s snapshot (stored rows of unchanged runs plus changed runs recomputed; every run computed live when the connector changed where no trigger saw it): equal to refproj.run_facts_live for that connector.';
