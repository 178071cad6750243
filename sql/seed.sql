-- refproj: the deterministic workload generator (BENCHMARK.md "Workloads").
--
-- refproj.seed splits this file on its "-- name: <query>" headers (each followed by a one-line
-- description) and runs the queries in file order, in one transaction. Every query is a single
-- statement with psycopg named parameters, so a literal percent sign would have to be doubled;
-- none is needed: the file uses mod() and || instead.
--
-- Determinism: nothing here reads random() or now(). Every choice is a hash of (seed, key, salt)
-- through pg_temp.seed_unit, every timestamp is the base parameter minus an offset, and event_seq
-- values are assigned explicitly, so one (profile, history factor, seed) always writes the same
-- rows, whatever plan PostgreSQL picks.
--
-- Shape: the plan is built in three temporary tables (seed_connectors, seed_connections,
-- seed_runs) from the parameters in a fourth (seed_params), and the source tables are filled
-- from them with set-based INSERT ... SELECT.
-- Connectors 1-4 and connections 1-8 are the readable demo set (the whole tiny profile and a
-- prefix of every larger one); every other connector and connection is numbered and drawn.


-- name: prepare_transaction
-- Pin the time zone (run ids are formatted from timestamps), give sorts memory, skip JIT compiling.
SELECT
    set_config('TimeZone', 'UTC', true),
    set_config('jit', 'off', true),
    set_config('work_mem', '256MB', true),
    set_config('max_parallel_workers_per_gather', '0', true);


-- name: create_seed_unit
-- The generator's only source of chance: a number in [0, 1) fixed by (seed, key, salt).
CREATE OR REPLACE FUNCTION pg_temp.seed_unit(p_seed bigint, p_key bigint, p_salt int)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (hashint8extended(p_key * 64 + p_salt, p_seed) & 2147483647)::double precision / 2147483648
$$;


-- name: create_seed_pick
-- A whole number in [0, p_n) fixed by (seed, key, salt).
CREATE OR REPLACE FUNCTION pg_temp.seed_pick(p_seed bigint, p_key bigint, p_salt int, p_n int)
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT floor(pg_temp.seed_unit(p_seed, p_key, p_salt) * p_n)::int
$$;


-- name: create_seed_fit
-- A size as the column it goes to holds it: beyond an integer or smallint column's range, its largest value.
CREATE OR REPLACE FUNCTION pg_temp.seed_fit(p_value numeric, p_relation regclass, p_column name)
RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    -- An adopted table may have integer or smallint where refproj creates bigint
    -- (sql/0001_source_tables.sql): capping sizes lets the seed fill it; bigint ones are unchanged.
    SELECT LEAST(p_value, CASE a.atttypid WHEN 'smallint'::regtype THEN 32767
                                          WHEN 'integer'::regtype THEN 2147483647
                                          ELSE 9223372036854775807 END)::bigint
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid = p_relation AND a.attname = p_column
$$;


-- name: plan_params
-- The workload's parameters: the one row every plan below reads (as p).
CREATE TEMP TABLE seed_params ON COMMIT DROP AS
SELECT
    %(seed)s::bigint AS seed,
    %(base)s::timestamptz AS base,
    %(connectors)s::int AS connectors,
    %(connections)s::int AS connections,
    %(runs)s::bigint AS runs,
    %(events_per_run)s::int AS events_per_run,
    %(long_run_every)s::int AS long_run_every;


-- name: analyze_params
-- Tell the planner that seed_params holds one row (a table never analyzed counts as ten pages).
ANALYZE seed_params;


-- name: foreign_references
-- Other tables' foreign keys onto a source table, which TRUNCATE refuses (0A000): --replace names them first.
WITH source AS (  -- a partition counts as its partitioned table

    SELECT unnest(%(source_tables)s::text[])::regclass AS rel
)
SELECT DISTINCT
    COALESCE(pg_partition_root(c.conrelid), c.conrelid)::regclass::text AS referencing,
    COALESCE(pg_partition_root(c.confrelid), c.confrelid)::regclass::text AS referenced,
    c.conname AS constraint_name
FROM pg_constraint AS c
WHERE c.contype = 'f'
  AND COALESCE(pg_partition_root(c.confrelid), c.confrelid) IN (SELECT rel FROM source)
  AND COALESCE(pg_partition_root(c.conrelid), c.conrelid) NOT IN (SELECT rel FROM source)
ORDER BY 1, 2, 3;


-- name: refuse_populated
-- Whether the source tables already hold connectors (seeding then refuses).
SELECT EXISTS (SELECT 1 FROM connectors) AS populated;


