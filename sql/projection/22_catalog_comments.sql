-- ---------------------------------------------------------------------------------------------
-- Catalog comments: every column of refproj's relations, its indexes, and the source tables.
--
-- A DBA's \d+ and \di+ should explain each column without opening the code, so the jsonb ones
-- say their shape. The rules behind the values are in docs/DOMAIN.md. A test
-- (test_every_column_and_index_is_described) fails when a new column or index has no comment.
-- ---------------------------------------------------------------------------------------------

-- Every description is written once: as (relation, column, description), a column's or, with no
-- column, the relation's own (an index's, partitioned or not; a source table's); or, for a column
-- that means the same as the column of that name in another relation, as the pair (relation,
-- other relation).
--
-- refproj's relations and indexes take their descriptions as written. Source tables take theirs
-- only when refproj created them (sql/0001_source_tables.sql marks them in their comment): a
-- table refproj adopted is the application's, and refproj leaves its catalog as it found it
-- (downgrade base could not tell refproj's descriptions from the application's). A source
-- table's description goes before the mark, which downgrade base looks for; a source column keeps
-- a description it already has.
DO $$
DECLARE
    v_created regclass[] := ARRAY(
        SELECT r.oid::regclass
        FROM pg_catalog.pg_class AS r
        WHERE obj_description(r.oid, 'pg_class') LIKE '%Source table created by refproj (revision 0001)%');
    v_comment record;
    v_pair record;
    v_column record;
