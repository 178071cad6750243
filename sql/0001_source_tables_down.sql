-- Removes the source tables revision 0001 created, and only while they are empty: a table holding
-- rows is the application's data and stays, unless the user asked for it with
-- `alembic -x drop_source_tables=true downgrade base` (refproj.drop_source_tables below). A table
-- refproj adopted (it existed before refproj was installed, so its comment does not carry
-- refproj's mark) is never dropped. Each table is locked before it is checked, so no row can arrive between the
-- check and the drop.
DO $refproj_source_tables_down$
DECLARE
    v_force boolean := COALESCE(current_setting('refproj.drop_source_tables', true), '') = 'true';
    v_table text;
    v_holds_rows boolean;
BEGIN
    -- Children before the tables they reference.
    FOREACH v_table IN ARRAY ARRAY['retained_size_stream', 'retained_size_connection',
                                   'controller_active_runs', 'spine_events',
                                   'connector_instances', 'connectors'] LOOP
        CONTINUE WHEN to_regclass(v_table) IS NULL;
        CONTINUE WHEN COALESCE(obj_description(to_regclass(v_table), 'pg_class'), '')
            NOT LIKE '%Source table created by refproj (revision 0001)%';
        EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', v_table);
        -- Tested for one row, not counted: a count reads the whole history (minutes on a long
        -- one) while the ACCESS EXCLUSIVE lock above stops the application's writes.
        EXECUTE format('SELECT EXISTS (SELECT FROM %I)', v_table) INTO v_holds_rows;
        IF v_holds_rows AND NOT v_force THEN
            -- migrations/env.py logs it at WARNING; Alembic shows no notice itself.
            RAISE NOTICE 'refproj: keeping table % (it holds rows; -x drop_source_tables=true drops it)', v_table;
        ELSE
            EXECUTE format('DROP TABLE %I', v_table);
        END IF;
    END LOOP;
END
$refproj_source_tables_down$;
