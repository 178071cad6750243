-- Grant the re-created projection to the reader roles remembered before it was dropped.
SELECT refproj.grant_reader(r.rolname)
FROM pg_temp.refproj_reader_roles AS saved
JOIN pg_catalog.pg_roles AS r ON r.oid = saved.role_oid;
