"""Changing SQL after a release (docs/MIGRATIONS.md): released files stay as released, and a
database upgraded from the last release ends up exactly like a fresh install, serving the same rows.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

from refproj import migrate
from refproj.seed import seed
from tests.test_properties import incompressible
from tests.test_restore import dump_tools

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "migrations" / "released.sha256"
READER = "refproj_upgrade_reader"
AT = "2026-01-06 12:00+00"
# Revision 0003 as deployments have it: the repository when 0003 was head, at the end of round 1
# (686e8c6, where migrations/released.sha256 began, has the same migrations, SQL and env.py).
RELEASE_0003 = "73873ec30d2ee709fe954f766f21c5128c10cb80"

# The schema as the catalog describes it, by name and definition (never by oid), with comments
# and privileges: everything pg_dump --schema-only would print for the project's objects.
SNAPSHOT = {
    "namespaces": "SELECT n.nspname, n.nspacl::text, obj_description(n.oid, 'pg_namespace')"
    " FROM pg_namespace AS n WHERE n.nspname IN ('public', 'refproj')",
    "relations": "SELECT n.nspname, c.relname, c.relkind, c.relacl::text, obj_description(c.oid, 'pg_class'),"
    " c.relpersistence, c.relispopulated FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname IN ('public', 'refproj')",
    "columns": "SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
    " pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum), a.attacl::text"
    " FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid"
    " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " WHERE n.nspname IN ('public', 'refproj') AND a.attnum > 0 AND NOT a.attisdropped",
    "indexes": "SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes"
    " WHERE schemaname IN ('public', 'refproj')",
    "constraints": "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
    " FROM pg_constraint AS c JOIN pg_namespace AS n ON n.oid = c.connamespace"
    " WHERE n.nspname IN ('public', 'refproj')",
    "views": "SELECT schemaname, viewname, definition FROM pg_views WHERE schemaname IN ('public', 'refproj')"
    " UNION ALL SELECT schemaname, matviewname, definition FROM pg_matviews"
    " WHERE schemaname IN ('public', 'refproj')",
    "functions": "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text,"
    " obj_description(p.oid, 'pg_proc') FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
    " WHERE n.nspname IN ('public', 'refproj') AND p.prokind IN ('f', 'p')",
    "types": "SELECT t.typname, t.typtype, obj_description(t.oid, 'pg_type') FROM pg_type AS t"
    " JOIN pg_namespace AS n ON n.oid = t.typnamespace WHERE n.nspname IN ('public', 'refproj')",
    "triggers": "SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled"
    " FROM pg_trigger AS t WHERE NOT t.tgisinternal",
    "sequences": "SELECT schemaname, sequencename, data_type::text, start_value, increment_by"
    " FROM pg_sequences WHERE schemaname IN ('public', 'refproj')",
    "default_privileges": "SELECT defaclrole::regrole::text, defaclobjtype, defaclacl::text"
    " FROM pg_default_acl",
}


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {name: sorted(conn.execute(query).fetchall(), key=repr) for name, query in SNAPSHOT.items()}


def on_database(url: str, dbname: str) -> str:
    return make_url(url).set(database=dbname).render_as_string(hide_password=False)


def install_release(url: str, commit: str, revision: str, workdir: Path) -> None:
    """Migrate the database at ``url`` to ``revision`` as the release at ``commit`` did: that
    tree's migrations, SQL files and refproj package, run by its own Alembic environment, so an
    edit made since to any file it applied shows as a difference from a fresh install."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "alembic.ini", "migrations", "refproj", "sql"],
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.fail(f"git is needed to check out the release {commit[:7]} (not installed)")
    if archive.returncode != 0:
        pytest.fail(
            f"the release {commit[:7]} is not in this clone ({archive.stderr.decode().strip()}):"
            " the upgrade test needs the full history of main (git fetch --unshallow)"
        )
    tree = workdir / f"release-{commit[:7]}"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(tree / "alembic.ini"), "upgrade", revision],
        cwd=tree,
        env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(tree)},  # its refproj, not today's
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def schema_dump(url: str) -> list[str]:
    """``pg_dump --schema-only`` of the database, by the server's own major, without the
    \\restrict lines, whose key is random in every dump."""
    with psycopg.connect(url) as conn:
        tools = dump_tools(conn)
    assert tools is not None, "no pg_dump of this server's major version is installed"
    dump = subprocess.run(
        [tools / "pg_dump", "--schema-only", url], capture_output=True, text=True, check=True
    )
    random_keys = ("\\restrict ", "\\unrestrict ")
    return [line for line in dump.stdout.splitlines() if not line.startswith(random_keys)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def released_files() -> dict[str, str]:
    """The manifest: each released file's path (from the repository root) and its sha256."""
    lines = [line for line in MANIFEST.read_text().splitlines() if line and line[0] != "#"]
    return {path: digest for digest, path in (line.split("  ", 1) for line in lines)}


def test_released_revision_files_are_unchanged() -> None:
    """The files of released revisions are never edited: the next release adds, it does not rewrite."""
    released = released_files()
    assert set(released) >= {
        "sql/0002_source_run_summary_index.sql",
        "sql/0003_projection.sql",
        "sql/0003_projection_down.sql",
        "migrations/versions/0002_source_run_summary_index.py",
        "migrations/versions/0003_projection.py",
    }
    changed = [path for path, digest in released.items() if sha256(ROOT / path) != digest]
    assert changed == [], f"released files changed: {changed} (see docs/MIGRATIONS.md)"


def test_released_revisions_read_only_released_files() -> None:
    """Every SQL file a released migration script names, or that a folder it names holds, is
    released too: editing a live file (sql/projection/, sql/projection_down.sql) for the next
    release can never change what a released upgrade or downgrade applies."""
    released = released_files()
    scripts = [path for path in released if path.startswith("migrations/versions/")]
    assert len(scripts) >= 2
    unreleased = []
    for script in sorted(scripts):
        tree = ast.parse((ROOT / script).read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or not node.value:
                continue
            target = ROOT / "sql" / node.value
            files = sorted(target.glob("*.sql")) if target.is_dir() else [target]
            unreleased += [
                f"{script} reads {path}"
                for path in (file.relative_to(ROOT).as_posix() for file in files)
                if path.endswith(".sql") and path not in released
            ]
    assert unreleased == [], "see docs/MIGRATIONS.md, Making the next release"


@pytest.fixture
def fresh_db_url(empty_db_url: str) -> Iterator[str]:
    """A second empty database on the same server, dropped afterwards."""
    name = make_url(empty_db_url).database + "_fresh"
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = on_database(empty_db_url, name)
    try:
        yield url
    finally:
        with psycopg.connect(empty_db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def reader_role(empty_db_url: str) -> Iterator[str]:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(READER)))
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(READER)))
    try:
        yield READER
    finally:
        with psycopg.connect(empty_db_url, autocommit=True) as conn:
            for dbname in (conn.info.dbname, conn.info.dbname + "_fresh"):
                with psycopg.connect(on_database(empty_db_url, dbname)) as db:
                    if db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone():
                        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(READER)))
                        db.commit()
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(READER)))


