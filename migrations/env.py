"""Alembic environment for refproj.

The database is ``$DATABASE_URL`` when set, else ``sqlalchemy.url`` from the Alembic config.
Concurrent ``alembic upgrade head`` runs (app replicas booting together) are serialised by a
transaction-scoped advisory lock held on a separate connection for the whole run, so the lock
survives the commit that the CONCURRENTLY index build needs.

refproj keeps its history in its own version table, ``refproj_alembic_version`` (in the schema
the source tables are created in, the first of the search_path), never in ``alembic_version``,
which belongs to the application's own Alembic history. Not in schema ``refproj``: revision 0004
drops and re-creates that schema. Installs made before this kept refproj's revision in
``alembic_version``; the first run moves it (see ``_adopt_legacy_version_table``).

Safe behind a transaction-pooling PgBouncer (``refproj migrate`` through it, two at once): every
transaction may run on another server session, so nothing is set for the session. TimeZone UTC
is set per transaction (``_utc_in_every_transaction``) and psycopg prepares no statements on the
server (``prepare_threshold=None``): a prepared statement lives on one server session only.
"""

from __future__ import annotations

import logging
import os
import re
import time
from logging.config import fileConfig
from typing import Any

import psycopg
from alembic import context
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from refproj._resources import read_sql
from refproj.errors import (
    ForeignObjectsInSchema,
    RefprojError,
    SourceTablesIncompatible,
    mask_secrets,
    translate,
)
from refproj.migration_support import (
    SUMMARY_BOUNDED,
    SUMMARY_INDEX,
    SUMMARY_UNBOUNDED,
    ensure_summary_index,
    incompatibility,
    summary_index_state,
    x_options,
)
from refproj.settings import SOURCE_TABLES, database_url, libpq_url, url_text

MIGRATION_LOCK_KEY = 7418206610342958900
VERSION_TABLE = "refproj_alembic_version"
LEGACY_VERSION_TABLE = "alembic_version"
# What sql/0001_source_tables.sql says on a table it created.
CREATED_TABLE_COMMENT = (
    "Source table created by refproj (revision 0001); refproj reads it, the application writes it."
    " alembic downgrade base drops it only while it is empty."
)
# Proof that a legacy ``alembic_version`` row is refproj's: a query true only when an object that
# refproj alone creates, and has at that revision, exists. Revision 0001 has none: its objects are
# the source tables, which the application's own revision 0001 may have created as well. From
# 0003 on: refproj's state table with the description refproj gives it (0003 and every later
# projection write the same).
LEGACY_EVIDENCE: dict[str, str | None] = {
    "0001": None,
    # The summary index on spine_events with a definition refproj's 0002 gave it, not the name.
    "0002": "SELECT split_part(pg_get_indexdef(i.indexrelid), ' USING ', 2)"
    f" IN ('{SUMMARY_UNBOUNDED}', '{SUMMARY_BOUNDED}') FROM pg_index AS i"
    f" WHERE i.indexrelid = to_regclass('{SUMMARY_INDEX}') AND i.indrelid = to_regclass('spine_events')",
    "0003": "SELECT COALESCE(obj_description(to_regclass('refproj.projection_state'), 'pg_class'), '')"
    " = 'Single row: when the stored evidence was computed (as_of), the ticket its refresh started at,"
    " and refresh statistics.'",
}
# The comment sql/projection/24_installed_objects.sql gives refproj.installed_objects(): part of
# the proof that the function is refproj's (see _installed_objects).
INSTALLED_OBJECTS_COMMENT = re.search(
    r"COMMENT ON FUNCTION refproj\.installed_objects\(\) IS\s*'([^']*)';",
    read_sql("projection/24_installed_objects.sql"),
)[1]  # type: ignore[index]
LOCK_POLL_SECONDS = 0.05
log = logging.getLogger("alembic.env")

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
    return url_text(database_url(url))


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


