-- ---------------------------------------------------------------------------------------------
-- Small pure helpers. They are deliberately plain SQL without SET clauses so that PostgreSQL
-- inlines them into the queries that use them (a SET clause forbids inlining and would cost a
-- function call per row). Those that build jsonb are STABLE, not IMMUTABLE: jsonb_build_object
-- is STABLE, and PostgreSQL refuses to inline a function declared stricter than its body. They
-- call only built-in functions and operators, which PostgreSQL resolves from pg_catalog before
-- any other schema.
-- ---------------------------------------------------------------------------------------------

-- A payload field as text, only when it is a non-empty JSON string; anything else is NULL.
CREATE FUNCTION refproj.jsonb_text(p_object jsonb, p_key text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN jsonb_typeof(p_object -> p_key) = 'string'
                THEN NULLIF(p_object ->> p_key, '') END
$$;
COMMENT ON FUNCTION refproj.jsonb_text(jsonb, text) IS
    'The value of p_key in p_object when it is a non-empty JSON string, else NULL (never fails on malformed payloads).';

-- The run shape shown in last_run / last_successful_run (DOMAIN.md section 5).
CREATE FUNCTION refproj.run_brief(
    p_run_id text, p_status text, p_started_at timestamptz, p_last_at timestamptz,
    p_finished_at timestamptz, p_failure_reason text, p_event_count bigint,
    p_browser_surface_profile_key text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object(
        'run_id', p_run_id,
        'status', p_status,
        'started_at', p_started_at,
        'last_at', p_last_at,
        'finished_at', p_finished_at,
        'failure_reason', p_failure_reason,
        'event_count', p_event_count,
        'browser_surface_profile_key', p_browser_surface_profile_key)
$$;
COMMENT ON FUNCTION refproj.run_brief(text, text, timestamptz, timestamptz, timestamptz, text, bigint, text) IS
    'The jsonb run object of last_run and last_successful_run.';

-- The one match token a run offers (DOMAIN.md section 4, rule order): its browser profile key,
-- else its identity, else "legacy" (a connector-wide run). Keys and identities are hashed so a
-- token always fits in an index entry, however long the value a payload carried.
CREATE FUNCTION refproj.run_match_token(p_browser_surface_profile_key text, p_identity text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_browser_surface_profile_key IS NOT NULL THEN 'key:' || md5(p_browser_surface_profile_key)
        WHEN p_identity IS NOT NULL THEN 'id:' || md5(p_identity)
        ELSE 'legacy'
    END
$$;
COMMENT ON FUNCTION refproj.run_match_token(text, text) IS
    'The match token of a run: key:<md5 of its profile key>, else id:<md5 of its identity>, else legacy.';

-- The tokens a connection accepts: its expected profile key, its own id, and "legacy" when it is
-- its connector's only active connection. A run belongs to the connection accepting its token.
CREATE FUNCTION refproj.connection_match_tokens(
    p_connector_instance_id text, p_expected_profile_key text, p_sole_active boolean)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT array_remove(
        ARRAY['key:' || md5(p_expected_profile_key),
              'id:' || md5(p_connector_instance_id),
              CASE WHEN p_sole_active THEN 'legacy' END],
        NULL)
$$;
COMMENT ON FUNCTION refproj.connection_match_tokens(text, text, boolean) IS
    'The match tokens a connection accepts: key:<md5 of its expected profile key>, id:<md5 of its id>, and legacy when it is the only active connection of its connector.';

