-- ---------------------------------------------------------------------------------------------
-- The first build
--
-- run_facts is created empty and both materialized views WITH NO DATA. Computing them here would
-- scan the whole history inside the migration's transaction, while it holds the SHARE ROW
-- EXCLUSIVE locks that creating the write-detection triggers took on the source tables: the
-- application could not write until it committed (minutes on a long history). Instead the
-- migration asks for a rebuild and the first refresh builds, with no lock on a source table
-- (refproj.refresh_connection_summary() populates an unpopulated view without CONCURRENTLY).
-- Until then refproj.projection_status() says building and the overview answers with no rows
-- and building = true rather than an empty list that would look like "no connections".
--
-- On a database without run history (a fresh install) there is nothing to scan: the views are
-- populated right here, so the overview serves at once. An upgrade of a projection that was
-- serving (revision 0003 to this one) also builds here, as upgrades always did, so the console
-- never sees a gap across an upgrade (tests/test_upgrade.py); only installing onto an existing
-- history defers the build.
-- ---------------------------------------------------------------------------------------------

DO $refproj_first_build$
BEGIN
    -- Watch the partitions spine_events has now (the first build reads them all anyway).
    PERFORM refproj.sync_spine_partitions(false);
    IF to_regclass('pg_temp.refproj_previous_projection') IS NOT NULL
       AND (SELECT bool_or(p.serving) FROM pg_temp.refproj_previous_projection AS p) THEN
        INSERT INTO refproj.run_facts SELECT * FROM refproj.run_facts_live;
        REFRESH MATERIALIZED VIEW refproj.connection_summary;
        REFRESH MATERIALIZED VIEW refproj.connection_summary_json;
    ELSIF EXISTS (SELECT FROM spine_events) OR EXISTS (SELECT FROM controller_active_runs) THEN
        UPDATE refproj.projection_state SET rebuild_requests = rebuild_requests + 1;
    ELSE
        REFRESH MATERIALIZED VIEW refproj.connection_summary;
        REFRESH MATERIALIZED VIEW refproj.connection_summary_json;
    END IF;
END
$refproj_first_build$;
