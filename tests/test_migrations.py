"""SCENARIOS.md 23 and 24 and the repair of an INVALID summary index, on an empty database.

Migrations run in-process through refproj.migrate and, where the contract names the CLI, as real
`alembic` processes pointed at the test database with DATABASE_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory

from refproj import migrate
from refproj.settings import SOURCE_TABLES

ROOT = Path(__file__).resolve().parents[1]
ALEMBIC = [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini")]
# The same alembic command line with INFO logging on stderr (env.py does not load alembic.ini's
# logging), so a test can see which process ran which revision.
LOGGED_ALEMBIC = [
    sys.executable,
    "-c",
    "import logging; logging.basicConfig(level=logging.INFO);"
    " from alembic.config import main; main(prog='alembic')",
    "-c",
    str(ROOT / "alembic.ini"),
]
INDEX = "spine_events_source_run_summary_idx"
CONTRACT_FUNCTIONS = [
    "connection_run_evidence",
    "connection_summaries",
    "connection_detail",
    "refresh_connection_summary",
    "projection_status",
    "resolve_connection",
]
SUMMARY_FIELDS = [
    "connector_instance_id",
    "connection_id",
    "connector_id",
    "display_name",
    "connector_display_name",
    "status",
    "source_kind",
    "created_at",
    "revoked_at",
    "streams",
    "stream_count",
    "total_records",
    "retained_bytes",
    "total_retained_bytes",
    "last_run",
    "last_successful_run",
    "failures_since_last_success",
    "max_staleness",
]
RUN_SUMMARY_FIELDS = [
    "connector_id",
    "run_id",
    "connector_instance_id",
    "status",
    "started_at",
    "last_at",
    "finished_at",
    "failure_reason",
    "event_count",
    "browser_surface_profile_key",
    "browser_surface_status",
    "browser_surface_wait_reason",
    "known_gaps",
    "collection_facts",
    "records_emitted",
]
USER_NAMESPACES = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"


def head_revision() -> str:
    head = ScriptDirectory.from_config(
        migrate.alembic_config("postgresql://unused/unused")
    ).get_current_head()
    assert head is not None
    return head


IN_CLASS_NS = f"JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE {USER_NAMESPACES}"
IN_PROC_NS = f"JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE {USER_NAMESPACES}"


def catalog(url: str) -> dict[str, set[tuple[Any, ...]]]:
    """The project-relevant catalog by name: what a migration can create or leave behind."""
    queries = {
        "schemas": f"SELECT n.nspname FROM pg_namespace AS n WHERE {USER_NAMESPACES}",
        "relations": f"SELECT n.nspname, c.relname, c.relkind FROM pg_class AS c {IN_CLASS_NS}",
        "functions": "SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)"
        f" FROM pg_proc AS p {IN_PROC_NS}",
        "triggers": "SELECT n.nspname, c.relname, t.tgname FROM pg_trigger AS t"
        f" JOIN pg_class AS c ON c.oid = t.tgrelid {IN_CLASS_NS} AND NOT t.tgisinternal",
        "sequences": "SELECT schemaname, sequencename FROM pg_sequences",
        "types": "SELECT n.nspname, t.typname FROM pg_type AS t"
        f" JOIN pg_namespace AS n ON n.oid = t.typnamespace WHERE {USER_NAMESPACES}",
        "extensions": "SELECT extname FROM pg_extension",
        "event_triggers": "SELECT evtname FROM pg_event_trigger",
    }
    with psycopg.connect(url) as conn:
        return {name: set(conn.execute(query).fetchall()) for name, query in queries.items()}


def catalog_rows(url: str) -> dict[str, set[tuple[Any, ...]]]:
    """User rows of pg_class, pg_proc, pg_trigger with oid, file node and row version (DDL changes them)."""
    queries = {
        "pg_class": "SELECT c.oid::int8, c.relname, c.relkind, c.relfilenode::int8, c.xmin::text"
        f" FROM pg_class AS c {IN_CLASS_NS}",
        "pg_proc": f"SELECT p.oid::int8, p.proname, p.xmin::text FROM pg_proc AS p {IN_PROC_NS}",
        "pg_trigger": "SELECT t.oid::int8, t.tgname, t.xmin::text FROM pg_trigger AS t"
        " WHERE NOT t.tgisinternal",
    }
    with psycopg.connect(url) as conn:
        return {name: set(conn.execute(query).fetchall()) for name, query in queries.items()}


def alembic_version(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('public.refproj_alembic_version')").fetchone() == (None,):
            return []
        return [row[0] for row in conn.execute("SELECT version_num FROM refproj_alembic_version")]


def index_state(url: str) -> tuple[int, bool, bool] | None:
    """(oid, indisvalid, indisready) of the summary index, or None when it does not exist."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT i.indexrelid::int8, i.indisvalid, i.indisready FROM pg_index AS i"
            " JOIN pg_class AS c ON c.oid = i.indexrelid WHERE c.relname = %s",
            (INDEX,),
        ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def alembic_env(url: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("REFPROJ_MIGRATION_LOCK_TIMEOUT", None)
    return env


def alembic_cli(url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The alembic command line on ``url``, as an operator runs it."""
    return subprocess.run(
        [*ALEMBIC, *arguments],
        cwd=ROOT,
        env=alembic_env(url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def offline_script(url: str, *arguments: str) -> str:
    """What ``alembic ... --sql`` prints for ``url`` (it never touches the database)."""
    done = alembic_cli(url, *arguments, "--sql")
    assert done.returncode == 0, done.stderr
    return done.stdout


def psql(url: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_everything_exists(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in SOURCE_TABLES:
            row = conn.execute(
                "SELECT c.relkind FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relname = %s",
                (table,),
            ).fetchone()
            assert row == ("r",), table
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'refproj'").fetchone() == (1,)
        assert conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = 'refproj.connection_summary'::regclass"
        ).fetchone() == ("m",)
        unique_indexes = conn.execute(
            "SELECT array_agg(a.attname ORDER BY k.ordinality)"
            " FROM pg_index AS i"
            " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, ordinality)"
            " JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE i.indrelid = 'refproj.connection_summary'::regclass AND i.indisunique AND i.indisvalid"
            "   AND i.indpred IS NULL"
            " GROUP BY i.indexrelid"
        ).fetchall()
        assert (["connector_instance_id"],) in unique_indexes
        assert conn.execute(
            "SELECT c.relkind IN ('v', 'r', 'm') FROM pg_class AS c"
            " WHERE c.oid = 'refproj.run_summaries'::regclass"
        ).fetchone() == (True,)
        for function in CONTRACT_FUNCTIONS:
            languages = conn.execute(
                "SELECT l.lanname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
                " JOIN pg_language AS l ON l.oid = p.prolang WHERE n.nspname = 'refproj' AND p.proname = %s",
                (function,),
            ).fetchall()
            assert len(languages) == 1, function
            if function == "connection_run_evidence":
                assert languages == [("plpgsql",)]
        # Every contract object explains itself to a DBA (\d+, \df+).
        comments = conn.execute(
            "SELECT p.proname, obj_description(p.oid, 'pg_proc') IS NOT NULL FROM pg_proc AS p"
            " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'refproj' AND p.proname = ANY(%s)",
            (CONTRACT_FUNCTIONS,),
        ).fetchall()
        assert sorted(comments) == sorted((f, True) for f in CONTRACT_FUNCTIONS)
        for relation in ("refproj.connection_summary", "refproj.run_summaries"):
            assert conn.execute(
                "SELECT obj_description(%s::regclass, 'pg_class') IS NOT NULL", (relation,)
            ).fetchone() == (True,), relation
        # Row shapes named by the contract, called as the contract writes them.
        columns = {
            "summaries": "SELECT * FROM refproj.connection_summaries() LIMIT 0",
            "summaries_at": "SELECT * FROM refproj.connection_summaries(now(), 'acme') LIMIT 0",
            "detail": "SELECT * FROM refproj.connection_detail('nope', 20) LIMIT 0",
            "evidence": "SELECT * FROM refproj.connection_run_evidence('nope') LIMIT 0",
            "runs": "SELECT * FROM refproj.run_summaries LIMIT 0",
            "status": "SELECT * FROM refproj.projection_status()",
        }
        names = {}
        for key, query in columns.items():
            cursor = conn.execute(query)
            assert cursor.description is not None
            names[key] = {c.name for c in cursor.description}
        assert set(SUMMARY_FIELDS) | {"freshness", "health"} <= names["summaries"]
        assert names["summaries_at"] == names["summaries"]
        detail_extra = {"recent_runs", "streams_retained", "unattributed_runs"}
        assert names["summaries"] | detail_extra <= names["detail"]
        assert {"last_run", "last_successful_run", "failures_since_last_success"} <= names["evidence"]
        assert set(RUN_SUMMARY_FIELDS) <= names["runs"]
        assert {"as_of", "source_changed", "last_refresh_ms", "refresh_count"} <= names["status"]
        definition = conn.execute("SELECT pg_get_indexdef(%s::regclass)", (INDEX,)).fetchone()
        assert definition == (
            f"CREATE INDEX {INDEX} ON public.spine_events USING btree"
            " (source_kind, source_id, run_id, occurred_at DESC) WHERE ((run_id IS NOT NULL)"
            " AND (((octet_length(source_kind) + octet_length(source_id)) + octet_length(run_id)) <= 2000))",
        )
    state = index_state(url)
    assert state is not None and state[1:] == (True, True)
    assert alembic_version(url) == [head_revision()]


def test_s23_upgrade_noop_downgrade_and_offline_script(empty_db_url):
    url = empty_db_url
    empty = catalog(url)
    assert ("public", "spine_events", "r") not in empty["relations"]
    assert alembic_version(url) == []

    migrate.upgrade(url)
    assert_everything_exists(url)
    migrated = catalog(url)
    assert migrated != empty

    # Again: a no-op, down to the catalog rows.
    before = catalog_rows(url)
    migrate.upgrade(url)
    assert catalog_rows(url) == before
    assert alembic_version(url) == [head_revision()]

    # Downgrade base: nothing of the project remains, Alembic's bookkeeping included.
    migrate.downgrade(url)
    assert catalog(url) == empty
    assert alembic_version(url) == []

    # Offline mode prints a script that psql applies cleanly to the empty database.
    offline = offline_script(url, "upgrade", "head")
    assert "CREATE INDEX CONCURRENTLY" in offline
    assert catalog(url) == empty, "--sql must not touch the database"
    applied = psql(url, offline)
    assert applied.returncode == 0, applied.stderr
    assert catalog(url) == migrated
    assert_everything_exists(url)

    # Online Alembic agrees that the psql-applied database is at head.
    rows = catalog_rows(url)
    migrate.upgrade(url)
    assert catalog_rows(url) == rows


def test_s24_two_concurrent_upgrades(empty_db_url):
    url = empty_db_url
    processes = [
        subprocess.Popen(
            [*LOGGED_ALEMBIC, "upgrade", "head"],
            cwd=ROOT,
            env=alembic_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=180) for p in processes]
    codes = [p.returncode for p in processes]
    assert codes == [0, 0], [err for _, err in outputs]
    # One applied the revisions, the other waited and found nothing to do.
    applied = [err for _, err in outputs if "Running upgrade  -> 0001" in err]
    assert len(applied) == 1, [err for _, err in outputs]
    assert_everything_exists(url)


def test_invalid_index_from_failed_build_is_repaired_on_upgrade(empty_db_url):
    url = empty_db_url
    migrate.upgrade(url, "0001")
    assert alembic_version(url) == ["0001"]
    assert index_state(url) is None
    create_index = (ROOT / "sql" / "0002_source_run_summary_index.sql").read_text(encoding="utf-8")

    with psycopg.connect(url) as writer, psycopg.connect(url, autocommit=True) as builder:
        writer.execute("INSERT INTO spine_events (event_type, run_id) VALUES ('run.started', 'r1')")
        builder.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            builder.execute(create_index)
        writer.rollback()
    invalid = index_state(url)
    assert invalid is not None
    assert invalid[1] is False

    migrate.upgrade(url)
    repaired = index_state(url)
    assert repaired is not None
    assert repaired[1:] == (True, True)
    assert repaired[0] != invalid[0]
    assert_everything_exists(url)


def test_upgrade_at_head_keeps_a_valid_index(empty_db_url):
    url = empty_db_url
    migrate.upgrade(url)
    before = index_state(url)
    assert before is not None and before[1:] == (True, True)

    cli = alembic_cli(url, "upgrade", "head")
    assert cli.returncode == 0, cli.stderr
    assert "Running upgrade" not in cli.stderr
    migrate.upgrade(url)
    assert index_state(url) == before


def test_index_invalidated_at_head_is_repaired_on_upgrade(empty_db_url):
    """At head, a DROP INDEX CONCURRENTLY that times out leaves the index INVALID; upgrade repairs it."""
    url = empty_db_url
    migrate.upgrade(url)
    before = index_state(url)
    assert before is not None

    with psycopg.connect(url) as writer, psycopg.connect(url, autocommit=True) as dropper:
        writer.execute("INSERT INTO spine_events (event_type, run_id) VALUES ('run.started', 'r1')")
        dropper.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            dropper.execute(f"DROP INDEX CONCURRENTLY {INDEX}")
        writer.rollback()
    invalid = index_state(url)
    assert invalid is not None
    assert (invalid[0], invalid[1]) == (before[0], False)

    migrate.upgrade(url)
    repaired = index_state(url)
    assert repaired is not None
    assert repaired[1:] == (True, True)
    assert repaired[0] != invalid[0]
    assert alembic_version(url) == [head_revision()]
