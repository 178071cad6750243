-- ---------------------------------------------------------------------------------------------
-- Partitioned spine_events (by occurred_at, by the application or pg_partman)
--
-- A write routed through the parent fires the parent's statement triggers (11_write_detection.sql);
-- a write made straight into a partition fires only that partition's, so every partition carries
-- the triggers of spine_events (refproj.source_trigger_plan). PostgreSQL does not clone statement
-- triggers to new partitions, and attaching, detaching or dropping a partition fires no trigger
-- at all (only event triggers, which need a superuser, see DDL). So refproj keeps the list of partitions it watches and compares it with
-- the catalog, a scan of pg_inherits costing microseconds: projection_status() reports a
-- difference as a source change, and the next refresh reconciles it before claiming dirty runs
-- (refproj.sync_spine_partitions):
--   a new partition (created or attached): triggers installed, the runs of its rows recomputed;
--   a detached partition (the table still exists): the runs of its rows recomputed, triggers removed;
--   a dropped partition: its rows are gone unseen, so run_facts is rebuilt whole.
-- TRUNCATE of a partition fires its TRUNCATE trigger: a rebuild, as for the whole table.
-- ---------------------------------------------------------------------------------------------

-- Every partition of spine_events, at any level (empty for a plain table). The regclass is
-- bound when the view is created, like every view's reference to a source table.
CREATE VIEW refproj.spine_partition_tree AS
SELECT t.relid, t.isleaf
FROM pg_catalog.pg_partition_tree('spine_events'::regclass) AS t
WHERE t.level > 0;
COMMENT ON VIEW refproj.spine_partition_tree IS
    'Every partition of spine_events (none when it is a plain table), from the catalog.';
COMMENT ON COLUMN refproj.spine_partition_tree.relid IS 'A partition of spine_events (at any level).';
COMMENT ON COLUMN refproj.spine_partition_tree.isleaf IS 'Whether it holds rows itself (is not partitioned further).';

-- relid is a regclass, not an oid: pg_dump writes it as the partition's name, so a restored
-- list names the restored partitions (their oids are new) instead of looking all dropped.
CREATE TABLE refproj.spine_partitions (
    relid regclass PRIMARY KEY,
    watched boolean NOT NULL
);
COMMENT ON TABLE refproj.spine_partitions IS
    'The partitions of spine_events as of the last refresh; watched: refproj''s write-detection triggers are on it (false when the refresh was not allowed to create them: writes straight into that partition then go unseen, writes through the parent are seen).';
COMMENT ON COLUMN refproj.spine_partitions.relid IS 'A partition of spine_events, as of the last refresh.';
COMMENT ON COLUMN refproj.spine_partitions.watched IS 'refproj''s write-detection triggers are on it.';

CREATE FUNCTION refproj.spine_partitions_changed()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (SELECT t.relid FROM refproj.spine_partition_tree AS t
                   EXCEPT SELECT p.relid FROM refproj.spine_partitions AS p)
        OR EXISTS (SELECT p.relid FROM refproj.spine_partitions AS p
                   EXCEPT SELECT t.relid FROM refproj.spine_partition_tree AS t);
END
$$;
COMMENT ON FUNCTION refproj.spine_partitions_changed() IS
    'true when a partition of spine_events was created, attached, detached or dropped since the last refresh.';

CREATE FUNCTION refproj.sync_spine_partitions(p_recompute boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_relid oid;
    v_watched boolean;
    v_trigger text;
    v_recompute oid[] := '{}';
BEGIN
    IF NOT refproj.spine_partitions_changed() THEN
        RETURN;
    END IF;
    -- New partitions: watch them as spine_events is watched, and recompute the runs their rows
    -- belong to.
    FOR v_relid IN
        SELECT t.relid FROM refproj.spine_partition_tree AS t
        EXCEPT SELECT p.relid FROM refproj.spine_partitions AS p
    LOOP
        v_watched := true;
        BEGIN
            PERFORM refproj.install_source_triggers(v_relid::regclass, 'spine_events');
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'refproj: cannot watch partition % (%): writes made straight into it are not detected',
                v_relid::regclass, SQLERRM;
            v_watched := false;
        END;
        v_recompute := v_recompute || v_relid;
        INSERT INTO refproj.spine_partitions (relid, watched) VALUES (v_relid, v_watched);
    END LOOP;
    -- Partitions gone from the tree.
    FOR v_relid IN
        SELECT p.relid FROM refproj.spine_partitions AS p
        EXCEPT SELECT t.relid FROM refproj.spine_partition_tree AS t
    LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.oid = v_relid) THEN
            -- Detached: its rows say which runs lost events. Rows it lost since are in
            -- dirty_runs already (its triggers fired until now).
            v_recompute := v_recompute || v_relid;
            FOR v_trigger IN
                SELECT p.trigger_name FROM refproj.source_trigger_plan() AS p WHERE p.source_table = 'spine_events'
            LOOP
                EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', v_trigger, v_relid::regclass);
            END LOOP;
        ELSE
            -- Dropped: which runs it held is not known any more.
            UPDATE refproj.projection_state SET rebuild_requests = rebuild_requests + 1;
        END IF;
        DELETE FROM refproj.spine_partitions AS p WHERE p.relid = v_relid;
    END LOOP;
    IF p_recompute THEN
        FOREACH v_relid IN ARRAY v_recompute LOOP
            EXECUTE format('INSERT INTO refproj.dirty_runs (connector_id, run_id)'
                           ' SELECT DISTINCT k.connector_id, k.run_id FROM ONLY %s AS n'
                           ' CROSS JOIN LATERAL refproj.spine_run_key(n.source_kind, n.source_id, n.run_id) AS k'
                           ' WHERE k.run_id IS NOT NULL', v_relid::regclass);
        END LOOP;
    END IF;
END
$$;
COMMENT ON FUNCTION refproj.sync_spine_partitions(boolean) IS
    'Reconciles refproj.spine_partitions with the partitions of spine_events: watches new ones and marks the runs of new and detached ones for recomputation (p_recompute), and asks for a rebuild when one was dropped. Called by every refresh; returns at once when nothing changed.';