-- name: plan_connectors
-- The connectors: amazon, chase, github and laptop, then numbered sources with drawn manifests.
CREATE TEMP TABLE seed_connectors ON COMMIT DROP AS
WITH
-- amazon is the browser connector whose manifest sets its own profile key base; github lists its
-- streams as objects; chase and laptop set a refresh policy.
demo_connectors (connector_no, connector_id, display_name, browser, profile_key, streams,
                 streams_as_objects, max_staleness_seconds) AS (
    VALUES
        (1, 'amazon', 'Amazon', true, 'amazon-shop',
         ARRAY['orders', 'returns', 'digital_orders'], false, 86400),
        (2, 'chase', 'Chase', false, NULL,
         ARRAY['accounts', 'transactions', 'statements'], false, 43200),
        (3, 'github', 'GitHub', false, NULL,
         ARRAY['repositories', 'issues', 'stars'], true, NULL),
        (4, 'laptop', 'Laptop', false, NULL,
         ARRAY['files', 'applications', 'browser_history'], false, 21600)
),
stream_pool AS (
    SELECT ARRAY['messages', 'contacts', 'events', 'files', 'photos', 'orders', 'transactions',
                 'locations', 'posts', 'playlists', 'workouts', 'documents'] AS names
),
generic_connectors AS (
    SELECT
        n AS connector_no,
        'src_' || lpad(n::text, 4, '0') AS connector_id,
        'Source ' || n AS display_name,
        drawn.browser,
        CASE WHEN drawn.browser AND pg_temp.seed_unit(p.seed, n, 2) < 0.25
             THEN 'profile-' || lpad(n::text, 4, '0') END AS profile_key,
        ARRAY(
            SELECT pool.names[1 + mod(drawn.first_stream + i, 12)]
            FROM generate_series(0, drawn.stream_count - 1) AS i
            ORDER BY i
        ) AS streams,
        pg_temp.seed_unit(p.seed, n, 5) < 0.2 AS streams_as_objects,
        CASE WHEN pg_temp.seed_unit(p.seed, n, 6) < 0.5
             THEN (ARRAY[3600, 21600, 43200, 86400, 604800])[1 + pg_temp.seed_pick(p.seed, n, 7, 5)]
        END AS max_staleness_seconds
    FROM seed_params AS p
    CROSS JOIN stream_pool AS pool
    CROSS JOIN generate_series(5, p.connectors) AS n
    CROSS JOIN LATERAL (
        SELECT
            pg_temp.seed_unit(p.seed, n, 1) < 0.3 AS browser,
            1 + pg_temp.seed_pick(p.seed, n, 3, 5) AS stream_count,
            pg_temp.seed_pick(p.seed, n, 4, 12) AS first_stream
    ) AS drawn
),
all_connectors AS (
    SELECT * FROM demo_connectors
    UNION ALL
    SELECT * FROM generic_connectors
)
SELECT
    c.connector_no,
    c.connector_id,
    c.display_name,
    c.browser,
    c.profile_key,
    c.streams,
    jsonb_strip_nulls(jsonb_build_object(
        'streams', CASE
            WHEN c.streams_as_objects THEN (
                SELECT jsonb_agg(jsonb_build_object('name', s.name) ORDER BY s.position)
                FROM unnest(c.streams) WITH ORDINALITY AS s (name, position))
            ELSE to_jsonb(c.streams)
        END,
        'capabilities', CASE
            WHEN c.profile_key IS NOT NULL
                THEN jsonb_build_object('browser_surface', jsonb_build_object('profile_key', c.profile_key))
            WHEN c.browser
                THEN jsonb_build_object('browser_surface', jsonb_build_object('enabled', true))
        END,
        'refresh_policy', CASE
            WHEN c.max_staleness_seconds IS NOT NULL
                THEN jsonb_build_object('max_staleness_seconds', c.max_staleness_seconds)
        END)) AS manifest
FROM all_connectors AS c
ORDER BY c.connector_no;


-- name: insert_connectors
-- Write the planned connectors.
INSERT INTO connectors (connector_id, display_name, manifest)
SELECT sc.connector_id, sc.display_name, sc.manifest
FROM seed_connectors AS sc
ORDER BY sc.connector_no;


