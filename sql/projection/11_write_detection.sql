-- ---------------------------------------------------------------------------------------------
-- Write detection (DOMAIN.md section 7, CONTRACT.md section 3): what changed since the last
-- refresh, recorded by statement triggers on the source tables
-- ---------------------------------------------------------------------------------------------

-- One row per transaction that wrote connectors, connector_instances or the retained-size tables
-- since the last refresh. Inserts never block each other (each transaction has its own key), so
-- writers do not serialise on a shared counter, and a late-committing transaction stays here
-- until a refresh whose snapshot includes it.
CREATE TABLE refproj.source_writes (
    xid xid8 PRIMARY KEY
);
ALTER TABLE refproj.source_writes SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
COMMENT ON TABLE refproj.source_writes IS
    'Transactions that wrote connectors, connector_instances or the retained-size tables and are not yet reflected in refproj.connection_summary.';

-- Runs whose spine events or active-run rows changed since the last refresh; one row per
-- statement and run id (a spine write that touches no run leaves one row of NULLs, so it still
-- counts as a source write). The next refresh claims the committed rows and recomputes exactly
-- those runs; rows of a transaction that commits later stay for the refresh after.
CREATE TABLE refproj.dirty_runs (
    connector_id text NULL,
    run_id text NULL
);
-- A detail reads its connector's rows. A hash index holds a 4-byte hash whatever the id's
-- length, so no connector id an application writes can make its write fail here.
CREATE INDEX dirty_runs_connector_idx ON refproj.dirty_runs USING hash (connector_id);
-- Every refresh deletes what it claimed: vacuum soon after, not after a fifth of the table died.
ALTER TABLE refproj.dirty_runs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
COMMENT ON TABLE refproj.dirty_runs IS
    'Runs changed since the last refresh (connector_id, run_id). Claimed and emptied by refproj.refresh_connection_summary(). A TRUNCATE counts in projection_state.rebuild_requests instead.';

-- Trigger functions are SECURITY DEFINER so the application's writers need no privilege on the
-- refproj schema. All are statement-level: one small insert per writing statement.
CREATE FUNCTION refproj.note_source_write()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO refproj.source_writes (xid)
    VALUES (pg_current_xact_id())
    ON CONFLICT (xid) DO NOTHING;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION refproj.note_source_write() IS
    'Statement trigger: records that the current transaction wrote a source table.';

-- A TRUNCATE of spine_events or controller_active_runs has no transition table: ask the next
-- refresh to rebuild everything.
CREATE FUNCTION refproj.note_truncate()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE refproj.projection_state SET rebuild_requests = rebuild_requests + 1;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION refproj.note_truncate() IS
    'Statement trigger on TRUNCATE of spine_events or controller_active_runs: asks the next refresh to rebuild run_facts whole.';

-- The runs a spine_events statement touched (INSERT, UPDATE, DELETE), from its transition tables.
CREATE FUNCTION refproj.note_spine_write()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT DISTINCT k.connector_id, k.run_id
        FROM new_rows AS n
        CROSS JOIN LATERAL refproj.spine_run_key(n.source_kind, n.source_id, n.run_id) AS k;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT DISTINCT k.connector_id, k.run_id
        FROM (SELECT * FROM old_rows UNION ALL SELECT * FROM new_rows) AS n
        CROSS JOIN LATERAL refproj.spine_run_key(n.source_kind, n.source_id, n.run_id) AS k;
    ELSE
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT DISTINCT k.connector_id, k.run_id
        FROM old_rows AS n
        CROSS JOIN LATERAL refproj.spine_run_key(n.source_kind, n.source_id, n.run_id) AS k;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION refproj.note_spine_write() IS
    'Statement trigger on spine_events: records the (connector_id, run_id) of every run event the statement inserted, updated or deleted.';

-- A spine row's run key, or NULLs when it is not a run event (refproj.run_events' filter).
CREATE FUNCTION refproj.spine_run_key(p_source_kind text, p_source_id text, p_run_id text)
RETURNS SETOF refproj.run_key
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT
        CASE WHEN run_event THEN p_source_id END,
        CASE WHEN run_event THEN p_run_id END
    FROM (SELECT COALESCE(p_source_kind = 'connector' AND p_source_id IS NOT NULL AND p_run_id IS NOT NULL
                          AND octet_length(p_source_kind) + octet_length(p_source_id)
                              + octet_length(p_run_id) <= 2000, false) AS run_event) AS k
$$;
COMMENT ON FUNCTION refproj.spine_run_key(text, text, text) IS
    'The (connector_id, run_id) a spine row contributes to, or NULLs for a row that is no run event.';

-- Whether the controller runs a run decides in_progress versus failed: its rows dirty their runs.
CREATE FUNCTION refproj.note_active_run_write()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT DISTINCT n.connector_id, n.run_id FROM new_rows AS n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT n.connector_id, n.run_id FROM old_rows AS n
        UNION
        SELECT n.connector_id, n.run_id FROM new_rows AS n;
    ELSE
        INSERT INTO refproj.dirty_runs (connector_id, run_id)
        SELECT DISTINCT n.connector_id, n.run_id FROM old_rows AS n;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION refproj.note_active_run_write() IS
    'Statement trigger on controller_active_runs (INSERT, UPDATE, DELETE): records the runs whose in_progress status may have changed.';

