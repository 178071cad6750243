-- ---------------------------------------------------------------------------------------------
-- Which runs belong to which connection (DOMAIN.md section 4)
-- ---------------------------------------------------------------------------------------------

-- Every connection (including retired setup attempts, which still claim their own runs) with
-- its expected browser profile key, whether it is its connector's only active connection, and so
-- the match tokens it accepts: every reader attributes runs by these (a plain projection over the
-- window, so PostgreSQL pulls it up and computes the tokens only where they are read).
CREATE VIEW refproj.connection_keys AS
SELECT keys.*,
       refproj.connection_match_tokens(keys.connector_instance_id, keys.expected_profile_key,
                                       keys.sole_active) AS match_tokens
FROM (
    SELECT
        ci.connector_instance_id::text AS connector_instance_id,
        ci.connector_id::text AS connector_id,
        ci.status::text AS status,
        CASE WHEN ci.connector_instance_id = ci.connector_id
             THEN profile.base
             ELSE profile.base || ':' || ci.connector_instance_id
        END AS expected_profile_key,
        -- Partitioned by the output column's expression, so a filter on connector_id goes below
        -- the window (onto the index) on an adopted varchar table too.
        count(*) FILTER (WHERE ci.status = 'active') OVER (PARTITION BY ci.connector_id::text) = 1
            AND ci.status = 'active' AS sole_active
    FROM connector_instances AS ci
    JOIN connectors AS c
        ON c.connector_id = ci.connector_id
    CROSS JOIN LATERAL (
        SELECT COALESCE(
            NULLIF(btrim(CASE WHEN jsonb_typeof(c.manifest #> '{capabilities,browser_surface,profile_key}') = 'string'
                              THEN c.manifest #>> '{capabilities,browser_surface,profile_key}' END,
                         E' \t\n\r\f\x0B'), ''),
            c.connector_id::text) AS base
    ) AS profile
) AS keys;
COMMENT ON VIEW refproj.connection_keys IS
    'Every connection with its expected browser profile key (manifest profile_key or connector_id, plus '':'' || connector_instance_id unless they are equal), whether it is the only active connection of its connector, and the match tokens it accepts.';

-- Each run with the connection it belongs to (attributed_to), or NULL when it matches nobody.
-- A run offers one match token and each connection accepts up to three, so the rule order of
-- DOMAIN.md section 4 is one equi-join.
CREATE VIEW refproj.attributed_runs AS
SELECT
    r.*,
    accepting.connector_instance_id AS attributed_to
FROM refproj.run_summaries AS r
LEFT JOIN (
    SELECT k.connector_id, k.connector_instance_id, token.match_token
    FROM refproj.connection_keys AS k
    CROSS JOIN LATERAL unnest(k.match_tokens) AS token (match_token)
) AS accepting
    ON accepting.connector_id = r.connector_id
   AND accepting.match_token = refproj.run_match_token(r.browser_surface_profile_key, r.connector_instance_id);
COMMENT ON VIEW refproj.attributed_runs IS
    'Every run summary with attributed_to: the connection it belongs to under DOMAIN.md section 4 (profile key, else identity, else sole active connection), NULL when unattributed.';