-- name: plan_connections
-- The connections with their role, run count, cadence and the outcome of their latest run.
CREATE TEMP TABLE seed_connections ON COMMIT DROP AS
WITH
-- One connection per health state at base + 1 hour, plus a retired setup attempt:
-- amazon_work healthy and amazon_personal failing (sibling browser connections), amazon_setup a
-- retired browser enrollment shell, chase_savings paused (half its runs name the connection only
-- in data.connection_id), chase_joint revoked, github_personal running (its older half is legacy
-- runs without identity), laptop_home a draft (setup) and laptop_work idle (never run).
-- role is the connection's status with idle (active, never run) and shell (a retired setup
-- attempt, always exactly one run) set apart. weight is the connection's share of the runs (0:
-- none); quiet_minutes is how long before the base time its latest run ended.
demo_connections (connection_no, connector_no, connector_instance_id, display_name, role, source_kind,
                  binding_kind, weight, cadence_minutes, quiet_minutes, last_outcome, legacy_share,
                  data_id_share) AS (
    VALUES
        (1, 1, 'amazon_work', 'Amazon (work)', 'active', 'browser_collector',
         'browser_profile', 5, 360, 20, 'succeeded', 0.0, 0.0),
        (2, 1, 'amazon_personal', 'Amazon (personal)', 'active', 'browser_collector',
         'browser_profile', 4, 480, 45, 'surface_failed', 0.0, 0.0),
        (3, 1, 'amazon_setup', NULL, 'shell', 'browser_collector',
         'browser_enrollment_shell', 0, 360, 2880, 'orphaned', 0.0, 0.0),
        (4, 2, 'chase_savings', 'Chase savings', 'paused', 'account',
         'oauth', 3, 720, 4320, 'succeeded', 0.0, 0.5),
        (5, 2, 'chase_joint', 'Chase joint (closed)', 'revoked', 'account',
         'oauth', 2, 720, 28800, 'failed', 0.0, 0.0),
        (6, 3, 'github_personal', 'GitHub (personal)', 'active', 'account',
         'oauth', 4, 240, 0, 'in_progress', 0.5, 0.0),
        (7, 4, 'laptop_home', 'Home laptop', 'draft', 'local_device',
         'device_pairing', 0, 360, 0, NULL, 0.0, 0.0),
        (8, 4, 'laptop_work', 'Work laptop', 'idle', 'local_device',
         'device_pairing', 0, 360, 0, NULL, 0.0, 0.0)
),
-- Connections 9.. go first one to each numbered connector, then to drawn connectors (siblings).
generic_draws AS (
    SELECT
        n AS connection_no,
        CASE WHEN n - 8 <= p.connectors - 4 THEN n - 4
             ELSE 5 + pg_temp.seed_pick(p.seed, n, 20, p.connectors - 4)
        END AS connector_no,
        n - 8 <= p.connectors - 4 AS first_of_connector,
        pg_temp.seed_unit(p.seed, n, 21) AS role_draw,
        pg_temp.seed_unit(p.seed, n, 22) AS kind_draw,
        pg_temp.seed_unit(p.seed, n, 23) AS outcome_draw
    FROM seed_params AS p
    CROSS JOIN generate_series(9, p.connections) AS n
),
generic_connections AS (
    SELECT
        g.connection_no,
        g.connector_no,
        CASE WHEN g.first_of_connector AND pg_temp.seed_unit(p.seed, g.connection_no, 24) < 0.25
             THEN sc.connector_id
             ELSE sc.connector_id || '_' || lpad(g.connection_no::text, 5, '0')
        END AS connector_instance_id,
        CASE WHEN pg_temp.seed_unit(p.seed, g.connection_no, 25) >= 0.25
             THEN 'Account ' || g.connection_no END AS display_name,
        role.role,
        kind.source_kind,
        CASE
            WHEN role.role = 'shell' AND sc.browser THEN 'browser_enrollment_shell'
            WHEN role.role = 'shell' AND g.kind_draw < 0.5 THEN 'static_secret_draft'
            WHEN role.role = 'shell' THEN 'manual_upload_draft'
            WHEN kind.source_kind = 'browser_collector' THEN 'browser_profile'
            WHEN kind.source_kind = 'account' THEN 'oauth'
            WHEN kind.source_kind = 'local_device' THEN 'device_pairing'
            ELSE 'manual_upload'
        END AS binding_kind,
        CASE WHEN role.role IN ('active', 'paused', 'revoked')
             THEN 1 + pg_temp.seed_pick(p.seed, g.connection_no, 26, 9) ELSE 0 END AS weight,
        120 + pg_temp.seed_pick(p.seed, g.connection_no, 27, 600) AS cadence_minutes,
        CASE role.role
            WHEN 'active' THEN 5 + pg_temp.seed_pick(p.seed, g.connection_no, 28, 55)
            WHEN 'paused' THEN 4320 + pg_temp.seed_pick(p.seed, g.connection_no, 28, 10080)
            WHEN 'revoked' THEN 14400 + pg_temp.seed_pick(p.seed, g.connection_no, 28, 72000)
            WHEN 'shell' THEN 1440 + pg_temp.seed_pick(p.seed, g.connection_no, 28, 43200)
            ELSE 0
        END AS quiet_minutes,
        CASE
            WHEN role.role = 'shell' THEN 'orphaned'
            WHEN role.role IN ('paused', 'revoked') THEN
                CASE WHEN g.outcome_draw < 0.3 THEN 'failed' ELSE 'succeeded' END
            WHEN role.role <> 'active' THEN NULL
            WHEN g.outcome_draw < 0.05 THEN 'in_progress'
            WHEN g.outcome_draw < 0.09 THEN 'failed'
            WHEN g.outcome_draw < 0.13 THEN CASE WHEN sc.browser THEN 'surface_failed' ELSE 'failed' END
            WHEN g.outcome_draw < 0.16 THEN 'orphaned'
            ELSE 'succeeded'
        END AS last_outcome,
        CASE WHEN sc.browser THEN 0.0 ELSE 0.3 END AS legacy_share,
        0.1 AS data_id_share
    FROM generic_draws AS g
    CROSS JOIN seed_params AS p
    JOIN seed_connectors AS sc
        ON sc.connector_no = g.connector_no
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN g.role_draw < 0.04 THEN 'draft'
            WHEN g.role_draw < 0.08 THEN 'paused'
            WHEN g.role_draw < 0.12 THEN 'revoked'
            WHEN g.role_draw < 0.16 THEN 'shell'
            WHEN g.role_draw < 0.19 THEN 'idle'
            ELSE 'active'
        END AS role
    ) AS role
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN sc.browser THEN 'browser_collector'
            WHEN g.kind_draw < 0.7 THEN 'account'
            WHEN g.kind_draw < 0.9 THEN 'local_device'
            ELSE 'manual'
        END AS source_kind
    ) AS kind
),
all_connections AS (
    SELECT * FROM demo_connections
    UNION ALL
    SELECT * FROM generic_connections
),
-- Share the runs left after the fixed ones by cumulative weight, so they add up exactly.
allocated AS (
    SELECT
        ac.*,
        CASE ac.role WHEN 'active' THEN 'active' WHEN 'idle' THEN 'active' WHEN 'shell' THEN 'revoked'
                     ELSE ac.role END AS status,
        sum(ac.weight) OVER (ORDER BY ac.connection_no) AS cumulative_weight,
        sum(ac.weight) OVER () AS total_weight,
        greatest(p.runs - count(*) FILTER (WHERE ac.role = 'shell') OVER (), 0) AS weighted_runs,
        count(*) FILTER (WHERE ac.role IN ('active', 'idle')) OVER (PARTITION BY ac.connector_no)
            AS active_connections
    FROM all_connections AS ac
    CROSS JOIN seed_params AS p
),
counted AS (
    SELECT
        a.*,
        CASE
            WHEN a.role = 'shell' THEN 1
            WHEN a.weight = 0 THEN 0
            ELSE (a.weighted_runs * a.cumulative_weight / a.total_weight
                  - a.weighted_runs * (a.cumulative_weight - a.weight) / a.total_weight)::int
        END AS run_count
    FROM allocated AS a
)
SELECT
    c.connection_no,
    c.connector_no,
    sc.connector_id,
    c.connector_instance_id,
    c.display_name,
    c.role,
    c.status,
    c.source_kind,
    jsonb_build_object('kind', c.binding_kind) AS source_binding,
    sc.browser,
    CASE WHEN sc.browser
         THEN COALESCE(sc.profile_key, sc.connector_id)
              || CASE WHEN c.connector_instance_id = sc.connector_id THEN ''
                      ELSE ':' || c.connector_instance_id END
    END AS profile_key,
    sc.streams,
    c.run_count,
    c.cadence_minutes,
    c.quiet_minutes,
    c.last_outcome,
    -- Legacy connector-wide runs only where they are attributed: the sole active connection.
    CASE WHEN c.role = 'active' AND c.active_connections = 1 THEN c.legacy_share ELSE 0.0 END
        AS legacy_share,
    c.data_id_share,
    CASE
        WHEN c.run_count > 0
            THEN p.base - interval '1 minute' * (c.quiet_minutes + (c.run_count + 1) * c.cadence_minutes + 1440)
        ELSE p.base - interval '1 minute' * (1440 + pg_temp.seed_pick(p.seed, c.connection_no, 29, 7200))
    END AS created_at,
    CASE c.role
        WHEN 'paused' THEN p.base - interval '1 minute' * (c.quiet_minutes - 1440)
        WHEN 'revoked' THEN p.base - interval '1 minute' * (c.quiet_minutes - 1440)
        WHEN 'shell' THEN p.base - interval '1 minute' * (c.quiet_minutes - 60)
    END AS status_changed_at
