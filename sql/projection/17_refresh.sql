-- ---------------------------------------------------------------------------------------------
-- Refresh (CONTRACT.md section 3): coalesced, read-your-writes, never blocking readers
-- ---------------------------------------------------------------------------------------------

-- Tickets order refresh requests against refresh starts: nextval is non-transactional and
-- strictly increasing across sessions.
CREATE SEQUENCE refproj.refresh_ticket;
COMMENT ON SEQUENCE refproj.refresh_ticket IS
    'Orders refresh requests against refresh starts for read-your-writes coalescing.';

-- An index of refproj.run_facts as the first build drops and re-creates it.
CREATE TYPE refproj.rebuilt_index AS (name text, definition text, comment text);
COMMENT ON TYPE refproj.rebuilt_index IS
    'An index of refproj.run_facts the first build drops before filling the table and re-creates after: its name, CREATE INDEX statement and comment.';

-- Coalesced, read-your-writes refresh.
--
-- Invariant: when this returns, a refresh whose snapshot was taken after this call began has
-- committed. Each call draws a ticket on entry; each refresh draws a ticket just before its
-- snapshot and stores it. Callers queue on one transaction-scoped advisory lock; the holder
-- returns at once if the stored ticket is newer than its own (a refresh that started after it
-- arrived has committed), and otherwise refreshes. So a burst of N callers costs at most the
-- refresh already running plus one more.
--
-- p_full rebuilds run_facts whole from the source tables, for what no trigger saw (a DBA's
-- DISABLE TRIGGER, a data-only restore with triggers disabled; refproj.verify_projection() finds
-- those). It coalesces the same way, against full rebuilds only: a full caller returns early
-- only when a full rebuild that drew its ticket after the caller's has committed (full_ticket),
-- never because of an ordinary refresh, which would not have read what the triggers missed.
-- An ordinary caller is satisfied by either kind. So N concurrent full callers cost at most the
-- rebuild running plus one more, and p_only_if_changed does not apply to them.
CREATE FUNCTION refproj.refresh_connection_summary(
    p_only_if_changed boolean DEFAULT false,
    p_full boolean DEFAULT false,
    OUT refreshed boolean, OUT as_of timestamptz, OUT refresh_ms double precision)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET jit = off
AS $$
DECLARE
    v_ticket bigint := nextval('refproj.refresh_ticket');
    v_started_ticket bigint;
    v_full_ticket bigint;
    v_started timestamptz;
    v_snapshot pg_snapshot;
    v_rebuild boolean;
    v_rebuild_requests bigint;
    v_keys refproj.run_key[];
    v_indexscan text := current_setting('enable_indexscan');
    v_work_mem text := current_setting('work_mem');
    v_indexes refproj.rebuilt_index[];
    v_index refproj.rebuilt_index;
