-- ---------------------------------------------------------------------------------------------
-- Keeping the triggers firing under session_replication_role = replica
--
-- ALTER TABLE ... ENABLE TRIGGER ALL (what pg_restore --disable-triggers ends with, and a DBA's
-- reflex after DISABLE TRIGGER ALL) turns every trigger back into an ordinary one, which
-- session_replication_role = replica silences again. Every refresh puts refproj's triggers found
-- in that state (tgenabled 'O') back to ALWAYS. A trigger left disabled ('D') is a DBA's
-- decision: it stays, and refproj.verify_projection() reports it.
-- ---------------------------------------------------------------------------------------------

-- refproj's triggers on the source tables and their partitions, with their state.
CREATE VIEW refproj.source_triggers AS
SELECT t.tgrelid::regclass AS relation, t.tgname AS trigger, t.tgenabled AS enabled
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_proc AS f ON f.oid = t.tgfoid
WHERE f.pronamespace = 'refproj'::regnamespace
  AND NOT t.tgisinternal;
COMMENT ON VIEW refproj.source_triggers IS
    'refproj''s write-detection and notification triggers on the source tables (and partitions), with their pg_trigger.tgenabled state: A fires always (what refproj installs), O not under session_replication_role = replica, D disabled.';
COMMENT ON COLUMN refproj.source_triggers.relation IS 'The table the trigger is on.';
COMMENT ON COLUMN refproj.source_triggers.trigger IS 'The trigger''s name (refproj_note_* or refproj_notify_source_write).';
COMMENT ON COLUMN refproj.source_triggers.enabled IS 'pg_trigger.tgenabled: A always, O origin and local only, R replica only, D disabled.';

CREATE FUNCTION refproj.keep_triggers_always()
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_trigger record;
    v_rearmed boolean := false;
BEGIN
    -- Only tables this role may ALTER; the others keep what their owner chose.
    FOR v_trigger IN
        SELECT t.relation, t.trigger
        FROM refproj.source_triggers AS t
        JOIN pg_catalog.pg_class AS c ON c.oid = t.relation
        WHERE t.enabled IN ('O', 'R')
          AND pg_catalog.pg_has_role(c.relowner, 'MEMBER')
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', v_trigger.relation, v_trigger.trigger);
        v_rearmed := true;
    END LOOP;
    RETURN v_rearmed;
END
$$;
COMMENT ON FUNCTION refproj.keep_triggers_always() IS
    'Puts refproj''s source triggers that an ALTER TABLE ... ENABLE TRIGGER (ALL) or ENABLE REPLICA TRIGGER made ordinary back to ENABLE ALWAYS, so they fire for every write, session_replication_role = replica included. Returns true when it re-armed one (writes may have gone unseen: the calling refresh rebuilds). Called by every refresh; leaves disabled triggers alone.';

-- Whether every write-detection trigger fires for every write right now. While one does not
-- (disabled, or made ordinary by ENABLE TRIGGER ALL until the next refresh re-arms it), stored
-- run facts may miss writes: the detail and current_run_facts() compute live instead. A catalog
-- read of microseconds, so the detail can ask on every call: plpgsql, so its plan is kept
-- (a SQL function with a pinned search_path was planned on every call, 10 times the read).
CREATE FUNCTION refproj.write_detection_intact()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NOT EXISTS (
        SELECT FROM refproj.source_triggers AS t
        WHERE t.trigger LIKE 'refproj\_note\_%'
          AND t.enabled <> 'A');
END
$$;
COMMENT ON FUNCTION refproj.write_detection_intact() IS
    'true when every refproj write-detection trigger (refproj_note_*) on the source tables and their partitions is ENABLE ALWAYS; false while one is disabled or ordinary, when writes may have gone unseen and the detail reads the source tables live.';