FROM counted AS c
CROSS JOIN seed_params AS p
JOIN seed_connectors AS sc
    ON sc.connector_no = c.connector_no
ORDER BY c.connection_no;


-- name: insert_connections
-- Write the planned connections; paused and revoked ones were updated when their status changed.
INSERT INTO connector_instances (
    connector_instance_id, connector_id, display_name, status, source_kind, source_binding,
    created_at, updated_at, revoked_at)
SELECT
    c.connector_instance_id,
    c.connector_id,
    c.display_name,
    c.status,
    c.source_kind,
    c.source_binding,
    c.created_at,
    COALESCE(c.status_changed_at, c.created_at),
    CASE WHEN c.status = 'revoked' THEN c.status_changed_at END
FROM seed_connections AS c
ORDER BY c.connection_no;


-- name: plan_runs
-- Every run: owner, outcome, identity style, size, timing, id and its first event_seq offset.
CREATE TEMP TABLE seed_runs ON COMMIT DROP AS
WITH
-- j counts back from the connection's latest run (j = 0); run_key is unique per run. Earlier
-- runs draw their outcome; the latest has its connection's. Legacy runs (no identity) are the
-- oldest legacy_share of a connection's runs.
drawn AS MATERIALIZED (
    SELECT
        c.connection_no,
        c.connector_id,
        c.connector_instance_id,
        c.status,
        c.browser,
        c.profile_key,
        c.streams,
        c.cadence_minutes,
        c.quiet_minutes,
        j,
        k.run_key,
        CASE
            WHEN j = 0 THEN c.last_outcome
            WHEN c.browser THEN CASE
                WHEN k.outcome_draw < 0.78 THEN 'succeeded'
                WHEN k.outcome_draw < 0.86 THEN 'failed'
                WHEN k.outcome_draw < 0.95 THEN 'surface_failed'
                ELSE 'orphaned' END
            ELSE CASE
                WHEN k.outcome_draw < 0.85 THEN 'succeeded'
                WHEN k.outcome_draw < 0.95 THEN 'failed'
                ELSE 'orphaned' END
        END AS outcome,
        CASE
            WHEN j > 0 AND j >= c.run_count * (1 - c.legacy_share) THEN 'legacy'
            WHEN pg_temp.seed_unit(p.seed, k.run_key, 31) < c.data_id_share THEN 'data'
            ELSE 'column'
        END AS identity_mode
    FROM seed_connections AS c
    CROSS JOIN seed_params AS p
    CROSS JOIN LATERAL generate_series(0, c.run_count - 1) AS j
    CROSS JOIN LATERAL (
        SELECT
            c.connection_no::bigint * 16777216 + j AS run_key,
            pg_temp.seed_unit(p.seed, c.connection_no::bigint * 16777216 + j, 30) AS outcome_draw
    ) AS k
),
-- The long runs: one per long_run_every runs (at least one), drawn among the earlier succeeded
-- runs of active connections.
long_runs AS (
    SELECT d.run_key
    FROM drawn AS d
    CROSS JOIN seed_params AS p
    WHERE d.j > 0
      AND d.outcome = 'succeeded'
      AND d.status = 'active'
    ORDER BY pg_temp.seed_unit(p.seed, d.run_key, 32), d.run_key
    LIMIT (SELECT greatest(1, round(p.runs::numeric / p.long_run_every)) FROM seed_params AS p)
),
-- Sizes and times. last_at is when the run's last event happened (for a run in progress: its
-- newest event so far); the earlier runs of a connection end one cadence apart, jittered.
sized AS MATERIALIZED (
    SELECT
        d.*,
        l.run_key IS NOT NULL AS is_long,
        size.middle_events,
        1 + size.middle_events + (d.outcome IN ('succeeded', 'failed', 'surface_failed'))::int AS event_count,
        CASE
            WHEN d.outcome = 'in_progress'
                THEN p.base - interval '1 millisecond' * (300000 + pg_temp.seed_pick(p.seed, d.run_key, 34, 1200000))
            ELSE p.base - interval '1 millisecond' * round(60000 * (
                d.quiet_minutes + d.j * d.cadence_minutes
                + 0.1 * d.cadence_minutes * pg_temp.seed_unit(p.seed, d.run_key, 34)))
        END AS last_at,
        CASE
            WHEN l.run_key IS NOT NULL THEN interval '500 milliseconds' * (size.middle_events + 1)
            WHEN d.outcome = 'in_progress' THEN interval '10 minutes'
            ELSE interval '1 millisecond' * (60000 + pg_temp.seed_pick(p.seed, d.run_key, 35, 1140000))
        END AS duration
    FROM drawn AS d
    CROSS JOIN seed_params AS p
    LEFT JOIN long_runs AS l
        ON l.run_key = d.run_key
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN l.run_key IS NOT NULL THEN 5000 + pg_temp.seed_pick(p.seed, d.run_key, 33, 500)
            WHEN d.browser THEN greatest(2, 1 + pg_temp.seed_pick(p.seed, d.run_key, 33, 2 * p.events_per_run - 5))
            ELSE 1 + pg_temp.seed_pick(p.seed, d.run_key, 33, 2 * p.events_per_run - 5)
        END AS middle_events
    ) AS size
)
SELECT
    row_number() OVER run_order AS run_no,
    sum(s.event_count) OVER run_order - s.event_count AS events_before,
    'run_' || to_char(s.last_at - s.duration, 'YYYYMMDD"T"HH24MISS') || '_' || to_hex(s.run_key) AS run_id,
    s.connection_no,
    s.connector_id,
    s.connector_instance_id,
    s.j,
    s.run_key,
    s.outcome,
    s.identity_mode,
    s.is_long,
    s.browser,
    s.profile_key,
    s.streams,
    s.event_count,
    s.last_at - s.duration AS started_at,
    s.last_at,
    CASE WHEN s.identity_mode = 'data'
         THEN jsonb_build_object('connection_id', s.connector_instance_id)
         ELSE '{}'::jsonb END AS identity_data,
    CASE s.outcome
        WHEN 'succeeded' THEN 'run.completed'
        WHEN 'failed' THEN 'run.failed'
        WHEN 'surface_failed' THEN 'run.browser_surface_failed'
    END AS terminal_type,
    CASE WHEN s.outcome IN ('succeeded', 'failed', 'surface_failed') THEN s.outcome END AS terminal_status,
    CASE s.outcome
        WHEN 'succeeded' THEN jsonb_build_object(
            'records_emitted', s.middle_events * (3 + pg_temp.seed_pick(p.seed, s.run_key, 36, 40)),
            'known_gaps', CASE WHEN pg_temp.seed_unit(p.seed, s.run_key, 37) < 0.1
                               THEN jsonb_build_array(s.streams[1] || ':rate_limited')
                               ELSE '[]'::jsonb END,
            'collection_facts', jsonb_build_object(
                'streams_collected', cardinality(s.streams),
                'pages_fetched', s.middle_events + pg_temp.seed_pick(p.seed, s.run_key, 38, 20),
                'duration_seconds', round(extract(epoch FROM s.duration))))
        WHEN 'failed' THEN jsonb_build_object(
            'reason', (ARRAY['auth_expired', 'rate_limited', 'upstream_unavailable', 'timeout',
                             'schema_mismatch'])[1 + pg_temp.seed_pick(p.seed, s.run_key, 39, 5)])
        WHEN 'surface_failed' THEN jsonb_build_object(
            'browser_surface', jsonb_build_object(
                'browser_surface_profile_key', s.profile_key,
                'browser_surface_status', 'login_required',
                'browser_surface_wait_reason',
                (ARRAY['mfa_timeout', 'captcha_required', 'password_changed'])
                    [1 + pg_temp.seed_pick(p.seed, s.run_key, 39, 3)]))
    END AS terminal_data,
    jsonb_build_object(
        'trigger', CASE WHEN pg_temp.seed_unit(p.seed, s.run_key, 40) < 0.9 THEN 'schedule' ELSE 'manual' END,
        'connector_version', '1.' || pg_temp.seed_pick(p.seed, s.connection_no, 41, 9)) AS started_data
