"""The indexes refproj put on the source tables hold any value the application writes.

Databases installed before issue 8 keep two btree indexes whose entries can be longer than a
btree entry holds, so an application INSERT carrying long ids failed: the source/run summary
index as revision 0002 first built it (no length bound; the released 0002 now builds the bounded
one) and revision 0001's ``connector_instances_connector_idx``. Each one found in its old shape
is replaced CONCURRENTLY (per partition on a partitioned spine_events), so writes go on; one
already bounded, or absent (a table adopted from the application has no index of refproj's), is
left as it is.

Downgrade keeps the bounded indexes: no earlier revision relies on the old shapes, and going
back to them would bring the failing writes back.

Revision ID: 0005
Revises: 0004
"""

from alembic import context, op
from sqlalchemy import text

from refproj._resources import read_sql
from refproj.migration_support import (
    SUMMARY_INDEX,
    SUMMARY_UNBOUNDED,
    index_definition,
    replace_index,
    replace_summary_index,
    run_sql_file,
)

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SUMMARY_SQL = "0002_source_run_summary_index.sql"
CONNECTOR_INDEX = "connector_instances_connector_idx"
CONNECTOR_SQL = "0005_connector_instances_connector_index.sql"
CONNECTOR_0001_SHAPE = "USING btree (connector_id, created_at, connector_instance_id)"


def upgrade() -> None:
    if context.is_offline_mode():
        run_sql_file("0005_bounded_indexes_offline.sql")
        return
    with op.get_context().autocommit_block():
        connection = op.get_bind()
        # Only the index as refproj's 0002 first built it: another definition under its name is
        # the application's index.
        summary = index_definition(connection, SUMMARY_INDEX)
        if summary is not None and summary.endswith(f" USING {SUMMARY_UNBOUNDED}"):
            replace_summary_index(connection, SUMMARY_SQL)
        # Only the index 0001 created, on a table 0001 created (its comment says so, as
        # sql/0001_source_tables_down.sql reads it): an index of that name on an adopted table is
        # the application's.
        connector = index_definition(connection, CONNECTOR_INDEX)
        created_here = connection.execute(
            text(
                "SELECT COALESCE(obj_description(to_regclass('connector_instances'), 'pg_class'), '')"
                " LIKE '%Source table created by refproj (revision 0001)%'"
            )
        ).scalar()
        if created_here and connector is not None and connector.endswith(CONNECTOR_0001_SHAPE):
            replace_index(connection, CONNECTOR_INDEX, read_sql(CONNECTOR_SQL))


def downgrade() -> None:
    pass