def _adopt_legacy_version_table(connection: Connection) -> str | None:
    """Move refproj's revision out of ``alembic_version`` left by an install made before refproj
    had its own version table; returns the warning to give when it is left alone, else None.

    ``alembic_version`` is the application's unless proven refproj's: exactly one row, a revision
    id of refproj's, and an object only refproj creates, of that revision, exists (see
    ``LEGACY_EVIDENCE``). Otherwise it is never read further, written or dropped; a refproj
    revision id without that proof is named in the warning returned, and refproj installs beside
    it.
    """
    if connection.execute(text(f"SELECT to_regclass('{VERSION_TABLE}')")).scalar() is not None:
        return None
    if connection.execute(text(f"SELECT to_regclass('{LEGACY_VERSION_TABLE}')")).scalar() is None:
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}")).scalars().all()
    if len(rows) != 1:
        return None
    revision = rows[0]
    if revision not in _revisions():
        return None
    evidence = LEGACY_EVIDENCE.get(revision, LEGACY_EVIDENCE["0003"])
    if evidence is None or not connection.execute(text(evidence)).scalar():
        why = (
            "nothing tells refproj's revision 0001 from the application's"
            if evidence is None
            else "the objects refproj creates at that revision are missing (or not refproj's),"
            " so it is the application's"
        )
        return (
            f"refproj: left {LEGACY_VERSION_TABLE} (revision {revision}) alone: {why}; refproj keeps its"
            f" own history in {VERSION_TABLE}. If an install of refproj made before {VERSION_TABLE}"
            " wrote it, drop it once this run is done"
        )
    # The table Alembic creates on a fresh install, its key's name included (<table>_pkc), so the
    # moved install's schema equals a fresh one's.
    connection.execute(
        text(
            f"CREATE TABLE {VERSION_TABLE} (version_num varchar(32) NOT NULL,"
            f" CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
    )
    connection.execute(
        text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:revision)"), {"revision": revision}
    )
    connection.execute(text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))
    # Revision 0001 of those installs failed on any existing table, so it created all six: mark
    # them as sql/0001_source_tables.sql marks the tables it creates (downgrade drops them while
    # empty), unless somebody documented them since.
    for table in SOURCE_TABLES:
        connection.execute(
            text(
                f"DO $$ BEGIN IF to_regclass('{table}') IS NOT NULL"
                f" AND obj_description(to_regclass('{table}'), 'pg_class') IS NULL THEN"
                f" COMMENT ON TABLE {table} IS '{CREATED_TABLE_COMMENT}'; END IF; END $$"
            )
        )
    return None


def _refuse_foreign_objects(connection: Connection) -> None:
    """Raise ``ForeignObjectsInSchema`` when schema refproj holds an object refproj did not
    create, or an object elsewhere depends on one in it: revisions drop the schema with CASCADE
    (0003's released downgrade does), which would take that object along. Checked before any
    revision runs, so a refusal changes nothing."""
    if connection.execute(text("SELECT to_regnamespace('refproj')")).scalar() is None:
        return
    found = (
        connection.execute(text(read_sql("foreign_objects.sql")), {"known": _installed_objects(connection)})
        .scalars()
        .all()
    )
    if found:
        raise ForeignObjectsInSchema(
            f"schema refproj holds or is used by what refproj did not create: {', '.join(found)};"
            " migrating would drop it with the schema: move it out of schema refproj (or drop it) and"
            " run again"
        )


def _installed_objects(connection: Connection) -> list[str] | None:
    """What refproj created in schema refproj (pg_describe_object names); None when an install
    of refproj is proven but predates the list (then only dependents outside the schema are
    checked); [] when nothing proves the schema refproj's: then every object in it is foreign.

    Proof, never a name alone: ``refproj_alembic_version`` holds one refproj revision of 0003 or
    later (the first to create the schema), and either ``refproj.installed_objects()`` is
    refproj's (returns text[], LANGUAGE sql, refproj's exact comment), or it is absent and
    ``refproj.projection_state`` carries refproj's exact description (``LEGACY_EVIDENCE``). An
    ``installed_objects()`` of another shape is foreign, never called."""
    revision = _refproj_revision(connection)
    if revision is None or revision < "0003":
        return []
    function = connection.execute(
        text(
            "SELECT p.prorettype = 'text[]'::regtype AND l.lanname = 'sql'"
            " AND obj_description(p.oid, 'pg_proc') IS NOT DISTINCT FROM :comment"
            " FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang"
            " WHERE p.oid = to_regprocedure('refproj.installed_objects()')"
        ),
        {"comment": INSTALLED_OBJECTS_COMMENT},
    ).scalar()
    if function is not None:
        if not function:
            return []
        listed = connection.execute(text("SELECT refproj.installed_objects()")).scalar()
        return [name for name in listed if name is not None]
    if not connection.execute(text(str(LEGACY_EVIDENCE["0003"]))).scalar():
        return []
    if revision == "0003":
        lines = read_sql("0003_objects.txt").splitlines()
        return [line for line in lines if line and not line.startswith("#")]
    # An install made before refproj kept the list: only dependents outside the schema are known.
    return None