FROM sized AS s
CROSS JOIN seed_params AS p
WINDOW run_order AS (ORDER BY s.last_at - s.duration, s.run_key)
ORDER BY s.last_at - s.duration, s.run_key;


-- name: next_event_seq
-- Reserve the first event_seq of this seed: the sequence's next value, else (an adopted event_seq without one) the value after the highest.
SELECT COALESCE(nextval(pg_get_serial_sequence('spine_events', 'event_seq')),
                (SELECT COALESCE(max(e.event_seq), 0) + 1 FROM spine_events AS e)) AS first_event_seq;


-- name: insert_lifecycle_events
-- Spine events without a run: each connection's creation, pause and revocation, oldest first.
INSERT INTO spine_events (
    event_seq, event_id, event_type, occurred_at, recorded_at, status, actor_type, actor_id,
    source_kind, source_id, run_id, connector_instance_id, data)
SELECT
    %(first_event_seq)s::bigint - 1 + row_number() OVER (ORDER BY l.occurred_at, c.connection_no, l.action),
    'evt_' || c.connector_instance_id || '.' || l.action,
    'connection.' || l.action,
    l.occurred_at,
    l.occurred_at + interval '40 milliseconds',
    'ok',
    'owner',
    'owner',
    'connection',
    c.connector_instance_id,
    NULL,
    c.connector_instance_id,
    jsonb_build_object('connector_id', c.connector_id, 'status', l.status)
