"""Helpers the Alembic revisions share. Revisions pass the SQL file name they were written
against, so a later change to a helper never changes what an old revision applies."""

from __future__ import annotations

from alembic import context, op
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from refproj._resources import read_sql

SUMMARY_INDEX = "spine_events_source_run_summary_idx"


def run_sql_file(name: str) -> None:
    """Apply one file of ``sql/`` inside the migration's transaction.

    Online, the file goes to psycopg as one simple-protocol query (it holds many statements and
    plpgsql bodies); offline, it is written to the script as it is.
    """
    sql = read_sql(name)
    if context.is_offline_mode():
        op.execute(sql)
        return
    dbapi_connection = op.get_bind().connection.driver_connection
    assert dbapi_connection is not None
    dbapi_connection.execute(sql)


def summary_index_state(connection: Connection) -> str:
    """``missing``, ``invalid`` or ``valid``."""
    valid = connection.execute(
        text(
            "SELECT i.indisvalid FROM pg_index AS i "
            "JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND pg_table_is_visible(c.oid)"
        ),
        {"name": SUMMARY_INDEX},
    ).scalar()
    if valid is None:
        return "missing"
    return "valid" if valid else "invalid"


def ensure_summary_index(connection: Connection, create_sql_file: str) -> str:
    """Build the summary index CONCURRENTLY, first dropping an INVALID leftover of a failed or
    interrupted build. ``connection`` must be in autocommit mode. Returns the state found."""
    state = summary_index_state(connection)
    if state == "invalid":
        connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {SUMMARY_INDEX}"))
    if state != "valid":
        connection.execute(text(read_sql(create_sql_file)))
    return state


def _ancestors(script: ScriptDirectory, revision: str) -> set[str]:
    found: set[str] = set()
    down = script.get_revision(revision)
    while down is not None and down.down_revision is not None:
        assert isinstance(down.down_revision, str)  # refproj's history is linear
        found.add(down.down_revision)
        down = script.get_revision(down.down_revision)
    return found


def _destination() -> tuple[ScriptDirectory, str | None] | None:
    """The script directory and the revision this run goes to (None: base), or None when the
    destination is not one plain revision (a relative step, several heads)."""
    script = ScriptDirectory.from_config(context.config)
    try:
        destination = context.get_revision_argument()
    except Exception:  # a relative or partial identifier: treat every step as a stop
        return None
    if destination is not None and not isinstance(destination, str):
        return None
    return script, destination


def upgrade_passes(revision: str) -> bool:
    """Whether this upgrade goes on past ``revision`` in the same run (so a revision that only
    builds what the next one drops may skip the work)."""
    found = _destination()
    if found is None:
        return False
    script, destination = found
    return destination is not None and revision in _ancestors(script, destination)


def downgrade_passes(revision: str) -> bool:
    """Whether this downgrade goes on below ``revision`` in the same run."""
    found = _destination()
    if found is None:
        return False
    script, destination = found
    return destination is None or destination in _ancestors(script, revision)
