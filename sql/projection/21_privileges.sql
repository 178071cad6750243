-- ---------------------------------------------------------------------------------------------
-- Least privilege
-- ---------------------------------------------------------------------------------------------

-- Nothing here is for PUBLIC. Trigger functions need no EXECUTE privilege to fire, so the
-- application's writers keep writing the source tables without any grant on this schema.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA refproj FROM PUBLIC;

-- What a console reader gets: read the overview, the detail and the status, and request a
-- refresh (refresh_connection_summary is SECURITY DEFINER because only the owner may refresh the
-- view and write the projection's state). SELECT is granted on the refproj relations those
-- functions read, never on a source table: views read the source tables with their owner's
-- rights. Run it as the projection's owner (or a superuser): SELECT refproj.grant_reader('role').
CREATE FUNCTION refproj.grant_reader(p_role text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_object text;
    v_public boolean;
BEGIN
    IF p_role IS NULL THEN
        PERFORM refproj.refuse_null_argument('p_role');
    END IF;
    -- One rule for a role name, here and in `refproj grant-reader`: the name as pg_roles spells
    -- it (no case folding, as createuser and dropuser take it), or a SQL quoted identifier
    -- ("Mixed Case", "" for a quote inside), which is unquoted first. What means PUBLIC (every
    -- role) is refused: "public" quoted, and public unquoted in any case (SQL folds an unquoted
    -- PUBLIC or Public to public). A quoted "Public" is a role of its own, like any other.
    IF p_role ~ '^"(?:[^"]|"")+"$' THEN
        p_role := replace(substr(p_role, 2, length(p_role) - 2), '""', '"');
        v_public := p_role = 'public';
    ELSE
        v_public := lower(p_role) = 'public';
    END IF;
    IF v_public THEN
        RAISE EXCEPTION 'refusing to grant refproj read access to %: name one role', quote_literal(p_role)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Every role would get it; create a role for the console reader instead.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = p_role) THEN
        RAISE EXCEPTION 'role "%" does not exist', p_role
            USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA refproj TO %I', p_role);
    FOREACH v_object IN ARRAY ARRAY[
        'refproj.connection_summary', 'refproj.connection_summary_json', 'refproj.projection_state', 'refproj.source_writes',
        'refproj.dirty_runs', 'refproj.run_facts', 'refproj.run_facts_live', 'refproj.connection_keys',
        'refproj.connection_profile', 'refproj.connector_max_staleness', 'refproj.visible_connections',
        'refproj.retained_streams', 'refproj.connection_run_rollup', 'refproj.spine_partition_tree',
        'refproj.spine_partitions', 'refproj.source_triggers']
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO %I', v_object, p_role);
    END LOOP;
    FOREACH v_object IN ARRAY ARRAY[
        'refproj.connection_summaries(timestamptz, text)',
        'refproj.connection_summaries_json(timestamptz, text)',
        'refproj.connection_summaries_page(timestamptz, text, int, text, timestamptz, text)',
        'refproj.overview_row_of(refproj.connection_summary, text)',
        'refproj.connection_detail(text, int, timestamptz)',
        'refproj.connection_detail_parts(text, int, timestamptz)',
        'refproj.connection_detail_json(text, int, timestamptz)',
        'refproj.summary_fields_json(refproj.connection_summary)',
        'refproj.overview_row_ending(text, text, jsonb, jsonb, interval)',
        'refproj.json_run(jsonb)',
        'refproj.served_row(text, timestamptz, text, text, timestamptz)',
        'refproj.json_time(timestamptz)',
        'refproj.json_seconds(interval)',
        'refproj.json_time_text(jsonb)',
        'refproj.jsonb_servable(jsonb)',
        'refproj.bigint_or_null(numeric)',
        'refproj.resolve_connection(text)',
        'refproj.connection_run_evidence(text)',
        'refproj.projection_status()',
        'refproj.overview_built()',
        'refproj.rebuild_pending_now()',
        'refproj.rebuild_pending(boolean, bigint, bigint)',
        'refproj.spine_partitions_changed()',
        'refproj.refresh_connection_summary(boolean, boolean)',
        'refproj.current_run_facts(text)',
        'refproj.write_detection_intact()',
        'refproj.stored_run_facts(text, text[], int)',
        'refproj.newest_first(refproj.run_facts[])',
        'refproj.run_evidence_of(refproj.run_facts[])',
        'refproj.recent_runs_of(refproj.run_facts[], int)',
        'refproj.run_facts_of(refproj.run_key[])',
        'refproj.require_read_time(timestamptz)',
        'refproj.refuse_null_argument(text)',
        'refproj.failed_like(text)',
        'refproj.fresh_until(jsonb, jsonb, interval)',
        'refproj.freshness_status(timestamptz, timestamptz)',
        'refproj.freshness_object(text, jsonb, jsonb, interval)',
        'refproj.health_at(text, jsonb, text)',
        'refproj.jsonb_text(jsonb, text)',
        'refproj.run_brief(text, text, timestamptz, timestamptz, timestamptz, text, bigint, text)',
        'refproj.run_match_token(text, text)',
        'refproj.connection_match_tokens(text, text, boolean)']
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_object, p_role);
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION refproj.grant_reader(text) FROM PUBLIC;
COMMENT ON FUNCTION refproj.grant_reader(text) IS
    'Let p_role read the overview, detail and status and request refreshes, and nothing else (no source table, no write). p_role is the role name as pg_roles spells it, or a double-quoted SQL identifier (unquoted first). Run as the projection''s owner. Refuses what means PUBLIC (public unquoted in any case, "public" quoted; a quoted "Public" is a role of its own) and NULL (invalid_parameter_value) and roles that do not exist (undefined_object).';