# The summary index as revision 0002 built it before issue 8: no length bound.
UNBOUNDED_SUMMARY = "(source_kind, source_id, run_id, occurred_at DESC) WHERE run_id IS NOT NULL"


def unbound_the_summary_index(conn: psycopg.Connection[Any]) -> None:
    """Give a database at 0003 the summary index it had before issue 8 (the released 0002 was
    changed to the bounded one), named as refproj named it, per partition on a partitioned table."""
    conn.execute("DROP INDEX spine_events_source_run_summary_idx")
    partitions = conn.execute(
        "SELECT relid::regclass::text FROM pg_partition_tree('spine_events') WHERE level > 0 ORDER BY 1"
    ).fetchall()
    if not partitions:
        conn.execute(f"CREATE INDEX spine_events_source_run_summary_idx ON spine_events {UNBOUNDED_SUMMARY}")
        return
    conn.execute(f"CREATE INDEX spine_events_source_run_summary_idx ON ONLY spine_events {UNBOUNDED_SUMMARY}")
    for (partition,) in partitions:
        conn.execute(f"CREATE INDEX {partition}_refproj_summary_idx ON {partition} {UNBOUNDED_SUMMARY}")
        index = f"{partition}_refproj_summary_idx"
        conn.execute(f"ALTER INDEX spine_events_source_run_summary_idx ATTACH PARTITION {index}")


def assert_long_ids_are_written(conn: psycopg.Connection[Any]) -> str:
    """The application's inserts that the unbounded indexes refused: a 2,900-character run id,
    and a connector id and a connection id of 1,400 characters each (random, incompressible)."""
    connector, connection = incompressible(11, 1400), incompressible(12, 1400)
    conn.execute("INSERT INTO connectors (connector_id) VALUES (%s)", (connector,))
    conn.execute(
        "INSERT INTO connector_instances (connector_instance_id, connector_id) VALUES (%s, %s)",
        (connection, connector),
    )
    conn.execute(
        "INSERT INTO spine_events (event_type, occurred_at, source_kind, source_id, run_id)"
        " VALUES ('run.completed', '2026-01-06 11:00+00', 'connector', 'acme', %s)",
        (incompressible(13, 2900),),
    )
    assert conn.execute(
        "SELECT octet_length(run_id) FROM spine_events WHERE octet_length(run_id) > 2000"
    ).fetchall() == [(2900,)]
    return connection


def overview_and_details(conn: psycopg.Connection[Any]) -> tuple[list[Any], list[Any]]:
    overview = conn.execute("SELECT to_jsonb(s) FROM refproj.connection_summaries(%s) AS s", (AT,)).fetchall()
    details = conn.execute(
        "SELECT to_jsonb(d) FROM refproj.connection_summary AS s"
        " CROSS JOIN LATERAL refproj.connection_detail(s.connector_instance_id, 5, %s) AS d"
        " ORDER BY s.connector_instance_id",
        (AT,),
    ).fetchall()
    return overview, details


