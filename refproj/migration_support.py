"""Helpers the Alembic revisions share. Revisions pass the SQL file name they were written
against, so a later change to a helper never changes what an old revision applies."""

from __future__ import annotations

from alembic import context, op
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
