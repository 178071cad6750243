-- ---------------------------------------------------------------------------------------------
-- The projection's own state: when the stored overview was computed, whether it is built,
-- whether run_facts must be rebuilt, and projection_status(), the status every read asks for.
-- ---------------------------------------------------------------------------------------------

-- One row, refproj.projection_state: the refresh's bookkeeping.
CREATE TABLE refproj.projection_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    as_of timestamptz NOT NULL,
    refresh_ticket bigint NOT NULL DEFAULT 0,
    last_refresh_ms double precision NULL,
    refresh_count bigint NOT NULL DEFAULT 0,
    -- TRUNCATEs of spine_events or controller_active_runs seen, and handled by a full rebuild.
    rebuild_requests bigint NOT NULL DEFAULT 0,
    rebuild_done bigint NOT NULL DEFAULT 0,
    -- The refresh_ticket of the last full rebuild asked for with p_full (see refresh_connection_summary).
    full_ticket bigint NOT NULL DEFAULT 0
);
INSERT INTO refproj.projection_state (as_of) VALUES (now());
COMMENT ON TABLE refproj.projection_state IS
    'Single row: when the stored evidence was computed (as_of), the ticket its refresh started at, and refresh statistics.';

-- Whether the first build has committed. A catalog read: it takes no lock on the views, so a
-- reader never queues behind the first build's plain REFRESH (ACCESS EXCLUSIVE). Every read
-- asks, so plpgsql: the session keeps its plan, where a SQL function with a pinned search_path
-- is planned again on each call (the same holds for the other catalog probes a read or a
-- detail makes: spine_partitions_changed, write_detection_intact, rebuild_pending_now).
CREATE FUNCTION refproj.overview_built()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Both views: a DBA's REFRESH MATERIALIZED VIEW ... WITH NO DATA on either one leaves
    -- nothing to refresh CONCURRENTLY from, so it counts as unbuilt (the next refresh builds).
    RETURN (SELECT pg_catalog.bool_and(c.relispopulated)
            FROM pg_catalog.pg_class AS c
            WHERE c.oid IN ('refproj.connection_summary'::regclass, 'refproj.connection_summary_json'::regclass));
END
$$;
COMMENT ON FUNCTION refproj.overview_built() IS
    'true once the stored overview is populated (both refproj.connection_summary and refproj.connection_summary_json: the first build after install, or the refresh after a REFRESH MATERIALIZED VIEW ... WITH NO DATA, has committed); until then readers get building = true instead of rows.';

-- Whether nothing stored in run_facts can be trusted, so the next refresh recomputes it whole and
-- readers compute from the source tables: a TRUNCATE or a dropped partition not yet absorbed,
-- or a projection that is not built. The last covers the first build after install and a
-- database restored from pg_dump --schema-only (views unpopulated, run_facts and the
-- projection_state singleton empty: a missing row, NULL counts here, reads as pending too).
-- The rule takes what it needs as arguments and pins no search_path (its one operator is
-- qualified), so PostgreSQL inlines it into projection_status(), which every read calls.
CREATE FUNCTION refproj.rebuild_pending(p_built boolean, p_rebuild_requests bigint, p_rebuild_done bigint)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT NOT p_built
        OR COALESCE(p_rebuild_requests OPERATOR(pg_catalog.>) p_rebuild_done, true)
        OR refproj.spine_partitions_changed()
$$;
COMMENT ON FUNCTION refproj.rebuild_pending(boolean, bigint, bigint) IS
    'The rule: refproj.run_facts cannot be trusted (the next refresh rebuilds it whole) when the overview is not built (p_built false: first build after install, or a restore from pg_dump --schema-only), the projection_state row is missing (NULL counts), a TRUNCATE is not yet absorbed (requests > done), or a partition of spine_events changed.';

CREATE FUNCTION refproj.rebuild_pending_now()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT refproj.rebuild_pending(refproj.overview_built(), ps.rebuild_requests, ps.rebuild_done)
            FROM (VALUES (true)) AS one (singleton)
            LEFT JOIN refproj.projection_state AS ps ON ps.singleton = one.singleton);
END
$$;
COMMENT ON FUNCTION refproj.rebuild_pending_now() IS
    'refproj.rebuild_pending(boolean, bigint, bigint) for the current state: true when refproj.run_facts cannot be trusted and the next refresh rebuilds it whole.';

-- The projection_state singleton, re-created when a restore left it out (pg_dump --schema-only,
-- a data reload of the source tables only). Called by every refresh and by every Alembic run
-- (migrations/env.py), even at head: reads first, so when the row exists it takes no lock a
-- refresh or a writer could wait on. as_of is now(): nothing older is stored, and the missing
-- row reads as a pending rebuild until a refresh has run (rebuild_pending).
CREATE FUNCTION refproj.ensure_projection_state()
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM refproj.projection_state) THEN
        RETURN false;
    END IF;
    -- rebuild_requests 1 > rebuild_done 0: whatever run_facts holds was not computed here.
    INSERT INTO refproj.projection_state (as_of, rebuild_requests) VALUES (now(), 1)
    ON CONFLICT (singleton) DO NOTHING;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION refproj.ensure_projection_state() IS
    'Re-creates the refproj.projection_state row when a restore left it out (pg_dump --schema-only), asking for a full rebuild; returns whether it did. Run by every refresh and every alembic upgrade, even at head.';

CREATE FUNCTION refproj.projection_status(
    OUT as_of timestamptz, OUT source_changed boolean, OUT last_refresh_ms double precision,
    OUT refresh_count bigint, OUT building boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- One row even when a restore left out the projection_state row: as_of is then the epoch
    -- (nothing stored was computed here), and the missing row reads as a pending rebuild.
    -- PL/pgSQL keeps this statement's plan for the session: every read calls this, and a SQL
    -- function would plan the join again on each call. overview_built() once (OFFSET 0).
    SELECT
        COALESCE(ps.as_of, 'epoch'::timestamptz),
        EXISTS (SELECT 1 FROM refproj.source_writes)
            OR EXISTS (SELECT 1 FROM refproj.dirty_runs)
            OR refproj.rebuild_pending(b.built, ps.rebuild_requests, ps.rebuild_done),
        ps.last_refresh_ms,
        COALESCE(ps.refresh_count, 0),
        NOT b.built
    INTO as_of, source_changed, last_refresh_ms, refresh_count, building
    FROM (SELECT refproj.overview_built() AS built OFFSET 0) AS b
    LEFT JOIN refproj.projection_state AS ps ON true;
END
$$;
COMMENT ON FUNCTION refproj.projection_status() IS
    'One row: as_of (when the stored evidence was computed), source_changed (a source table was written since), last_refresh_ms, refresh_count, building (the first build after install has not committed yet: the overview has no rows to serve). Costs two index probes whatever the history size.';
