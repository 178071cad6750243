"""Source tables of the personal-data server (DOMAIN.md section 2), created or adopted.

Tables that exist already (an application's) are adopted once they have the columns refproj
reads; the missing ones are created. Downgrade drops only the tables this revision created, and
only while empty, unless ``-x drop_source_tables=true`` asks to drop them with their rows.

Revision ID: 0001
Revises:
"""

from alembic import context, op

from refproj.migration_support import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0001_source_tables.sql")


def downgrade() -> None:
    drop = context.get_x_argument(as_dictionary=True).get("drop_source_tables", "false").lower()
    if drop not in ("true", "false"):
        raise ValueError(f"-x drop_source_tables must be true or false, not {drop!r}")
    op.execute(f"SET LOCAL refproj.drop_source_tables = '{drop}'")
    run_sql_file("0001_source_tables_down.sql")
