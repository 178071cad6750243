"""The projection: run summaries, attribution, the connection_summary materialized view,
read-time freshness and health, write detection and coalesced refresh.

Revision ID: 0003
Revises: 0002
"""

from refproj.migration_support import run_sql_file, upgrade_passes

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # When the same run goes on to 0004, which drops this projection and re-creates it, building
    # it here would only compute the whole history once more while holding trigger locks on the
    # source tables (minutes on a long history): skip it.
    if upgrade_passes(revision):
        return
    run_sql_file("0003_projection.sql")


def downgrade() -> None:
    run_sql_file("0003_projection_down.sql")