def _refproj_revision(connection: Connection) -> str | None:
    """The one revision of refproj's that ``refproj_alembic_version`` holds, else None."""
    if connection.execute(text(f"SELECT to_regclass('{VERSION_TABLE}')")).scalar() is None:
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) != 1 or rows[0] not in _revisions():
        return None
    return str(rows[0])


def _revisions() -> set[str]:
    return {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}


def _utc_in_every_transaction(engine: Engine) -> None:
    """Every transaction of ``engine`` starts with TimeZone UTC, transaction-local: Alembic
    begins a new transaction around each autocommit block (0002's concurrent index build), and
    behind a transaction pooler each may run on another server session."""

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # On the driver connection: it opens the transaction SQLAlchemy just began. (In an
        # autocommit block it is a transaction of its own and sets nothing that stays.)
        driver: Any = connection.connection.driver_connection
        driver.execute("SELECT pg_catalog.set_config('TimeZone', 'UTC', true)")


def _log_refproj_notices(connection: Connection) -> None:
    """Alembic shows no server notice: refproj's own (a source table kept at downgrade, say) go
    to Alembic's log at WARNING, so both the alembic CLI and ``refproj migrate`` print them."""

    def _notice(diagnostic: psycopg.errors.Diagnostic) -> None:
        if (diagnostic.message_primary or "").startswith("refproj: "):
            log.warning("%s", diagnostic.message_primary)

    driver: Any = connection.connection.driver_connection
    driver.add_notice_handler(_notice)


def run_migrations_offline() -> None:
    # Named paramstyle keeps literal "%" in plpgsql bodies (RAISE ... '%') from being doubled.
    context.configure(
        url=_url(),
        literal_binds=True,
        transactional_ddl=True,
        dialect_opts={"paramstyle": "named"},
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.execute(read_sql("offline_partitioned_guard.sql"))
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    engine = create_engine(url, poolclass=NullPool, connect_args={"prepare_threshold": None})
    _utc_in_every_transaction(engine)
    timeout = float(os.environ.get("REFPROJ_MIGRATION_LOCK_TIMEOUT", "600"))
    with psycopg.connect(libpq_url(url), prepare_threshold=None) as lock_connection:
        _wait_for_migration_lock(lock_connection, timeout)
        with engine.connect() as connection:
            _log_refproj_notices(connection)
            left_alone = _adopt_legacy_version_table(connection)
            _refuse_foreign_objects(connection)
            connection.commit()
            context.configure(connection=connection, transactional_ddl=True, version_table=VERSION_TABLE)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
            if left_alone is not None:
                # Given once the run succeeded: after a refusal (exit 10 or 15) it is moot, and
                # the refusal is the one line printed.
                log.warning("%s", left_alone)
            heads = context.get_context().get_current_heads()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as autocommit:
            if not heads:
                # At base nothing of refproj should remain, Alembic's bookkeeping included.
                autocommit.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))
            else:
                if summary_index_state(autocommit) == "invalid":
                    # An index that went INVALID after its revision ran (a failed REINDEX
                    # CONCURRENTLY, say) is repaired by the next upgrade too.
                    ensure_summary_index(autocommit, "0002_source_run_summary_index.sql")
                # A database restored from pg_dump --schema-only (then reloaded, or stamped) has
                # no projection_state row: put it back, asking for the rebuild the first refresh
                # does. At head no revision runs, so this runs on every upgrade and stamp; it
                # reads first and takes no lock a writer or a refresh waits on.
                repair = "refproj.ensure_projection_state()"
                if autocommit.execute(text(f"SELECT to_regprocedure('{repair}')")).scalar() is not None:
                    autocommit.execute(text(f"SELECT {repair}"))
        lock_connection.commit()
    engine.dispose()


try:
    x_options()  # a bad -x option is refused before any revision runs
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        run_migrations_online()
except Exception as error:
    # A source table refproj cannot read, or somebody's object in schema refproj, is the
    # operator's to fix, not a bug: one line (the alembic CLI prints a CommandError as
    # "FAILED: ..."), no traceback. Nothing was changed. refproj.migrate raises the cause.
    message = incompatibility(error)
    problem: BaseException = error
    if message is not None:
        problem = SourceTablesIncompatible(message)
    elif isinstance(error, psycopg.Error | SQLAlchemyError):
        # So are a database URL refproj refuses (garbage, a NUL, a port out of range) and a
        # database that cannot be reached: the line the refproj CLI prints.
        problem = translate(error, mask_secrets(libpq_url(_url())))
    if not isinstance(problem, RefprojError):
        raise
    raise CommandError(f"refproj: {problem}") from problem
