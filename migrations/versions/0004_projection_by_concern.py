"""The projection re-created from ``sql/projection/``, one file per concern.

Everything in the ``refproj`` schema is derived from the source tables, so a revision that
changes the projection drops the schema and re-creates it whole from the files of its release;
the roles ``refproj.grant_reader()`` let in are granted again. See docs/MIGRATIONS.md for the
discipline: the files a released revision applies are never edited afterwards; the release
freezes ``sql/projection/`` and ``sql/projection_down.sql`` under ``sql/releases/0004/`` and points
``PROJECTION_DIR`` and ``PROJECTION_DOWN`` there.

Revision ID: 0004
Revises: 0003
"""

from alembic import context, op
from sqlalchemy import text

from refproj._resources import sql_dir
from refproj.migration_support import SUMMARY_INDEX, downgrade_passes, partitioned, run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# What this revision creates and what removes it: the live files while 0004 is unreleased.
PROJECTION_DIR = "projection"
PROJECTION_DOWN = "projection_down.sql"


def _projection_files() -> list[str]:
    return sorted(f"{PROJECTION_DIR}/{path.name}" for path in (sql_dir() / PROJECTION_DIR).glob("*.sql"))


def upgrade() -> None:
    run_sql_file("0004_save_reader_grants.sql")
    run_sql_file("0004_note_previous_projection.sql")
    run_sql_file("0003_projection_down.sql")
    for name in _projection_files():
        run_sql_file(name)
    run_sql_file("0004_restore_reader_grants.sql")


def downgrade() -> None:
    run_sql_file("0004_save_reader_grants.sql")
    run_sql_file(PROJECTION_DOWN)
    # Going further down, 0003's downgrade would drop what this re-creates (after computing the
    # whole history): re-create it only when the run stops at 0003.
    if not downgrade_passes("0003"):
        run_sql_file("0003_projection.sql")
        run_sql_file("0004_restore_reader_grants.sql")
    # Revision 0002 (released, unchanged) drops the summary index CONCURRENTLY, which PostgreSQL
    # refuses for the index of a partitioned spine_events: drop that one here, plainly (quick,
    # but it takes the parent's lock for that moment), so 0002's statement finds nothing to do.
    # Offline, whether it is partitioned is only known when the script runs.
    if downgrade_passes("0002") and context.is_offline_mode():
        op.execute(
            text(
                "DO $$ BEGIN IF (SELECT relkind FROM pg_catalog.pg_class"
                " WHERE oid = to_regclass('spine_events')) = 'p' THEN"
                f" DROP INDEX IF EXISTS {SUMMARY_INDEX}; END IF; END $$"
            )
        )
    elif downgrade_passes("0002") and partitioned(op.get_bind()):
        op.execute(text(f"DROP INDEX IF EXISTS {SUMMARY_INDEX}"))