BEGIN
    -- The rule of every refproj function: NULL is a caller's mistake, omitting an argument gives
    -- its default. (A NULL p_full once meant neither an ordinary nor a full refresh.)
    IF p_only_if_changed IS NULL OR p_full IS NULL THEN
        RAISE EXCEPTION 'refproj: p_only_if_changed and p_full must not be NULL (omit them for false), not %, %',
            COALESCE(p_only_if_changed::text, 'NULL'), COALESCE(p_full::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'refproj.refresh_connection_summary() needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;

    PERFORM pg_advisory_xact_lock(7418206610342958901);
    PERFORM refproj.ensure_projection_state();

    SELECT ps.refresh_ticket, ps.full_ticket, ps.as_of
    INTO v_started_ticket, v_full_ticket, v_started
    FROM refproj.projection_state AS ps;
    -- p_only_if_changed is for watchers that saw source_changed: when another refresh has
    -- already absorbed every write, there is nothing left to do.
    IF (p_full AND v_full_ticket > v_ticket)
       OR (NOT p_full
           AND (v_started_ticket > v_ticket
                OR (p_only_if_changed
                    AND NOT (SELECT ps.source_changed FROM refproj.projection_status() AS ps)))) THEN
        refreshed := false;
        as_of := v_started;
        refresh_ms := 0;
        RETURN;
    END IF;

    -- Partitions created, attached, detached or dropped since the last refresh: watch the new
    -- ones and mark the runs whose events arrived or left with them (a drop asks for a rebuild).
    PERFORM refproj.sync_spine_partitions();
    -- Triggers an ENABLE TRIGGER ALL made ordinary fire under the replica role again. Only then
    -- does this take the lock ALTER TABLE needs (writers wait for this refresh to commit). A
    -- trigger found that way was disabled, or silenced by the replica role, at some point since
    -- refproj armed it: writes may have gone unseen, so this refresh rebuilds whole.
    IF refproj.keep_triggers_always() THEN
        UPDATE refproj.projection_state SET rebuild_requests = rebuild_requests + 1;
    END IF;

    v_started_ticket := nextval('refproj.refresh_ticket');
    v_started := clock_timestamp();
    v_snapshot := pg_current_snapshot();

    -- An unpopulated overview (the first build, a schema-only restore) means nothing stored was
    -- computed from these source rows: rebuild (partitions were reconciled above).
    SELECT ps.rebuild_requests,
           refproj.rebuild_pending(refproj.overview_built(), ps.rebuild_requests, ps.rebuild_done)
    INTO v_rebuild_requests, v_rebuild
    FROM refproj.projection_state AS ps;
    v_rebuild := v_rebuild OR p_full;

    -- Claim the changed runs committed so far and bring their run_facts up to date. A backlog
    -- larger than a tenth of all runs (a bulk load, a TRUNCATE) is cheaper to rebuild whole.
    -- A rebuild reads every run anyway: it only forgets them.
    IF v_rebuild THEN
        DELETE FROM refproj.dirty_runs;
        v_keys := '{}';
    ELSE
        WITH claimed AS (
            DELETE FROM refproj.dirty_runs
            RETURNING connector_id, run_id
        )
        SELECT COALESCE(array_agg(ROW(claimed.connector_id, claimed.run_id)::refproj.run_key)
                            FILTER (WHERE claimed.run_id IS NOT NULL), '{}')
        INTO v_keys
        FROM claimed;
        -- SELECT DISTINCT hashes; array_agg(DISTINCT) sorted (5x slower at 300,000 keys).
        v_keys := ARRAY(SELECT DISTINCT k FROM unnest(v_keys) AS k);
        v_rebuild := cardinality(v_keys) > GREATEST(1000, (
            SELECT c.reltuples / 10 FROM pg_class AS c WHERE c.oid = 'refproj.run_facts'::regclass));
    END IF;

    IF v_rebuild THEN
        DELETE FROM refproj.run_facts;
        -- Whole history in one pass: refproj.run_summaries is one hash aggregate over
        -- spine_events. Left alone, the planner misjudges how many rows are run events (the
        -- 2,000-byte bound) and walks the summary index in run order, a random heap read per
        -- event, then sorts them to disk; a sequential scan with the hash table in memory is
        -- several times faster. 128 MB: at M (3.1M events, 300,000 run ids) each worker hashes
        -- its share of the run id folds in memory (about 95 MB each, within work_mem times the
        -- default hash_mem_multiplier of 2); with 64 MB it sorted every event, payload included,
        -- to disk first (EXPLAIN ANALYZE: 3.4 s of the 13 s there). Longer histories spill
        -- anyway; a larger session work_mem is taken as it is (README: giving the first build
        -- more memory: 0.68x-0.72x at M x3 with 1 GB). CREATE TABLE AS may run the
        -- aggregate in parallel workers, INSERT may not (PostgreSQL 15 to 18), hence the
        -- temporary table. Bitmap scans stay on: they give no run order to walk, and the few
        -- runs that read an event back (run_summaries' picked_later) need one.
        PERFORM set_config('enable_indexscan', 'off', true),
                set_config('work_mem', greatest(pg_size_bytes(current_setting('work_mem')),
                                                pg_size_bytes('128MB')) / 1024 || 'kB', true);
        CREATE TEMPORARY TABLE refproj_rebuilt_run_facts ON COMMIT DROP AS
        SELECT * FROM refproj.run_facts_live;
        PERFORM set_config('enable_indexscan', v_indexscan, true),
                set_config('work_mem', v_work_mem, true);
        -- The first build: nobody reads run_facts until it commits (the overview says building,
        -- a detail takes the live path while the rebuild is pending), so its indexes are built
        -- once at the end rather than updated row by row (a third of the first build at M).
        IF NOT refproj.overview_built() THEN
            SELECT array_agg(ROW(i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid),
                                 obj_description(i.indexrelid, 'pg_class'))::refproj.rebuilt_index)
            INTO v_indexes
            FROM pg_index AS i
            WHERE i.indrelid = 'refproj.run_facts'::regclass;
            FOREACH v_index IN ARRAY v_indexes LOOP
                EXECUTE format('DROP INDEX %s', v_index.name);
            END LOOP;
        END IF;
        INSERT INTO refproj.run_facts
        SELECT * FROM pg_temp.refproj_rebuilt_run_facts;
        DROP TABLE pg_temp.refproj_rebuilt_run_facts;
        FOREACH v_index IN ARRAY COALESCE(v_indexes, '{}') LOOP
            EXECUTE v_index.definition;
            EXECUTE format('COMMENT ON INDEX %s IS %L', v_index.name, v_index.comment);
        END LOOP;
    ELSIF cardinality(v_keys) > 0 THEN
        DELETE FROM refproj.run_facts AS f
        USING unnest(v_keys) AS k
        WHERE f.connector_id = k.connector_id
          AND f.run_id = k.run_id;
        INSERT INTO refproj.run_facts
        SELECT * FROM refproj.run_facts_of(v_keys);
    END IF;

    -- CONCURRENTLY keeps the previous rows readable, but needs previous rows: the first build
    -- after install (sql/projection/23_first_build.sql) populates the views plainly. Readers do
    -- not wait for that: they see building in projection_status() and leave the views alone.
    -- Each view on its own: a DBA may have emptied one of them (WITH NO DATA).
    IF (SELECT c.relispopulated FROM pg_class AS c WHERE c.oid = 'refproj.connection_summary'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY refproj.connection_summary;
    ELSE
        REFRESH MATERIALIZED VIEW refproj.connection_summary;
    END IF;
    IF (SELECT c.relispopulated FROM pg_class AS c WHERE c.oid = 'refproj.connection_summary_json'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY refproj.connection_summary_json;
    ELSE
        REFRESH MATERIALIZED VIEW refproj.connection_summary_json;
    END IF;

    -- Forget exactly the writes the refresh saw; later commits keep source_changed true.
    --
    -- A row whose xid is at or past this statement's snapshot xmax was written by another
    -- cluster: the rows this DELETE sees are committed, and every transaction of this cluster
    -- that committed before its snapshot has an xid below that xmax. Such rows come with a
    -- restore (pg_dump taken while a write was unrefreshed) into a cluster whose xid counter is
    -- younger; no snapshot here would include them until the counter caught up, so they are
    -- discarded by the first refresh: what they announced (dirty_runs came with them) has been
    -- absorbed by now. Foreign xids below the counter read as old and go like any seen write. A
    -- late-committing local transaction keeps its row (its xid is below the xmax and not in
    -- v_snapshot) until a refresh whose snapshot includes it, and writers pay nothing more.
    DELETE FROM refproj.source_writes AS w
    WHERE pg_visible_in_snapshot(w.xid, v_snapshot)
       OR w.xid >= pg_snapshot_xmax(pg_current_snapshot());

    refresh_ms := extract(epoch FROM clock_timestamp() - v_started) * 1000;
    UPDATE refproj.projection_state
    SET as_of = v_started,
        refresh_ticket = v_started_ticket,
        last_refresh_ms = refresh_ms,
        refresh_count = projection_state.refresh_count + 1,
        full_ticket = CASE WHEN p_full THEN v_started_ticket ELSE projection_state.full_ticket END,
        rebuild_done = CASE WHEN v_rebuild THEN v_rebuild_requests ELSE projection_state.rebuild_done END;
    -- Every refresh that ran gives the overview a new as_of, so the served body changes: tell
    -- listeners (the HTTP service's event stream). Delivered at commit, never for a rollback.
    PERFORM pg_notify('refproj_refreshed',
                      json_build_object('as_of', v_started, 'refresh_ms', refresh_ms)::text);
    refreshed := true;
    as_of := v_started;
END
$$;
COMMENT ON FUNCTION refproj.refresh_connection_summary(boolean, boolean) IS
    'Refresh refproj.connection_summary (and connection_summary_json) without blocking readers. Returns once a refresh that started after the call has committed (read-your-writes); concurrent callers share refreshes (at most the running one plus one more). refreshed says whether this call ran it. With p_only_if_changed, returns at once when no source write is pending. With p_full, rebuilds run_facts whole from the source tables (what no trigger saw: disabled triggers, a data-only restore) and returns once a full rebuild that started after the call has committed. A refresh that ran sends NOTIFY refproj_refreshed with payload {"as_of": the new as_of (ISO-8601), "refresh_ms"}. A NULL argument raises invalid_parameter_value (omit it for false).';
