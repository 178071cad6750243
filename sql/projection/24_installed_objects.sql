-- ---------------------------------------------------------------------------------------------
-- What this install put in schema refproj, by name: the objects that name the schema as theirs
-- (what DROP SCHEMA drops; indexes and triggers go with their relation). Every migration compares
-- the schema with this list first (sql/foreign_objects.sql) and refuses, before changing
-- anything, when somebody else's object is in it or depends on it: dropping and re-creating the
-- schema would take that object along. A function's body rather than a table's rows, so a
-- schema-only dump and restore keeps it.
-- ---------------------------------------------------------------------------------------------

DO $refproj_installed_objects$
BEGIN
    EXECUTE format(
        'CREATE FUNCTION refproj.installed_objects() RETURNS text[] LANGUAGE sql IMMUTABLE'
        ' SET search_path = pg_catalog RETURN %L::text[]',
        ARRAY(
            SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0)
            FROM pg_catalog.pg_depend AS d
            WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass
              AND d.refobjid = 'refproj'::regnamespace
            UNION
            SELECT 'function refproj.installed_objects()'
            ORDER BY 1));
END
$refproj_installed_objects$;
REVOKE EXECUTE ON FUNCTION refproj.installed_objects() FROM PUBLIC;
COMMENT ON FUNCTION refproj.installed_objects() IS
    'Every object this install of refproj created in schema refproj, as pg_describe_object() names it ("table refproj.run_facts"); migrations refuse to drop the schema while it holds, or is used by, any other.';
