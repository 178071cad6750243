"""Source tables of the personal-data server (DOMAIN.md section 2), created or adopted.

Tables that exist already (an application's) are adopted once they have the columns refproj
reads; the missing ones are created. Downgrade drops only the tables this revision created, and
only while empty, unless ``-x drop_source_tables=true`` asks to drop them with their rows.

Revision ID: 0001
Revises:
"""

from alembic import op

from refproj.migration_support import run_sql_file, x_options

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0001_source_tables.sql")


def downgrade() -> None:
    # Validated (by migrations/env.py) before any revision ran.
    drop = x_options()["drop_source_tables"]
    op.execute(f"SET LOCAL refproj.drop_source_tables = '{drop}'")
    run_sql_file("0001_source_tables_down.sql")