-- Every trigger refproj puts on the source tables, written once: one row per (table, trigger).
-- Each partition of spine_events carries spine_events' own rows (refproj.sync_spine_partitions).
-- The notification trigger's function is in 12_write_notification.sql, which installs them all.
CREATE FUNCTION refproj.source_trigger_plan()
RETURNS TABLE (source_table text, trigger_name text, events text, transition_tables text, function_name text,
               description text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Every writing statement on any source table notifies watchers.
    SELECT t.source_table, 'refproj_notify_source_write', 'INSERT OR UPDATE OR DELETE OR TRUNCATE', '',
           'refproj.notify_source_write',
           'refproj: wakes LISTENing watchers (NOTIFY refproj_source_write, once per transaction, at commit). ENABLE ALWAYS; never fails the write.'
    FROM unnest(ARRAY['connectors', 'connector_instances', 'retained_size_connection',
                      'retained_size_stream', 'spine_events', 'controller_active_runs']) AS t (source_table)
    UNION ALL
    -- A write to these marks its transaction.
    SELECT t.source_table, 'refproj_note_source_write', 'INSERT OR UPDATE OR DELETE OR TRUNCATE', '',
           'refproj.note_source_write',
           'refproj write detection: marks the writing transaction (refproj.source_writes), so the next refresh recomputes the connections. ENABLE ALWAYS; never fails the write.'
    FROM unnest(ARRAY['connectors', 'connector_instances', 'retained_size_connection',
                      'retained_size_stream']) AS t (source_table)
    UNION ALL
    -- A write to these marks the runs it touched: one trigger per operation, with the transition
    -- tables that operation has; a TRUNCATE (none) asks for a rebuild.
    SELECT t.source_table, op.trigger_name, op.events, op.transition_tables,
           COALESCE(op.function_name, t.function_name), op.description
    FROM (VALUES ('spine_events', 'refproj.note_spine_write'),
                 ('controller_active_runs', 'refproj.note_active_run_write')) AS t (source_table, function_name)
    CROSS JOIN (VALUES
        ('refproj_note_insert', 'INSERT', 'REFERENCING NEW TABLE AS new_rows', NULL,
         'refproj write detection: records the runs the inserted rows touch (refproj.dirty_runs) for the next refresh. ENABLE ALWAYS; never fails the write.'),
        ('refproj_note_update', 'UPDATE', 'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows', NULL,
         'refproj write detection: records the runs the updated rows touch, before and after (refproj.dirty_runs) for the next refresh. ENABLE ALWAYS; never fails the write.'),
        ('refproj_note_delete', 'DELETE', 'REFERENCING OLD TABLE AS old_rows', NULL,
         'refproj write detection: records the runs the deleted rows touch (refproj.dirty_runs) for the next refresh. ENABLE ALWAYS; never fails the write.'),
        ('refproj_note_truncate', 'TRUNCATE', '', 'refproj.note_truncate',
         'refproj write detection: a TRUNCATE asks the next refresh to rebuild run_facts whole. ENABLE ALWAYS; never fails the write.'))
        AS op (trigger_name, events, transition_tables, function_name, description)
$$;
COMMENT ON FUNCTION refproj.source_trigger_plan() IS
    'The triggers refproj puts on each source table (by name): trigger name, events, transition tables (REFERENCING clause, or empty), function and the trigger''s catalog comment, every one AFTER ... FOR EACH STATEMENT and ENABLE ALWAYS.';

-- Creates on p_relation (a source table, or a partition of one) the triggers the plan gives
-- p_source_table. ENABLE ALWAYS: they fire under session_replication_role = replica too
-- (logical replication's apply workers, pg_restore --disable-triggers run by a non-superuser,
-- Bucardo and pgloader write in that role, and an ordinary trigger does not fire there, so their
-- writes would go unseen). Only ALTER TABLE ... DISABLE TRIGGER (ALL) silences them; refproj
-- verify finds what that hid. OR REPLACE: a schema-only restore brings a partition's triggers
-- back without refproj.spine_partitions.
CREATE FUNCTION refproj.install_source_triggers(p_relation regclass, p_source_table text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_trigger record;
BEGIN
    FOR v_trigger IN
        SELECT p.trigger_name, p.events, p.transition_tables, p.function_name, p.description
        FROM refproj.source_trigger_plan() AS p
        WHERE p.source_table = p_source_table
    LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER %s ON %s %s FOR EACH STATEMENT EXECUTE FUNCTION %s()',
                       v_trigger.trigger_name, v_trigger.events, p_relation, v_trigger.transition_tables,
                       v_trigger.function_name);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', p_relation, v_trigger.trigger_name);
        -- A DBA's \d+ or pg_dump of an application table then says whose trigger it is. COMMENT
        -- needs the table's ownership, which the TRIGGER privilege alone does not give: without
        -- it the trigger still watches, undescribed.
        BEGIN
            EXECUTE format('COMMENT ON TRIGGER %I ON %s IS %L', v_trigger.trigger_name, p_relation,
                           v_trigger.description);
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION refproj.install_source_triggers(regclass, text) IS
    'Creates (or replaces) on p_relation the triggers refproj.source_trigger_plan() gives the source table p_source_table, each ENABLE ALWAYS and with its catalog comment.';
