-- The objects a DROP SCHEMA refproj CASCADE would take along that refproj did not create, one
-- name each (pg_describe_object), so a migration can refuse before it drops anything.
-- :known is what refproj created in the schema (refproj.installed_objects(), or revision 0003's
-- list for an install at 0003); NULL when that is not known (an install made before the list
-- was kept): then only objects outside the schema that depend on it are reported.
WITH inside AS (
    -- What names schema refproj as its own (indexes, rules, triggers follow their relation).
    SELECT d.classid, d.objid
    FROM pg_catalog.pg_depend AS d
    WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass
      AND d.refobjid = (SELECT n.oid FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'refproj')
),
dependents AS (
    -- Objects elsewhere that depend on one inside (a view over refproj.connection_summary, a
    -- foreign key to a refproj table): CASCADE drops them too. Not those belonging to a relation
    -- of schema refproj, nor refproj's own refproj_* triggers on the source tables.
    -- A view is named as itself, not as its _RETURN rule.
    SELECT DISTINCT CASE WHEN r.oid IS NULL THEN pg_catalog.pg_describe_object(d.classid, d.objid, 0)
                         ELSE pg_catalog.pg_describe_object('pg_catalog.pg_class'::regclass, r.ev_class, 0)
                    END AS object
    FROM pg_catalog.pg_depend AS d
    JOIN inside AS i ON i.classid = d.refclassid AND i.objid = d.refobjid
    LEFT JOIN pg_catalog.pg_rewrite AS r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
    LEFT JOIN pg_catalog.pg_trigger AS t ON d.classid = 'pg_catalog.pg_trigger'::regclass AND t.oid = d.objid
    LEFT JOIN pg_catalog.pg_constraint AS c ON d.classid = 'pg_catalog.pg_constraint'::regclass AND c.oid = d.objid
    LEFT JOIN pg_catalog.pg_attrdef AS a ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND a.oid = d.objid
    LEFT JOIN pg_catalog.pg_class AS owner ON owner.oid = COALESCE(r.ev_class, t.tgrelid, c.conrelid, a.adrelid)
    WHERE d.deptype = 'n'
      AND (d.classid, d.objid) NOT IN (SELECT i2.classid, i2.objid FROM inside AS i2)
      AND owner.relnamespace IS DISTINCT FROM (SELECT n.oid FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'refproj')
      AND (t.tgname IS NULL OR t.tgname NOT LIKE 'refproj\_%')
)
SELECT object
FROM (
    SELECT pg_catalog.pg_describe_object(i.classid, i.objid, 0) AS object
    FROM inside AS i
    WHERE CAST(:known AS text[]) IS NOT NULL
    EXCEPT
    SELECT unnest(CAST(:known AS text[]))
    UNION
    SELECT e.object
    FROM dependents AS e
) AS foreign_object
ORDER BY 1;
