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


-- ---------------------------------------------------------------------------------------------
-- What a served JSON value may hold. Payload values are copied into the detail as they are, so
-- every client must be able to parse them: nothing nested 64 levels deep (Python's json module
-- recurses per level, orjson stops at 1,024) and no number beyond a double's range (JSON parsers
-- turn those into infinity, or refuse integers of over 4,300 digits). A payload value that does
-- not fit is malformed, like one of the wrong JSON type (DOMAIN.md section 3).
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION refproj.jsonb_servable(p_value jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT NOT jsonb_path_exists(p_value, 'strict $.**{64 to last}')
       AND NOT jsonb_path_exists(p_value, 'strict $.** ? (@.type() == "number" && (@ > 1e308 || @ < -1e308))')
$$;
COMMENT ON FUNCTION refproj.jsonb_servable(jsonb) IS
    'Whether a payload value can be served as JSON every client parses: nothing at nesting level 64 or deeper, no number beyond +-1e308.';

-- Served timestamps must parse with ISO-8601 parsers such as Python's datetime.fromisoformat:
-- years 1 to 9999 only. Anything else (BC, a five-digit year, +-infinity) is served as null;
-- the typed SQL columns keep the value.
CREATE FUNCTION refproj.json_time(p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_at >= timestamptz '0001-01-01 00:00:00+00'
                 AND p_at < timestamptz '10000-01-01 00:00:00+00' THEN p_at END
$$;
COMMENT ON FUNCTION refproj.json_time(timestamptz) IS
    'p_at when an ISO-8601 parser can read it (years 1 to 9999 in UTC), else NULL (BC, five-digit years, infinity).';

-- The same for a timestamp already rendered into a jsonb run object (always UTC, ISO style):
-- four-digit years have no space (" BC") and are not "infinity". p_value appears once so the
-- function inlines whatever expression the caller passes (STABLE: to_jsonb is).
CREATE FUNCTION refproj.json_time_text(p_value jsonb)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT to_jsonb(substring(p_value #>> '{}' FROM '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ]*$'))
$$;
COMMENT ON FUNCTION refproj.json_time_text(jsonb) IS
    'A timestamp inside a jsonb run object when an ISO-8601 parser can read it (years 1 to 9999), else NULL (JSON null in the object it is built into).';

-- A run object as served: its timestamps through json_time_text. Stored run objects keep the
-- exact times, which freshness needs.
CREATE FUNCTION refproj.json_run(p_run jsonb)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_run IS NOT NULL THEN p_run || jsonb_build_object(
        'started_at', refproj.json_time_text(p_run -> 'started_at'),
        'last_at', refproj.json_time_text(p_run -> 'last_at'),
        'finished_at', refproj.json_time_text(p_run -> 'finished_at')) END
$$;
COMMENT ON FUNCTION refproj.json_run(jsonb) IS
    'A run object (last_run, last_successful_run, a recent run) as served: started_at, last_at and finished_at null when an ISO-8601 parser could not read them.';

-- A sum of bigint columns as the bigint it is, or NULL when it does not fit in one.
CREATE FUNCTION refproj.bigint_or_null(p_value numeric)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_value BETWEEN -9223372036854775808 AND 9223372036854775807 THEN p_value::bigint END
$$;
COMMENT ON FUNCTION refproj.bigint_or_null(numeric) IS
    'p_value as bigint, or NULL when it is outside the bigint range (a sum of sizes that overflowed).';
