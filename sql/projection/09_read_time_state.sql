-- ---------------------------------------------------------------------------------------------
-- Read-time state (DOMAIN.md section 5): computed from the stored evidence and the read's clock,
-- never stored, so a stored row can never claim "healthy" after it went stale.
-- ---------------------------------------------------------------------------------------------

-- Every read names its read time; NULL is a caller's mistake, not "now" (omitting it is).
CREATE FUNCTION refproj.require_read_time(p_at timestamptz)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_at IS NULL THEN
        RAISE EXCEPTION 'refproj: the read time p_at must not be NULL (omit it for now())'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION refproj.require_read_time(timestamptz) IS
    'Raises invalid_parameter_value when the read time p_at is NULL: every read function checks its p_at here.';

-- NULL is never a meaning of its own (README "What gets installed"): an argument without a NULL
-- default that is NULL names itself here. Called only once the caller saw the NULL, so the
-- check on a hot path is a plpgsql IF, not a function call.
CREATE FUNCTION refproj.refuse_null_argument(p_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'refproj: the argument % must not be NULL', p_name
        USING ERRCODE = 'invalid_parameter_value';
END
$$;
COMMENT ON FUNCTION refproj.refuse_null_argument(text) IS
    'Raises invalid_parameter_value "the argument <p_name> must not be NULL": what a public refproj function calls when an argument without a NULL default is NULL.';

-- A run that ended failed-like (DOMAIN.md section 5): freshness and health both ask it of the
-- last run. Not the failures the evidence counts (refproj.run_evidence_of): cancelled is here.
CREATE FUNCTION refproj.failed_like(p_status text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_status IN ('failed', 'surface_failed', 'cancelled', 'abandoned')
$$;
COMMENT ON FUNCTION refproj.failed_like(text) IS
    'Whether a run status is failed-like for freshness and health: failed, surface_failed, cancelled or abandoned.';

-- Freshness is a step in read time (DOMAIN.md section 5): a connection reads current up to one
-- moment and not after it. fresh_until computes that moment once from the stored evidence, so
-- the read itself is one comparison. Each helper takes plain values so it inlines with no
-- argument evaluated twice: callers compute fresh_until and the status once (OFFSET 0 keeps
-- each a column) and pass them on.
CREATE FUNCTION refproj.fresh_until(
    p_last_run jsonb, p_last_successful_run jsonb, p_max_staleness interval)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN refproj.failed_like(p_last_run ->> 'status')
             AND (p_last_successful_run IS NULL
                  OR (p_last_run ->> 'last_at')::timestamptz
                     >= (p_last_successful_run ->> 'last_at')::timestamptz)
            THEN timestamptz '-infinity'
        WHEN p_last_successful_run IS NULL
            THEN NULL
        -- Past this bound the sum would leave the timestamp range; such a connection is current
        -- at any read time that fits in it.
        WHEN (p_last_successful_run ->> 'last_at')::timestamptz
             < timestamptz '294000-01-01 00:00:00+00' - p_max_staleness
            THEN (p_last_successful_run ->> 'last_at')::timestamptz + p_max_staleness
        ELSE timestamptz 'infinity'
    END
$$;
COMMENT ON FUNCTION refproj.fresh_until(jsonb, jsonb, interval) IS
    'The last read time at which a connection is current: -infinity when its last run failed after its last success, NULL when nothing succeeded (unknown), else the last success plus max_staleness (DOMAIN.md section 5).';

CREATE FUNCTION refproj.freshness_status(p_fresh_until timestamptz, p_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- p_fresh_until appears once: PostgreSQL does not inline a function that would evaluate an
    -- expensive argument (a fresh_until call) twice. NULL (nothing succeeded) is unknown.
    SELECT CASE p_at <= p_fresh_until
        WHEN true THEN 'current'
        WHEN false THEN 'stale'
        ELSE 'unknown'
    END
$$;
COMMENT ON FUNCTION refproj.freshness_status(timestamptz, timestamptz) IS
    'current, stale or unknown for a connection read at p_at, from its refproj.fresh_until (DOMAIN.md section 5).';

-- extract(epoch ...) has six decimals (86400.000000), where a JSON reader prints 86400.0: the
-- served number is written the way the reader writes it back, so every body agrees.
CREATE FUNCTION refproj.json_seconds(p_duration interval)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT round(extract(epoch FROM p_duration),
                 greatest(scale(trim_scale(extract(epoch FROM p_duration))), 1))
$$;
COMMENT ON FUNCTION refproj.json_seconds(interval) IS
    'A duration in seconds as served JSON: no trailing zeros beyond one decimal (86400.0, 0.25), as JSON readers print it.';

CREATE FUNCTION refproj.freshness_object(
    p_status text, p_last_run jsonb, p_last_successful_run jsonb, p_max_staleness interval)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object(
        'status', p_status,
        'captured_at', refproj.json_time_text(p_last_successful_run -> 'last_at'),
        'last_attempted_at', refproj.json_time_text(p_last_run -> 'last_at'),
        'max_staleness_seconds', refproj.json_seconds(p_max_staleness))
$$;
COMMENT ON FUNCTION refproj.freshness_object(text, jsonb, jsonb, interval) IS
    'The freshness object {status, captured_at, last_attempted_at, max_staleness_seconds}.';

CREATE FUNCTION refproj.health_at(p_status text, p_last_run jsonb, p_freshness_status text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_status = 'revoked' THEN jsonb_build_object('state', 'revoked', 'reason', 'connection_revoked')
        WHEN p_status = 'paused' THEN jsonb_build_object('state', 'paused', 'reason', 'connection_paused')
        WHEN p_status = 'draft' THEN jsonb_build_object('state', 'setup', 'reason', 'connection_draft')
        WHEN p_last_run ->> 'status' = 'in_progress'
            THEN jsonb_build_object('state', 'running', 'reason', 'run_in_progress')
        WHEN p_last_run IS NULL THEN jsonb_build_object('state', 'idle', 'reason', 'never_run')
        WHEN refproj.failed_like(p_last_run ->> 'status')
            THEN jsonb_build_object('state', 'failing',
                                    'reason', COALESCE(p_last_run ->> 'failure_reason', p_last_run ->> 'status'))
        WHEN p_freshness_status = 'stale'
            THEN jsonb_build_object('state', 'stale', 'reason', 'past_max_staleness')
        WHEN p_freshness_status = 'current'
            THEN jsonb_build_object('state', 'healthy', 'reason', NULL)
        ELSE jsonb_build_object('state', 'unknown', 'reason', 'no_successful_run')
    END
$$;
COMMENT ON FUNCTION refproj.health_at(text, jsonb, text) IS
    'Health {state, reason} from connection status, last run and freshness status; first rule that applies (DOMAIN.md section 5).';