FROM seed_connections AS c
CROSS JOIN LATERAL (
    VALUES
        ('created', c.created_at, CASE WHEN c.status = 'draft' THEN 'draft' ELSE 'active' END),
        (CASE c.status WHEN 'paused' THEN 'paused' WHEN 'revoked' THEN 'revoked' END,
         c.status_changed_at, c.status)
) AS l (action, occurred_at, status)
WHERE l.action IS NOT NULL
ORDER BY 1;


-- name: insert_run_events
-- Every run's events: run.started, progress and sub-resource events, then its terminal event.
INSERT INTO spine_events (
    event_seq, event_id, event_type, occurred_at, recorded_at, status, actor_type, actor_id,
    source_kind, source_id, run_id, connector_instance_id, data)
-- Browser runs open a surface under their profile key first. A quarter of the progress events
-- carry no identity, as older writers did; the run still owns them through its single identity.
SELECT
    %(run_event_seq)s::bigint + r.events_before + e.n,
    r.run_id || '.' || e.n,
    step.event_type,
    step.occurred_at,
    step.occurred_at + interval '1 millisecond' * (20 + mod(e.n * 37, 900)),
    CASE
        WHEN step.event_type = r.terminal_type THEN r.terminal_status
        WHEN step.event_type = 'run.browser_surface_waiting' THEN 'waiting'
        ELSE 'ok'
    END,
    'connector',
    r.connector_id,
    'connector',
    r.connector_id,
    r.run_id,
    CASE WHEN r.identity_mode = 'column'
              AND NOT (step.event_type = 'run.progress_reported' AND mod(e.n, 4) = 3)
         THEN r.connector_instance_id END,
    CASE step.event_type
        WHEN 'run.started' THEN r.started_data || r.identity_data
        WHEN 'run.progress_reported' THEN
            CASE WHEN mod(e.n, 4) = 3
                 THEN jsonb_build_object('stream', step.stream, 'records_so_far', e.n * 25)
                 ELSE jsonb_build_object('stream', step.stream, 'records_so_far', e.n * 25) || r.identity_data
            END
        WHEN 'run.stream_started' THEN jsonb_build_object('stream', step.stream) || r.identity_data
        WHEN 'run.browser_surface_opened' THEN jsonb_build_object(
            'browser_surface', jsonb_build_object(
                'browser_surface_profile_key', r.profile_key,
                'browser_surface_status', 'opening')) || r.identity_data
        WHEN 'run.browser_surface_ready' THEN jsonb_build_object(
            'browser_surface', jsonb_build_object(
                'browser_surface_profile_key', r.profile_key,
                'browser_surface_status', 'ready')) || r.identity_data
        WHEN 'run.browser_surface_waiting' THEN jsonb_build_object(
            'browser_surface', jsonb_build_object(
                'browser_surface_profile_key', r.profile_key,
                'browser_surface_status', 'waiting',
                'browser_surface_wait_reason', 'login_prompt')) || r.identity_data
        ELSE r.terminal_data || r.identity_data
    END