BEGIN
    FOR v_comment IN
        SELECT r.oid::regclass AS relation, r.relkind, n.nspname = 'refproj' AS refproj_owned,
               c.column_name, c.description
        FROM (VALUES
            -- The stored overview (contract)
            ('refproj.connection_summary', 'connector_instance_id', 'The connection''s id (connector_instances.connector_instance_id); unique.'),
            ('refproj.connection_summary', 'connection_id', 'The same value as connector_instance_id, under the name the console uses.'),
            ('refproj.connection_summary', 'connector_id', 'The connector (kind of source) this connection belongs to.'),
            ('refproj.connection_summary', 'display_name', 'The connection''s display name, else its connector''s, else the connector id (empty names fall through).'),
            ('refproj.connection_summary', 'connector_display_name', 'The connector''s display name, else the connector id.'),
            ('refproj.connection_summary', 'status', 'The connection''s status: active, paused, revoked or draft.'),
            ('refproj.connection_summary', 'source_kind', 'account, local_device, browser_collector or manual.'),
            ('refproj.connection_summary', 'created_at', 'When the connection was created (second key of the overview order).'),
            ('refproj.connection_summary', 'revoked_at', 'When the connection was revoked, or NULL.'),
            ('refproj.connection_summary', 'streams', 'jsonb array of the stream names the connector''s manifest declares (strings); [] when none.'),
            ('refproj.connection_summary', 'stream_count', 'Number of the connection''s retained_size_stream rows.'),
            ('refproj.connection_summary', 'total_records', 'Sum of record_count over the connection''s retained_size_stream rows (0 when none).'),
            ('refproj.connection_summary', 'retained_bytes', 'jsonb {record_json_bytes, record_changes_json_bytes, blob_bytes, total_bytes} (numbers) from retained_size_connection, or NULL without a row.'),
            ('refproj.connection_summary', 'total_retained_bytes', 'retained_bytes.total_bytes, 0 without a retained_size_connection row.'),
            ('refproj.connection_summary', 'last_run', 'jsonb run brief {run_id, status, started_at, last_at, finished_at, failure_reason, event_count, browser_surface_profile_key} of the latest run that belongs to the connection, or NULL.'),
            ('refproj.connection_summary', 'last_successful_run', 'jsonb run brief (same shape as last_run) of the latest succeeded run that belongs to the connection, or NULL.'),
            ('refproj.connection_summary', 'failures_since_last_success', 'Runs with status failed, surface_failed or abandoned ending after the last success (all of them when none succeeded).'),
            ('refproj.connection_summary', 'max_staleness', 'How long a success keeps the connection current: the manifest''s refresh_policy.max_staleness_seconds, else 24 hours.'),
            -- The serialised overview
            ('refproj.connection_summary_json', 'connector_id', 'The connector (first key of the overview order).'),
            ('refproj.connection_summary_json', 'stored_fields', 'The stored fields of the overview row as the text of an unterminated JSON object (timestamps in UTC), completed by one of the endings.'),
            ('refproj.connection_summary_json', 'fresh_until', 'The last read time at which the connection is current (-infinity: never; NULL: nothing succeeded).'),
            ('refproj.connection_summary_json', 'ending_until', 'JSON text closing the row with "freshness" and "health" for read times up to fresh_until.'),
            ('refproj.connection_summary_json', 'ending_after', 'JSON text closing the row with "freshness" and "health" for read times after fresh_until.'),
            -- Runs
            ('refproj.run_events', 'event_seq', 'spine_events.event_seq of the event.'),
            ('refproj.run_events', 'connector_id', 'The connector the run belongs to (spine_events.source_id).'),
            ('refproj.run_events', 'run_id', 'The run id the event carries.'),
            ('refproj.run_events', 'event_type', 'spine_events.event_type.'),
            ('refproj.run_events', 'occurred_at', 'spine_events.occurred_at.'),
            ('refproj.run_events', 'status', 'spine_events.status.'),
            ('refproj.run_events', 'data', 'spine_events.data when it is a jsonb object, else {}.'),
            ('refproj.run_events', 'identity', 'The connection the event claims: the connector_instance_id column, else data.connector_instance_id, else data.connection_id (non-empty strings only).'),
            ('refproj.run_events', 'is_terminal', 'Whether the event type ends a run (run.completed, run.failed, run.cancelled, run.browser_surface_failed, run.abandoned).'),
            ('refproj.run_events', 'has_status', 'Whether the status is non-empty and not unknown.'),
            ('refproj.run_events', 'is_browser_surface', 'Whether the type starts with run.browser_surface_ and data.browser_surface is an object.'),
            ('refproj.run_events', 'reason', 'data.reason, else data.failure_reason (non-empty strings only).'),
            ('refproj.run_events', 'is_failure', 'Whether the event is a failure with a reason (status failed or rejected, reason set): the first of these gives a run its failure_reason when nothing else does.'),
            ('refproj.run_id_folds', 'connector_id', 'The connector the run id belongs to.'),
            ('refproj.run_id_folds', 'run_id', 'The run id.'),
            ('refproj.run_id_folds', 'identity', 'The identity the folded events claim (identity_folds; NULL: none), always NULL in run_id_folds.'),
            ('refproj.run_id_folds', 'least_identity', 'The least identity the folded events claim, NULL when none claims one.'),
            ('refproj.run_id_folds', 'greatest_identity', 'The greatest identity the folded events claim: equal to least_identity when they claim at most one.'),
            ('refproj.run_id_folds', 'started_at', 'Earliest occurred_at of the folded events.'),
            ('refproj.run_id_folds', 'last_at', 'Latest occurred_at of the folded events.'),
            ('refproj.run_id_folds', 'event_count', 'Number of folded events.'),
            ('refproj.run_id_folds', 'last_event_seq', 'Highest event_seq of the folded events.'),
            ('refproj.run_id_folds', 'terminal', 'The newest terminal event with a status (highest event_seq) whole: event_seq, status, reason, data; NULL when none.'),
            ('refproj.run_id_folds', 'newest_status_seq', 'event_seq of the newest event with a status, NULL when none.'),
            ('refproj.run_id_folds', 'surface', 'The newest browser-surface event: event_seq and data.browser_surface; NULL when none.'),
            ('refproj.run_id_folds', 'first_failure_seq', 'event_seq of the first failure with a reason (status failed or rejected), NULL when none.'),
            ('refproj.run_id_folds', 'has_started', 'Whether one of the folded events is run.started.'),
            ('refproj.run_summaries', 'connector_id', 'The run''s connector.'),
            ('refproj.run_summaries', 'run_id', 'The run id (not unique on its own: one run id carried by two identities is two runs).'),
            ('refproj.run_summaries', 'connector_instance_id', 'The run''s identity (the connection its events claim), or NULL for a connector-wide run.'),
            ('refproj.run_summaries', 'status', 'succeeded, failed, cancelled, surface_failed, abandoned, in_progress, another event status, or unknown (docs/DOMAIN.md section 3).'),
            ('refproj.run_summaries', 'started_at', 'Earliest occurred_at of the run''s events.'),
            ('refproj.run_summaries', 'last_at', 'Latest occurred_at of the run''s events (first key of "latest").'),
            ('refproj.run_summaries', 'finished_at', 'last_at, or NULL while the run is in_progress.'),
            ('refproj.run_summaries', 'failure_reason', 'Why the run did not succeed, or NULL (succeeded, in_progress, or no reason given).'),
            ('refproj.run_summaries', 'event_count', 'Number of events in the run.'),
            ('refproj.run_summaries', 'last_event_seq', 'Highest event_seq of the run (breaks ties of last_at).'),
            ('refproj.run_summaries', 'browser_surface_profile_key', 'Profile key of the run''s newest browser-surface event, or NULL.'),
            ('refproj.run_summaries', 'browser_surface_status', 'Surface status of the run''s newest browser-surface event, or NULL.'),
            ('refproj.run_summaries', 'browser_surface_wait_reason', 'Surface wait reason of the run''s newest browser-surface event, or NULL.'),
            ('refproj.run_summaries', 'known_gaps', 'jsonb array from the winning terminal event''s data.known_gaps; [] when absent or not an array.'),
            ('refproj.run_summaries', 'collection_facts', 'jsonb object from the winning terminal event''s data.collection_facts, or NULL.'),
            ('refproj.run_summaries', 'records_emitted', 'The winning terminal event''s data.records_emitted when a whole number from 0 to 9e18, else NULL.'),
            -- Attribution
            ('refproj.attributed_runs', 'attributed_to', 'The connection the run belongs to (docs/DOMAIN.md section 4), or NULL when it is unattributed.'),
            ('refproj.connection_keys', 'expected_profile_key', 'The browser profile key a run of this connection carries: the manifest''s trimmed profile_key (else the connector id), followed by '':'' and the connection id unless that equals the connector id.'),
            ('refproj.connector_max_staleness', 'connector_id', 'The connector.'),
            ('refproj.connection_keys', 'sole_active', 'Whether this is the only active connection of its connector (then it also owns legacy connector-wide runs).'),
            ('refproj.connection_keys', 'match_tokens', 'The match tokens the connection accepts (refproj.connection_match_tokens): a run whose token is one of them belongs to it.'),
            -- Maintained run facts and write detection
            ('refproj.run_facts', 'match_token', 'The one token the run offers to connections: key:<md5 of its profile key>, else id:<md5 of its identity>, else legacy.'),
            ('refproj.run_facts', 'brief', 'jsonb run brief {run_id, status, started_at, last_at, finished_at, failure_reason, event_count, browser_surface_profile_key}, timestamps in UTC.'),
            ('refproj.run_facts', 'details', 'jsonb {connector_instance_id, browser_surface_status, browser_surface_wait_reason, known_gaps, collection_facts, records_emitted}: what the detail shows beyond the brief.'),
            ('refproj.dirty_runs', 'connector_id', 'Connector of a run some statement touched since the last refresh (NULL: a spine write that touched no run).'),
            ('refproj.dirty_runs', 'run_id', 'Run id of a run some statement touched since the last refresh (NULL: a spine write that touched no run).'),
            ('refproj.source_writes', 'xid', 'A transaction that wrote connectors, connector_instances or a retained-size table and that no refresh has seen yet.'),
            ('refproj.projection_state', 'singleton', 'Always true: the table has one row.'),
            ('refproj.projection_state', 'as_of', 'When the stored evidence was computed: the start of the last refresh.'),
            ('refproj.projection_state', 'refresh_ticket', 'The refresh_ticket value the last refresh drew before its snapshot (read-your-writes coalescing).'),
            ('refproj.projection_state', 'last_refresh_ms', 'Duration of the last refresh, in milliseconds.'),
            ('refproj.projection_state', 'refresh_count', 'Refreshes executed since the projection was installed.'),
            ('refproj.projection_state', 'rebuild_requests', 'TRUNCATEs of spine_events or controller_active_runs seen; each asks for a full rebuild of run_facts.'),
            ('refproj.projection_state', 'rebuild_done', 'The rebuild_requests value the last full rebuild absorbed.'),
            ('refproj.projection_state', 'full_ticket', 'The refresh_ticket value the last full rebuild asked for with refresh_connection_summary(p_full => true) drew before its snapshot: a full request is satisfied only by a full rebuild that started after it.'),
            -- Indexes
            ('refproj.run_facts_run_idx', NULL, 'Finds a run''s facts by (connector_id, run_id) when a refresh replaces changed runs.'),
            ('refproj.run_facts_latest_idx', NULL, 'One probe per accepted match token finds a connection''s latest run.'),
            ('refproj.run_facts_latest_success_idx', NULL, 'One probe per accepted match token finds a connection''s latest successful run.'),
            ('refproj.connection_summary_connector_instance_id_idx', NULL, 'Unique key that lets refproj.connection_summary be refreshed CONCURRENTLY.'),
            ('refproj.connection_summary_connector_idx', NULL, 'A connector''s rows (hash: any id length).'),
            ('refproj.connection_summary_json_connector_instance_id_idx', NULL, 'Unique key that lets refproj.connection_summary_json be refreshed CONCURRENTLY.'),
            ('refproj.connection_summary_json_overview_order_idx', NULL, 'The overview order (connector_id, created_at, connector_instance_id) of rows whose two ids are within 2,000 bytes together: refproj.connection_summaries_page reads a keyset page through it.'),
            ('refproj.connection_summary_json_key_length_idx', NULL, 'Finds the rows whose two ids are too long for the overview-order index (over 2,000 bytes together), for refproj.connection_summaries_page.'),
            ('refproj.dirty_runs_connector_idx', NULL, 'A detail finds its connector''s changed runs.'),
            ('spine_events_source_run_summary_idx', NULL, 'refproj''s source/run summary index: a connector''s run events by (source_kind, source_id, run_id, occurred_at DESC); built CONCURRENTLY.'),
            ('connector_instances_connector_idx', NULL, 'refproj''s index of a connector''s connections (connector_id), used by the foreign key''s check when a connector is deleted: created with the table (revision 0001), a hash index since revision 0005 so that an id of any length fits.'),
            -- Source tables
            ('connectors', NULL, 'Connectors: kinds of data source (amazon, chase, github, ...). Read by refproj.'),
            ('connectors', 'manifest', 'jsonb: streams (names or {name}), capabilities.browser_surface.profile_key, refresh_policy.max_staleness_seconds are read by refproj.'),
            ('connector_instances', NULL, 'Connections: one configured account or device of a connector. Read by refproj.'),
            ('connector_instances', 'connector_instance_id', 'The connection''s id.'),
            ('connector_instances', 'connector_id', 'The connector this connection belongs to.'),
            ('connector_instances', 'display_name', 'The connection''s own display name, or NULL.'),
            ('connector_instances', 'status', 'active, paused, revoked or draft.'),
            ('connector_instances', 'source_kind', 'account, local_device, browser_collector or manual.'),
            ('connector_instances', 'source_binding', 'jsonb; kind = browser_enrollment_shell, static_secret_draft or manual_upload_draft marks a setup attempt (hidden once revoked).'),
            ('connector_instances', 'created_at', 'When the connection was created.'),
            ('connector_instances', 'updated_at', 'When the connection was last changed.'),
            ('connector_instances', 'revoked_at', 'When the connection was revoked, or NULL.'),
            ('spine_events', NULL, 'The spine: one append-mostly log of everything runs do. refproj reads run events (source_kind = connector, run_id set).'),
            ('spine_events', 'data', 'jsonb payload; refproj reads connector_instance_id, connection_id, reason, failure_reason, browser_surface, known_gaps, collection_facts, records_emitted.'),
            ('controller_active_runs', NULL, 'Runs the controller is executing right now: a run.started run listed here is in_progress, not failed.'),
            ('retained_size_connection', NULL, 'Retained data per connection: record count and JSON/blob bytes.'),
            ('connectors', 'connector_id', 'The connector''s id (amazon, chase, ...).'),
            ('connectors', 'display_name', 'The connector''s display name, or NULL.'),
            ('spine_events', 'event_seq', 'Increasing sequence number of the event (orders events of a run; breaks ties of "latest").'),
            ('spine_events', 'event_id', 'The event''s unique id.'),
            ('spine_events', 'event_type', 'What happened, e.g. run.started, run.completed, run.failed, run.browser_surface_failed.'),
            ('spine_events', 'occurred_at', 'When it happened.'),
            ('spine_events', 'recorded_at', 'When it was logged.'),
            ('spine_events', 'status', 'The event''s status, e.g. ok, succeeded, failed, surface_failed.'),
            ('spine_events', 'actor_type', 'Who acted, kind.'),
            ('spine_events', 'actor_id', 'Who acted, id.'),
            ('spine_events', 'source_kind', 'connector for run events.'),
            ('spine_events', 'source_id', 'For run events: the connector id.'),
            ('spine_events', 'run_id', 'The run the event belongs to, or NULL.'),
            ('spine_events', 'connector_instance_id', 'The connection the event belongs to, when the writer knew it.'),
            ('spine_events', 'trace_id', 'Tracing id, or NULL.'),
            ('controller_active_runs', 'connector_instance_id', 'The connection being collected.'),
            ('controller_active_runs', 'connector_id', 'Its connector.'),
            ('controller_active_runs', 'run_id', 'The run being executed.'),
            ('controller_active_runs', 'started_at', 'When the controller started it.'),
            ('retained_size_connection', 'connector_instance_id', 'The connection.'),
            ('retained_size_connection', 'connector_id', 'The connection''s connector.'),
            ('retained_size_connection', 'record_count', 'Records retained.'),
            ('retained_size_connection', 'current_record_json_bytes', 'Bytes of the current records'' JSON.'),
            ('retained_size_connection', 'record_history_json_bytes', 'Bytes of the records'' change history JSON.'),
            ('retained_size_connection', 'blob_bytes', 'Bytes of blobs.'),
            ('retained_size_connection', 'computed_at', 'When the sizes were computed, or NULL.'),
            ('retained_size_stream', NULL, 'Retained data per connection and stream.'),
            ('retained_size_stream', 'stream', 'The stream name.'),
            ('retained_size_stream', 'record_count', 'Records retained in the stream.')
        ) AS c (relation, column_name, description)
        JOIN pg_catalog.pg_class AS r ON r.oid = to_regclass(c.relation)
        JOIN pg_catalog.pg_namespace AS n ON n.oid = r.relnamespace
    LOOP
        IF v_comment.relation = to_regclass('connector_instances_connector_idx')
           AND NOT to_regclass('connector_instances') = ANY (v_created) THEN
            -- 0001 creates that index only with the table: on an adopted table it is the
            -- application's (sql/0005_bounded_indexes_offline.sql makes the same distinction).
            CONTINUE;
        ELSIF v_comment.relkind IN ('i', 'I') OR v_comment.refproj_owned THEN
            IF v_comment.column_name IS NULL THEN
                EXECUTE format('COMMENT ON INDEX %s IS %L', v_comment.relation, v_comment.description);
            ELSE
                EXECUTE format('COMMENT ON COLUMN %s.%I IS %L',
                               v_comment.relation, v_comment.column_name, v_comment.description);
            END IF;
        ELSIF NOT v_comment.relation = ANY (v_created) THEN
            CONTINUE;
        ELSIF v_comment.column_name IS NULL THEN
            -- Not yet described (the mark still starts the comment): a re-created projection
            -- finds the tables described by the one before it.
            IF obj_description(v_comment.relation, 'pg_class') LIKE 'Source table created by refproj%' THEN
                EXECUTE format('COMMENT ON TABLE %s IS %L', v_comment.relation,
                               v_comment.description || ' ' || obj_description(v_comment.relation, 'pg_class'));
            END IF;
        ELSIF col_description(v_comment.relation, (
                  SELECT a.attnum FROM pg_catalog.pg_attribute AS a
                  WHERE a.attrelid = v_comment.relation AND a.attname = v_comment.column_name)) IS NULL THEN
            EXECUTE format('COMMENT ON COLUMN %s.%I IS %L',
                           v_comment.relation, v_comment.column_name, v_comment.description);
        END IF;
    END LOOP;

    -- The pairs as listed (a scan of VALUES keeps their order), each its own statement, so a pair
    -- reads what the pairs before it wrote.
    FOR v_pair IN
        SELECT to_regclass(pairs.target_name) AS target, to_regclass(pairs.source_name) AS source
        FROM (VALUES
            ('refproj.connection_evidence', 'refproj.connection_summary'),
            ('refproj.overview_row', 'refproj.connection_summary'),
            ('refproj.detail_row', 'refproj.connection_summary'),
            ('refproj.detail_row', 'refproj.overview_row'),
            ('refproj.connection_profile', 'refproj.connection_summary'),
            ('refproj.connector_max_staleness', 'refproj.connection_summary'),
            ('refproj.connection_run_rollup', 'refproj.connection_summary'),
            ('refproj.connection_keys', 'refproj.connection_summary'),
            ('refproj.connection_summary_json', 'refproj.connection_summary'),
            ('refproj.identity_folds', 'refproj.run_id_folds'),
            ('refproj.attributed_runs', 'refproj.run_summaries'),
            ('refproj.run_facts', 'refproj.run_summaries'),
            ('refproj.run_facts_live', 'refproj.run_facts'),
            ('retained_size_stream', 'retained_size_connection'),
            ('refproj.retained_streams', 'retained_size_stream'),
            ('refproj.visible_connections', 'connector_instances')
        ) AS pairs (target_name, source_name)
    LOOP
        CONTINUE WHEN NOT (v_pair.target = ANY (v_created)
                           OR (SELECT r.relnamespace = 'refproj'::regnamespace
                               FROM pg_catalog.pg_class AS r WHERE r.oid = v_pair.target));
        FOR v_column IN
            SELECT target.attname, d.description
            FROM pg_catalog.pg_attribute AS target
            JOIN pg_catalog.pg_attribute AS source
                ON source.attrelid = v_pair.source AND source.attname = target.attname
            JOIN pg_catalog.pg_description AS d
                ON d.objoid = source.attrelid AND d.classoid = 'pg_catalog.pg_class'::regclass
               AND d.objsubid = source.attnum
            WHERE target.attrelid = v_pair.target AND target.attnum > 0 AND NOT target.attisdropped
              AND col_description(target.attrelid, target.attnum) IS NULL
        LOOP
            EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', v_pair.target, v_column.attname, v_column.description);
        END LOOP;
    END LOOP;
END
$$;

-- The primary keys of refproj's own tables: what each one makes unique.
COMMENT ON INDEX refproj.projection_state_pkey IS 'Keeps refproj.projection_state to its single row.';
COMMENT ON INDEX refproj.source_writes_pkey IS 'One row per writing transaction (its xid8): concurrent writers never block each other here.';
COMMENT ON INDEX refproj.spine_partitions_pkey IS 'One row per partition of spine_events.';
