"""Helpers the Alembic revisions share. Revisions pass the SQL file name they were written
against, so a later change to a helper never changes what an old revision applies."""

from __future__ import annotations

import psycopg
from alembic import context, op
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from refproj._resources import read_sql
from refproj.errors import InvalidArgument

SUMMARY_INDEX = "spine_events_source_run_summary_idx"
# The summary index as refproj's revision 0002 built it, pg_get_indexdef after "USING": first
# unbounded, then (issue 8) bounded. Another definition under that name is the application's.
SUMMARY_UNBOUNDED = "btree (source_kind, source_id, run_id, occurred_at DESC) WHERE (run_id IS NOT NULL)"
SUMMARY_BOUNDED = (
    "btree (source_kind, source_id, run_id, occurred_at DESC) WHERE ((run_id IS NOT NULL) AND"
    " (((octet_length(source_kind) + octet_length(source_id)) + octet_length(run_id)) <= 2000))"
)

# Files a released revision applies whose every object the next revision drops again (0004
# drops schema refproj and re-creates it): when one run goes past that revision, applying the
# file would only compute the whole history once more while holding trigger locks on the source
# tables (minutes on a long history, every writer waiting). Skipped then, leaving the released
# revision's files untouched; a run that stops at the revision applies it as released.
SUPERSEDED_IN_THE_SAME_RUN = {"0003_projection.sql": "0003"}


# Every ``alembic -x`` option refproj reads, with the values each accepts (case-insensitive).
X_OPTIONS = {"drop_source_tables": ("true", "false")}


def x_options() -> dict[str, str]:
    """The ``alembic -x`` options of this run, lower-cased: ``{"drop_source_tables": "false"}``
    (every option present, its default filled in). Raises ``InvalidArgument`` for an unknown
    key, a key given twice, or a value not accepted; migrations/env.py calls it before any
    revision runs, so a bad option changes nothing."""
    found: dict[str, str] = {}
    for argument in context.get_x_argument():
        key, equals, value = argument.partition("=")
        if key not in X_OPTIONS:
            known = ", ".join(f"-x {name}=" for name in X_OPTIONS)
            raise InvalidArgument(f"unknown option -x {argument!r}; refproj reads {known}")
        if key in found:
            raise InvalidArgument(f"-x {key} given more than once")
        if not equals or value.lower() not in X_OPTIONS[key]:
            accepted = " or ".join(f"{key}={choice}" for choice in X_OPTIONS[key])
            raise InvalidArgument(f"write -x {accepted}, not -x {argument!r}")
        found[key] = value.lower()
    return {key: found.get(key, accepted[-1]) for key, accepted in X_OPTIONS.items()}


def incompatibility(error: BaseException) -> str | None:
    """The one-line message (without "refproj: ") of revision 0001's check when ``error`` is it
    (SQLSTATE 42703 raised by sql/0001_source_tables.sql), else None."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    if isinstance(cause, psycopg.errors.UndefinedColumn) and lines and lines[0].startswith("refproj: "):
        return lines[0].removeprefix("refproj: ")
    return None


def run_sql_file(name: str) -> None:
    """Apply one file of ``sql/`` inside the migration's transaction.

    Online, the file goes to psycopg as one simple-protocol query (it holds many statements and
    plpgsql bodies); offline, it is written to the script as it is.
    """
    if name in SUPERSEDED_IN_THE_SAME_RUN and upgrade_passes(SUPERSEDED_IN_THE_SAME_RUN[name]):
        return
    sql = read_sql(name)
    if context.is_offline_mode():
        op.execute(sql)
        return
    dbapi_connection = op.get_bind().connection.driver_connection
    assert dbapi_connection is not None
    dbapi_connection.execute(sql)


def summary_index_state(connection: Connection) -> str:
    """``missing``, ``invalid`` or ``valid``. On a partitioned spine_events the index is valid
    once every partition's index is built and attached."""
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


def partitioned(connection: Connection) -> bool:
    """Whether spine_events is a partitioned table."""
    return bool(
        connection.execute(
            text("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('spine_events')")
        ).scalar()
    )


def ensure_summary_index(connection: Connection, create_sql_file: str) -> str:
    """Build the summary index CONCURRENTLY, first dropping an INVALID leftover of a failed or
    interrupted build. ``connection`` must be in autocommit mode. Returns the state found.

    On a partitioned spine_events ``CREATE INDEX CONCURRENTLY`` cannot run on the parent: the
    index is created ON ONLY the parent (instant, INVALID until complete), built CONCURRENTLY on
    each partition and attached (PostgreSQL's documented way); the parent's index turns valid
    with the last attachment. Partitions created later get it from PostgreSQL itself.
    """
    state = summary_index_state(connection)
    if partitioned(connection):
        if state != "valid":
            _ensure_partitioned_summary_index(connection, read_sql(create_sql_file))
        return state
    if state == "invalid":
        connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {SUMMARY_INDEX}"))
    if state != "valid":
        connection.execute(text(read_sql(create_sql_file)))
    return state