FROM seed_runs AS r
CROSS JOIN LATERAL generate_series(0, r.event_count - 1) AS e (n)
CROSS JOIN LATERAL (
    SELECT
        CASE
            WHEN e.n = 0 THEN 'run.started'
            WHEN e.n = r.event_count - 1 AND r.terminal_type IS NOT NULL THEN r.terminal_type
            WHEN r.browser AND e.n = 1 THEN 'run.browser_surface_opened'
            WHEN r.browser AND e.n = 2 AND r.outcome = 'surface_failed' THEN 'run.browser_surface_waiting'
            WHEN r.browser AND e.n = 2 THEN 'run.browser_surface_ready'
            WHEN mod(e.n, 5) = 3 THEN 'run.stream_started'
            ELSE 'run.progress_reported'
        END AS event_type,
        r.started_at + (r.last_at - r.started_at) * (e.n::double precision / greatest(r.event_count - 1, 1))
            AS occurred_at,
        r.streams[1 + mod(e.n, cardinality(r.streams))] AS stream
) AS step;


-- name: set_event_seq
-- Move the identity sequence past the seeded events, so later inserts get fresh event_seq values (without one, setval(NULL) does nothing).
SELECT setval(pg_get_serial_sequence('spine_events', 'event_seq'), %(last_event_seq)s::bigint);


