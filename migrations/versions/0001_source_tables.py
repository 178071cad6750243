"""Source tables of the personal-data server (DOMAIN.md section 2).

Revision ID: 0001
Revises:
"""

from refproj.migration_support import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0001_source_tables.sql")


def downgrade() -> None:
    run_sql_file("0001_source_tables_down.sql")
