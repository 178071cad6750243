"""The source/run summary index, built CONCURRENTLY outside a transaction.

An INVALID leftover of a failed or interrupted build is dropped and built again.

Revision ID: 0002
Revises: 0001
"""

from alembic import context, op
from sqlalchemy import text

from refproj._resources import read_sql
from refproj.migration_support import SUMMARY_INDEX, ensure_summary_index

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CREATE_SQL = "0002_source_run_summary_index.sql"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        if context.is_offline_mode():
            op.execute(read_sql(CREATE_SQL))
        else:
            ensure_summary_index(op.get_bind(), CREATE_SQL)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {SUMMARY_INDEX}"))