-- name: insert_active_runs
-- The controller's view of the runs in progress: one per connection at most.
INSERT INTO controller_active_runs (connector_instance_id, connector_id, run_id, started_at)
SELECT r.connector_instance_id, r.connector_id, r.run_id, r.started_at
FROM seed_runs AS r
WHERE r.outcome = 'in_progress'
ORDER BY r.run_no;


-- name: insert_retained_streams
-- Retained size per manifest stream of every connection that has collected (not drafts, shells or idle).
INSERT INTO retained_size_stream (
    connector_instance_id, stream, connector_id, record_count, current_record_json_bytes,
    record_history_json_bytes, blob_bytes, computed_at)
SELECT
    c.connector_instance_id,
    s.stream,
    c.connector_id,
    pg_temp.seed_fit(sized.record_count, 'retained_size_stream', 'record_count'),
    pg_temp.seed_fit(sized.record_count * (200 + pg_temp.seed_pick(p.seed, sized.stream_key, 51, 1800)),
                     'retained_size_stream', 'current_record_json_bytes'),
    pg_temp.seed_fit(sized.record_count * (50 + pg_temp.seed_pick(p.seed, sized.stream_key, 52, 3000)),
                     'retained_size_stream', 'record_history_json_bytes'),
    pg_temp.seed_fit(
        CASE WHEN pg_temp.seed_unit(p.seed, sized.stream_key, 53) < 0.3
             THEN sized.record_count * (1000 + pg_temp.seed_pick(p.seed, sized.stream_key, 54, 200000))
             ELSE 0 END,
        'retained_size_stream', 'blob_bytes'),
    p.base - interval '30 minutes'
FROM seed_connections AS c
CROSS JOIN seed_params AS p
CROSS JOIN LATERAL unnest(c.streams) WITH ORDINALITY AS s (stream, position)
CROSS JOIN LATERAL (
    SELECT
        c.connection_no::bigint * 64 + s.position AS stream_key,
        (10 + pg_temp.seed_pick(p.seed, c.connection_no::bigint * 64 + s.position, 50, 100000))::bigint
            AS record_count
) AS sized
WHERE c.role IN ('active', 'paused', 'revoked')
  AND c.run_count > 0
ORDER BY c.connection_no, s.position;


-- name: insert_retained_connections
-- Retained size per connection: the sum over its streams.
INSERT INTO retained_size_connection (
    connector_instance_id, connector_id, record_count, current_record_json_bytes,
    record_history_json_bytes, blob_bytes, computed_at)
SELECT
    c.connector_instance_id,
    c.connector_id,
    pg_temp.seed_fit(sum(s.record_count), 'retained_size_connection', 'record_count'),
    pg_temp.seed_fit(sum(s.current_record_json_bytes), 'retained_size_connection', 'current_record_json_bytes'),
    pg_temp.seed_fit(sum(s.record_history_json_bytes), 'retained_size_connection', 'record_history_json_bytes'),
    pg_temp.seed_fit(sum(s.blob_bytes), 'retained_size_connection', 'blob_bytes'),
    max(s.computed_at)
FROM seed_connections AS c
JOIN retained_size_stream AS s
    ON s.connector_instance_id = c.connector_instance_id
GROUP BY c.connection_no, c.connector_instance_id, c.connector_id
ORDER BY c.connection_no;


-- name: analyze_sources
-- Give the planner statistics for the freshly loaded source tables.
ANALYZE connectors, connector_instances, spine_events, controller_active_runs,
    retained_size_connection, retained_size_stream;


-- name: count_rows
-- What the source tables now hold.
SELECT
    (SELECT count(*) FROM connectors) AS connectors,
    (SELECT count(*) FROM connector_instances) AS connections,
    (SELECT count(*)
     FROM (SELECT DISTINCT e.source_id, e.run_id
           FROM spine_events AS e
           WHERE e.run_id IS NOT NULL) AS runs) AS runs,
    (SELECT count(*) FROM spine_events) AS spine_events,
    (SELECT count(*) FROM controller_active_runs) AS active_runs,
    (SELECT count(*) FROM retained_size_connection) AS retained_connections,
    (SELECT count(*) FROM retained_size_stream) AS retained_streams;


-- name: drop_helpers
-- Remove the session's helper functions (the plan tables drop themselves at commit).
DROP FUNCTION pg_temp.seed_pick(bigint, bigint, int, int), pg_temp.seed_unit(bigint, bigint, int),
    pg_temp.seed_fit(numeric, regclass, name);
