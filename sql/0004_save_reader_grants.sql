-- Before the projection schema is re-created, remember the roles refproj.grant_reader() let in
-- (every role with USAGE on the schema but its owner), so the re-created schema grants them
-- again (sql/0004_restore_reader_grants.sql). PUBLIC never appears: nothing is granted to it.
CREATE TEMPORARY TABLE refproj_reader_roles ON COMMIT DROP AS
SELECT DISTINCT acl.grantee AS role_oid
FROM pg_catalog.pg_namespace AS n
CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) AS acl
WHERE n.nspname = 'refproj'
  AND acl.privilege_type = 'USAGE'
  AND acl.grantee <> n.nspowner
  AND acl.grantee <> 0;
