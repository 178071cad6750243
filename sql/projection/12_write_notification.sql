-- ---------------------------------------------------------------------------------------------
-- Write notification: wake watchers instead of having them poll; then every source trigger
-- (write detection and notification) is installed
-- ---------------------------------------------------------------------------------------------

-- Every statement that writes a source table also sends NOTIFY refproj_source_changed. PostgreSQL
-- folds identical notifications of one transaction into one, delivered at commit (never for a
-- rolled-back transaction), so a transaction that writes a thousand rows in a hundred statements
-- wakes each listener once. A Projection whose watcher holds a direct session LISTENs on the
-- channel and checks projection_status() only when woken (and on a slow heartbeat); behind a
-- transaction pooler, where a LISTEN does not stay on one server session, it polls as before.
-- The notification carries no payload: what changed is in refproj.source_writes and
-- refproj.dirty_runs, which stay the single source of truth (a lost notification delays a
-- refresh by at most one heartbeat, it never loses a write).
--
-- Cost: a notifying transaction takes a cluster-wide lock for a moment at commit to append to
-- the notification queue (see make bench, write cost with and without the projection).
CREATE FUNCTION refproj.notify_source_write()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('refproj_source_changed', '');
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION refproj.notify_source_write() IS
    'Statement trigger on every source table: NOTIFY refproj_source_changed, once per writing transaction (PostgreSQL folds duplicates), delivered at commit.';

-- Every source table's triggers (refproj.source_trigger_plan, 11_write_detection.sql), now that
-- all their functions exist.
SELECT refproj.install_source_triggers(t.source_table::regclass, t.source_table)
FROM (SELECT DISTINCT p.source_table FROM refproj.source_trigger_plan() AS p) AS t;