def test_upgrade_from_0003_equals_a_fresh_install_and_keeps_serving(
    empty_db_url: str, fresh_db_url: str, reader_role: str, tmp_path: Path
) -> None:
    # The last release with data in it and a reader granted, as a deployment has it: its version
    # table and its summary index without the length bound issue 8 added.
    install_release(empty_db_url, RELEASE_0003, "0003", tmp_path)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            assert_long_ids_are_written(conn)
        conn.rollback()
        seed(conn, "tiny")
        conn.commit()
        conn.execute("SELECT refproj.refresh_connection_summary()")
        conn.execute("SELECT refproj.grant_reader(%s)", (reader_role,))
        conn.commit()
        before = overview_and_details(conn)
    assert len(before[0]) == 7 and len(before[1]) == 7

    migrate.upgrade(empty_db_url)
    migrate.upgrade(fresh_db_url)
    with psycopg.connect(fresh_db_url) as conn:
        conn.execute("SELECT refproj.grant_reader(%s)", (reader_role,))
        conn.commit()

    # Exactly the schema of a fresh install: objects, definitions, comments and privileges.
    upgraded, fresh = snapshot(empty_db_url), snapshot(fresh_db_url)
    assert upgraded.keys() == fresh.keys()
    for part in upgraded:
        assert upgraded[part] == fresh[part], part
    assert any(row[1] == "connection_summary" for row in upgraded["relations"])
    assert schema_dump(empty_db_url) == schema_dump(fresh_db_url)

    # The data held at 0003 is served as before, with no refresh needed, and the reader still reads it.
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT source_changed FROM refproj.projection_status()").fetchone() == (False,)
        assert overview_and_details(conn) == before
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(reader_role)))
        assert overview_and_details(conn) == before
        refreshed = conn.execute("SELECT refreshed FROM refproj.refresh_connection_summary()").fetchone()
        assert refreshed is not None
        assert overview_and_details(conn) == before
        conn.execute("RESET ROLE")
        # The writes the old indexes refused now succeed, and the refresh still serves everyone.
        long_connection = assert_long_ids_are_written(conn)
        conn.commit()
        conn.execute("SELECT refproj.refresh_connection_summary()")
        overview, details = overview_and_details(conn)
        assert [row[0]["connector_instance_id"] for row in overview].count(long_connection) == 1
        assert [row for row in overview if row[0]["connector_instance_id"] != long_connection] == before[0]
        assert [row for row in details if row[0]["connector_instance_id"] != long_connection] == before[1]


def test_revision_0005_replaces_the_unbounded_indexes_while_the_application_writes(empty_db_url: str) -> None:
    """Revision 0005 builds the bounded indexes CONCURRENTLY: with an application transaction
    open on spine_events, the build waits for that transaction instead of blocking it, the
    application goes on writing every source table (a lock wait would fail its statements at
    once), and once it commits the upgrade ends with both indexes in their new shape."""
    migrate.upgrade(empty_db_url, "0004")
    with psycopg.connect(empty_db_url) as conn:
        unbound_the_summary_index(conn)
        conn.commit()
    spine_insert = (
        "INSERT INTO spine_events (event_type, source_kind, source_id, run_id)"
        " VALUES (%s, 'connector', 'acme', %s)"
    )
    with psycopg.connect(empty_db_url) as writer, psycopg.connect(empty_db_url, autocommit=True) as watcher:
        writer.execute("SET lock_timeout = '1ms'")
        writer.execute(spine_insert, ("x", "r1"))
        failures: list[BaseException] = []

        def upgrade() -> None:
            try:
                migrate.upgrade(empty_db_url)
            except BaseException as error:  # reported by the test thread
                failures.append(error)

        migration = threading.Thread(target=upgrade)
        migration.start()
        # The build reaches the point where it waits for the writer's transaction.
        deadline = time.monotonic() + 60
        while watcher.execute(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event = 'virtualxid'"
            " AND pid <> pg_backend_pid() AND strpos(query, 'INDEX CONCURRENTLY') > 0)"
        ).fetchone() != (True,):
            assert time.monotonic() < deadline and migration.is_alive() and not failures, failures
            time.sleep(0.01)
        writer.execute("INSERT INTO connectors (connector_id) VALUES ('acme')")
        writer.execute(
            "INSERT INTO connector_instances (connector_instance_id, connector_id) VALUES ('cin', 'acme')"
        )
        writer.execute(spine_insert, ("y", "r2"))
        writer.commit()
        migration.join(timeout=120)
        assert not migration.is_alive() and failures == []
        definitions = watcher.execute(
            "SELECT indexname, split_part(indexdef, ' USING ', 2) FROM pg_indexes"
            " WHERE indexname IN ('spine_events_source_run_summary_idx', 'connector_instances_connector_idx')"
            "    OR indexname LIKE '%bounded' ORDER BY 1"
        ).fetchall()
    assert definitions == [
        ("connector_instances_connector_idx", "hash (connector_id)"),
        (
            "spine_events_source_run_summary_idx",
            "btree (source_kind, source_id, run_id, occurred_at DESC) WHERE ((run_id IS NOT NULL) AND"
            " (((octet_length(source_kind) + octet_length(source_id)) + octet_length(run_id)) <= 2000))",
        ),
    ]
