"""Alembic environment for refproj.

The database is ``$DATABASE_URL`` when set, else ``sqlalchemy.url`` from the Alembic config.
Concurrent ``alembic upgrade head`` runs (app replicas booting together) are serialised by a
transaction-scoped advisory lock held on a separate connection for the whole run, so the lock
survives the commit that the CONCURRENTLY index build needs.
"""

from __future__ import annotations

import os
import time
from logging.config import fileConfig
from typing import Any

import psycopg
from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from refproj.migration_support import ensure_summary_index, summary_index_state
from refproj.settings import database_url, libpq_url

MIGRATION_LOCK_KEY = 7418206610342958900
LOCK_POLL_SECONDS = 0.05

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    # refproj.migrate passes its URL as an attribute; the alembic CLI uses the environment or the ini.
    url = (
        config.attributes.get("database_url")
        or os.environ.get("DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    return database_url(url).render_as_string(hide_password=False)


def _wait_for_migration_lock(lock_connection: psycopg.Connection[Any], timeout: float) -> None:
    """Take the migration lock in a transaction that stays open until the run ends.

    CREATE INDEX CONCURRENTLY in the lock holder waits for every transaction holding an older
    snapshot, so neither side may keep one while waiting: waiters poll with
    pg_try_advisory_xact_lock between short transactions instead of blocking in a statement, and
    the query goes out on the simple protocol (no parameters), which keeps no portal snapshot
    once it has answered.
    """
    deadline = time.monotonic() + timeout
    while True:
        row = lock_connection.execute(f"SELECT pg_try_advisory_xact_lock({MIGRATION_LOCK_KEY})").fetchone()
        if row is not None and row[0]:
            return
        lock_connection.rollback()
        if time.monotonic() > deadline:
            raise RuntimeError(f"another migration held the refproj migration lock for over {timeout:.0f} s")
        time.sleep(LOCK_POLL_SECONDS)


def run_migrations_offline() -> None:
    # Named paramstyle keeps literal "%" in plpgsql bodies (RAISE ... '%') from being doubled.
    context.configure(
        url=_url(), literal_binds=True, transactional_ddl=True, dialect_opts={"paramstyle": "named"}
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    engine = create_engine(url, poolclass=NullPool)
    timeout = float(os.environ.get("REFPROJ_MIGRATION_LOCK_TIMEOUT", "600"))
    with psycopg.connect(libpq_url(url)) as lock_connection:
        _wait_for_migration_lock(lock_connection, timeout)
        with engine.connect() as connection:
            connection.execute(text("SET TimeZone = 'UTC'"))
            connection.commit()
            context.configure(connection=connection, transactional_ddl=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
            heads = context.get_context().get_current_heads()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as autocommit:
            if not heads:
                # At base nothing of refproj should remain, Alembic's bookkeeping included.
                autocommit.execute(text("DROP TABLE IF EXISTS alembic_version"))
            elif summary_index_state(autocommit) == "invalid":
                # An index that went INVALID after its revision ran (a failed REINDEX
                # CONCURRENTLY, say) is repaired by the next upgrade too.
                ensure_summary_index(autocommit, "0002_source_run_summary_index.sql")
        lock_connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
