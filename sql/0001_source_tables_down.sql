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
    v_rows bigint;
BEGIN
    -- Children before the tables they reference.
    FOREACH v_table IN ARRAY ARRAY['retained_size_stream', 'retained_size_connection',
                                   'controller_active_runs', 'spine_events',
                                   'connector_instances', 'connectors'] LOOP
        CONTINUE WHEN to_regclass(v_table) IS NULL;
        CONTINUE WHEN COALESCE(obj_description(to_regclass(v_table), 'pg_class'), '')
            NOT LIKE '%Source table created by refproj (revision 0001)%';
        EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', v_table);
        -- Counted (not just tested for a row): the notice tells the operator what stays.
        EXECUTE format('SELECT count(*) FROM %I', v_table) INTO v_rows;
        IF v_rows > 0 AND NOT v_force THEN
            -- migrations/env.py logs it at WARNING; Alembic shows no notice itself.
            RAISE NOTICE 'refproj: keeping table % (% rows; -x drop_source_tables=true drops it)', v_table, v_rows;
        ELSE
            EXECUTE format('DROP TABLE %I', v_table);
        END IF;
    END LOOP;
END
$refproj_source_tables_down$;