def _ensure_partitioned_summary_index(
    connection: Connection, create_sql: str, top: str = SUMMARY_INDEX, suffix: str = "summary"
) -> None:
    # The revision's own statement gives the definition: its columns and predicate.
    marker = " ON spine_events "
    definition = create_sql[create_sql.index(marker) + len(marker) :].strip()
    # Level order, so a parent's index exists before its children attach to it.
    tree = connection.execute(
        text(
            "SELECT t.relid::regclass::text, t.parentrelid::regclass::text, t.isleaf, t.level"
            " FROM pg_partition_tree('spine_events') AS t ORDER BY t.level, t.relid"
        )
    ).all()
    for relation, parent, is_leaf, level in tree:
        if level == 0:
            connection.execute(text(f"CREATE INDEX IF NOT EXISTS {top} ON ONLY {relation} {definition}"))
            continue
        found = _attached_index(connection, relation, top)
        if found is not None and found[1]:
            continue
        if found is not None:
            # An INVALID leftover of an interrupted build: drop it and build again.
            connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {found[0]}"))
        name = _index_name(relation, suffix)
        connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
        if is_leaf:
            connection.execute(text(f"CREATE INDEX CONCURRENTLY {name} ON {relation} {definition}"))
        else:
            connection.execute(text(f"CREATE INDEX {name} ON ONLY {relation} {definition}"))
        parent_index = top if level == 1 else _index_name(parent, suffix)
        connection.execute(text(f"ALTER INDEX {parent_index} ATTACH PARTITION {name}"))


def _index_name(relation: str, suffix: str = "summary") -> str:
    """The summary index refproj gives one partition: schema-qualified like ``relation``."""
    schema, _, table = relation.rpartition(".")
    name = f'"{table.strip(chr(34))[:40]}_refproj_{suffix}_idx"'
    return f"{schema}.{name}" if schema else name


def _attached_index(connection: Connection, relation: str, top: str) -> tuple[str, bool] | None:
    """The index of a partition attached to the summary index tree: (name, valid), or None."""
    row = connection.execute(
        text(
            "SELECT i.indexrelid::regclass::text, i.indisvalid FROM pg_index AS i"
            " JOIN pg_inherits AS h ON h.inhrelid = i.indexrelid"
            " WHERE i.indrelid = CAST(:rel AS regclass)"
            "   AND h.inhparent IN (SELECT t.relid FROM pg_partition_tree(CAST(:top AS regclass)) AS t)"
        ),
        {"rel": relation, "top": top},
    ).first()
    return None if row is None else (row[0], row[1])


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


def index_definition(connection: Connection, name: str) -> str | None:
    """``pg_get_indexdef`` of the index ``name`` (found through the search_path), or None."""
    definition = connection.execute(
        text("SELECT pg_get_indexdef(to_regclass(:name))"), {"name": name}
    ).scalar()
    return None if definition is None else str(definition)


def _rename_keeping_comment(connection: Connection, building: str, name: str, comment: str | None) -> None:
    # ALTER INDEX ... RENAME takes SHARE UPDATE EXCLUSIVE: writers go on.
    connection.execute(text(f"ALTER INDEX {building} RENAME TO {name}"))
    if comment is not None:
        # COMMENT takes no parameters: the literal is quoted by the server.
        literal = connection.execute(text("SELECT quote_literal(:comment)"), {"comment": comment}).scalar()
        connection.execute(text(f"COMMENT ON INDEX {name} IS {literal}"))


def replace_index(connection: Connection, name: str, create_sql: str) -> None:
    """Replace the index ``name`` of a plain table by what ``create_sql`` (``CREATE INDEX
    CONCURRENTLY IF NOT EXISTS <name> ...``) builds, without blocking writes: built CONCURRENTLY
    under another name, the old one dropped CONCURRENTLY, the new one renamed and given the old
    one's comment. A leftover of an interrupted run is dropped and built again. ``connection``
    must be in autocommit mode."""
    building = f"{name[:50]}_bounded"
    comment = connection.execute(
        text("SELECT obj_description(to_regclass(:name), 'pg_class')"), {"name": name}
    ).scalar()
    connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {building}"))
    statement = create_sql.replace(f"IF NOT EXISTS {name}", f"IF NOT EXISTS {building}", 1)
    assert statement != create_sql, f"{create_sql!r} does not create {name}"
    connection.execute(text(statement))
    connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
    _rename_keeping_comment(connection, building, name, comment)


def replace_summary_index(connection: Connection, create_sql_file: str) -> None:
    """Replace the summary index by the definition of ``create_sql_file`` without blocking writes.

    On a partitioned spine_events the new index is built as ensure_summary_index builds one
    (ON ONLY the parent, CONCURRENTLY per partition, attached) under another name; then the old
    one is dropped, plainly: PostgreSQL cannot drop a partitioned index CONCURRENTLY, so that
    statement takes the table's lock for the moment the drop itself lasts. An interrupted run
    resumes the build where it stopped.
    """
    if not partitioned(connection):
        replace_index(connection, SUMMARY_INDEX, read_sql(create_sql_file))
        return
    building = f"{SUMMARY_INDEX}_bounded"
    comment = connection.execute(
        text("SELECT obj_description(to_regclass(:name), 'pg_class')"), {"name": SUMMARY_INDEX}
    ).scalar()
    _ensure_partitioned_summary_index(connection, read_sql(create_sql_file), top=building, suffix="bounded")
    connection.execute(text(f"DROP INDEX IF EXISTS {SUMMARY_INDEX}"))
    _rename_keeping_comment(connection, building, SUMMARY_INDEX, comment)
    # Each partition's index gets the name a fresh install gives it.
    children = connection.execute(
        text(
            "SELECT t.relid::regclass::text, i.indrelid::regclass::text"
            " FROM pg_partition_tree(CAST(:top AS regclass)) AS t"
            " JOIN pg_index AS i ON i.indexrelid = t.relid WHERE t.level > 0"
        ),
        {"top": SUMMARY_INDEX},
    ).all()
    for index, relation in children:
        wanted = _index_name(relation)
        if index != wanted:
            connection.execute(text(f"ALTER INDEX {index} RENAME TO {wanted.rpartition('.')[2]}"))
