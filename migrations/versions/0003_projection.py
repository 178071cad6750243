"""The projection: run summaries, attribution, the connection_summary materialized view,
read-time freshness and health, write detection and coalesced refresh.

Revision ID: 0003
Revises: 0002
"""

from refproj.migration_support import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0003_projection.sql")


def downgrade() -> None:
    run_sql_file("0003_projection_down.sql")
