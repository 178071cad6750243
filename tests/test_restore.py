"""Restores and copies (issue 9, section 2): a database made with the real pg_dump and pg_restore.

The tools are those of the server's own major (Debian's /usr/lib/postgresql/<major>/bin, the
wheel refproj.embedded uses for that major, or the PATH's when its version matches). Where none
matches (REFPROJ_TEST_URL naming a server whose client tools are not installed here), each test
reproduces in SQL, in the test's own database, the state that restore leaves (documented in
``reproduce``) and asserts the same outcome; it warns that it did, so the run says which it was.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from refproj import Projection, embedded, migrate
from refproj.rows import Status
from refproj.settings import SOURCE_TABLES

AT = datetime(2026, 1, 6, 12, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What a restore into a younger cluster carries: a writer's xid far beyond this cluster's counter.
# A write that lands in refproj.source_writes (connections, unlike run events, are not per run).
RENAME = "UPDATE connector_instances SET display_name = 'Work' WHERE connector_instance_id = 'cin_work'"
FOREIGN_XID = "SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::bigint + 1000000000)::text::xid8"


def _tool_major(tool: Path) -> int | None:
    output = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"\)\s+(\d+)", output)
    return int(match.group(1)) if match else None


def dump_tools(db: psycopg.Connection[Any]) -> Path | None:
    """The directory holding pg_dump and pg_restore of the server's major, or None."""
    major = int(db.execute("SHOW server_version_num").fetchone()[0]) // 10000
    candidates: list[Path] = []
    with contextlib.suppress(embedded.EmbeddedServerError):
        candidates.append(embedded.bindir(major))
    on_path = shutil.which("pg_dump")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all(
            (directory / tool).is_file() and _tool_major(directory / tool) == major
            for tool in ("pg_dump", "pg_restore")
        ):
            return directory
    return None


def run(tool: Path, *args: str) -> None:
    result = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr


def reproduce(db: psycopg.Connection[Any], kind: str) -> None:
    """What each restore leaves, made in place when no matching pg_dump is installed.

    schema-only: both views unpopulated, every refproj table empty (the singleton too).
    full: the views populated again from the restored tables (pg_restore's post-data REFRESH).
    """
    if kind == "schema-only":
        db.execute("REFRESH MATERIALIZED VIEW refproj.connection_summary_json WITH NO DATA")
        db.execute("REFRESH MATERIALIZED VIEW refproj.connection_summary WITH NO DATA")
        db.execute(
            "TRUNCATE refproj.projection_state, refproj.run_facts, refproj.source_writes,"
            " refproj.dirty_runs, refproj.spine_partitions"
        )
    else:
        db.execute("REFRESH MATERIALIZED VIEW refproj.connection_summary")
        db.execute("REFRESH MATERIALIZED VIEW refproj.connection_summary_json")


@pytest.fixture
def target_url(postgresql_proc: Any, db: psycopg.Connection[Any]) -> Iterator[str]:
    """An empty database to restore into, dropped afterwards."""
    from pytest_postgresql.janitor import DatabaseJanitor

    name = f"{db.info.dbname}_restored"
    janitor = DatabaseJanitor(
        user=postgresql_proc.user,
        host=postgresql_proc.host,
        port=postgresql_proc.port,
        dbname=name,
        password=postgresql_proc.password,
    )
    janitor.drop()
    with janitor:
        yield str(make_url(db_url_of(db)).set(database=name).render_as_string(hide_password=False))


def db_url_of(conn: psycopg.Connection[Any]) -> str:
    info = conn.info
    return str(
        make_url("postgresql://")
        .set(
            host=info.host,
            port=info.port,
            username=info.user,
            password=info.password or None,
            database=info.dbname,
        )
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def restore(db: psycopg.Connection[Any], target_url: str, tmp_path: Path) -> Any:
    """restore(kind, source) -> the URL of a database made from ``source`` (default: this test's
    database) by ``kind``: "schema-only" (pg_dump --schema-only, then the source tables' rows
    and the Alembic version restored as data, as an application reloads its data) or "full"
    (pg_dump -Fc, pg_restore)."""
    tools = dump_tools(db)

    def make(kind: str, source: psycopg.Connection[Any] = db) -> str:
        source_url = db_url_of(source)
        if tools is None:
            warnings.warn(
                f"no pg_dump of the server's major here: {kind} restore reproduced in SQL", stacklevel=2
            )
            reproduce(source, kind)
            return source_url
        archive = str(tmp_path / "refproj.dump")
        run(tools / "pg_dump", "--format=custom", f"--file={archive}", f"--dbname={source_url}")
        if kind == "full":
            run(tools / "pg_restore", f"--dbname={target_url}", archive)
            return target_url
        # pg_dump --schema-only, not pg_restore --schema-only: the latter keeps the views'
        # REFRESH (a post-data entry), the former leaves it out.
        schema = str(tmp_path / "refproj-schema.dump")
        run(
            tools / "pg_dump",
            "--schema-only",
            "--format=custom",
            f"--file={schema}",
            f"--dbname={source_url}",
        )
        run(tools / "pg_restore", f"--dbname={target_url}", schema)
        sequence = source.execute("SELECT pg_get_serial_sequence('spine_events', 'event_seq')").fetchone()[0]
        tables = [*SOURCE_TABLES, "refproj_alembic_version", sequence.split(".")[-1]]
        tables += [
            row[0]
            for row in source.execute(
                "SELECT relid::regclass::text FROM pg_partition_tree('spine_events') WHERE level > 0"
            )
        ]
        for table in tables:  # one at a time, connectors before the rows that reference them
            run(tools / "pg_restore", "--data-only", f"--table={table}", f"--dbname={target_url}", archive)
        return target_url

    return make


@contextlib.contextmanager
def projection(url: str) -> Iterator[Projection]:
    with Projection(url, staleness_bound=None, read_reuse=0, pool_size=1, max_overflow=0) as proj:
        yield proj


def seeded(db: psycopg.Connection[Any], db_url: str) -> list[Any]:
    """SCENARIOS.md's siblings with a succeeded run of cin_work and a failed run of cin_personal,
    refreshed; returns the overview at AT."""
    from tests.world import World

    world = World(db)
    world.siblings()
    world.succeeded_run("run_ok", "cin_work", "10:00", "10:05")
    world.failed_run("run_bad", "cin_personal", "10:10", "10:12", "connector_exit")
    with projection(db_url) as proj:
        proj.refresh()
        rows = list(proj.list(at=AT))
    assert [(r["connector_instance_id"], r["last_run"]["run_id"], r["last_run"]["status"]) for r in rows] == [
        ("cin_work", "run_ok", "succeeded"),
        ("cin_personal", "run_bad", "failed"),
    ]
    return rows


def state(url: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM refproj.projection_state),"
            " (SELECT count(*) FROM refproj.run_facts),"
            " (SELECT count(*) FROM refproj.source_writes), (SELECT count(*) FROM refproj.dirty_runs),"
            " (SELECT bool_and(relispopulated) FROM pg_class WHERE oid IN"
            "   ('refproj.connection_summary'::regclass, 'refproj.connection_summary_json'::regclass))"
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_schema_only_restore_is_repaired_by_the_first_refresh(
    db: psycopg.Connection[Any], db_url: str, restore: Any
) -> None:
    expected = seeded(db, db_url)
    url = restore("schema-only")
    # No singleton, empty run_facts, unpopulated views: the refresh used to fail for ever
    # (CONCURRENTLY on an unpopulated view) and the status answered NULLs.
    assert state(url)[0:2] == (0, 0) and state(url)[4] is False
    with projection(url) as proj:
        assert proj.status() == Status(
            as_of=EPOCH, source_changed=True, last_refresh_ms=None, refresh_count=0, building=True
        )
        overview = proj.list(at=AT)
        assert (list(overview), overview.building, overview.source_changed) == ([], True, True)
        # The detail reads the source tables meanwhile, not the empty run_facts.
        assert proj.get("cin_personal", at=AT)["last_run"]["run_id"] == "run_bad"
        result = proj.refresh()
        assert result.refreshed is True
        assert list(proj.list(at=AT)) == expected
        status = proj.status()
        assert (status.as_of, status.source_changed, status.refresh_count, status.building) == (
            result.as_of,
            False,
            1,
            False,
        )
        assert proj.get("cin_work", at=AT)["last_run"]["run_id"] == "run_ok"
    assert state(url) == (1, 2, 0, 0, True)


def test_a_watcher_repairs_a_schema_only_restore_unasked(
    db: psycopg.Connection[Any], db_url: str, restore: Any
) -> None:
    from tests.world import wait_for

    expected = seeded(db, db_url)
    url = restore("schema-only")
    with Projection(url, staleness_bound=0.3, read_reuse=0) as proj:
        assert proj.list(at=AT).building is True  # the first list() starts the watcher
        wait_for(lambda: list(proj.list(at=AT)) == expected, what="the watcher's rebuild")
        assert (proj.status().refresh_count, proj.status().building) == (1, False)


@pytest.mark.parametrize("alembic", ["upgrade", "stamp"])
def test_alembic_at_head_recreates_the_status_row_after_a_schema_only_restore(
    db: psycopg.Connection[Any], db_url: str, restore: Any, alembic: str
) -> None:
    expected = seeded(db, db_url)
    url = restore("schema-only")
    before = datetime.now(UTC)
    if alembic == "upgrade":
        migrate.upgrade(url)  # at head: no revision runs, the repair step does
    else:
        command.stamp(migrate.alembic_config(url), "head")
    after = datetime.now(UTC)
    assert state(url)[0:2] == (1, 0)
    with projection(url) as proj:
        status = proj.status()
        assert before <= status.as_of <= after
        assert (status.source_changed, status.last_refresh_ms, status.refresh_count, status.building) == (
            True,
            None,
            0,
            True,
        )
        # The migration asked for the rebuild; the first refresh (a watcher's) does it.
        assert proj.refresh().refreshed is True
        assert list(proj.list(at=AT)) == expected
        assert (proj.status().source_changed, proj.status().building) == (False, False)


def test_full_restore_serves_what_was_stored_and_catches_up(
    db: psycopg.Connection[Any], db_url: str, restore: Any
) -> None:
    from tests.world import World

    stored = seeded(db, db_url)
    # A write not yet refreshed when the dump is taken.
    World(db).failed_run("run_late", "cin_work", "11:00", "11:02", "connector_exit")
    refreshes, ticket = db.execute(
        "SELECT refresh_count, (SELECT last_value FROM refproj.refresh_ticket) FROM refproj.projection_state"
    ).fetchone()
    url = restore("full")
    with psycopg.connect(url) as conn:
        # The sequence came back with its value, so read-your-writes coalescing keeps its order.
        assert conn.execute("SELECT last_value FROM refproj.refresh_ticket").fetchone() == (ticket,)
    with projection(url) as proj:
        assert proj.status().refresh_count == refreshes
        overview = proj.list(at=AT)
        assert (list(overview), overview.source_changed, overview.building) == (stored, True, False)
        assert proj.get("cin_work", at=AT)["last_run"]["run_id"] == "run_late"
        assert proj.refresh().refreshed is True
        rows = proj.list(at=AT)
        assert [(r["connector_instance_id"], r["last_run"]["run_id"]) for r in rows] == [
            ("cin_work", "run_late"),
            ("cin_personal", "run_bad"),
        ]
        assert (rows.source_changed, proj.status().refresh_count) == (False, refreshes + 1)
    assert state(url) == (1, 3, 0, 0, True)


def test_transaction_ids_of_another_cluster_are_discarded_by_one_refresh(
    db: psycopg.Connection[Any], db_url: str, restore: Any
) -> None:
    from tests.world import World

    seeded(db, db_url)
    World(db).failed_run("run_late", "cin_work", "11:00", "11:02", "connector_exit")
    db.execute(RENAME)
    # The dump of an older cluster: the writer's xid is far beyond this cluster's counter.
    db.execute(f"UPDATE refproj.source_writes SET xid = ({FOREIGN_XID})")
    assert db.execute("SELECT count(*) FROM refproj.source_writes").fetchone() == (1,)
    url = restore("full")
    with projection(url) as proj:
        assert proj.status().source_changed is True
        assert proj.refresh().refreshed is True
        # Before: still true after every refresh, so a watcher refreshed twice a second.
        assert proj.status().source_changed is False
        rows = proj.list(at=AT)
        assert (rows[0]["display_name"], rows[0]["last_run"]["run_id"]) == ("Work", "run_late")
    assert state(url) == (1, 3, 0, 0, True)


def test_a_commit_after_the_refresh_snapshot_keeps_its_write_pending(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    """The foreign-xid rule keeps the guarantee for this cluster's own late commits: a writer
    that starts and commits after the refresh took its snapshot (its xid beyond that snapshot's
    xmax) stays pending, while a foreign xid goes."""
    from tests.world import backends_waiting, wait_for

    seeded(db, db_url)
    db.execute(f"INSERT INTO refproj.source_writes VALUES (({FOREIGN_XID}))")
    with psycopg.connect(db_url) as blocker, psycopg.connect(db_url, autocommit=True) as refresher:
        # Hold the refresh after its snapshot, at REFRESH ... CONCURRENTLY's EXCLUSIVE lock (an
        # index build's SHARE lock conflicts with it, and no writer of a source table needs it).
        blocker.execute("CREATE INDEX refproj_test_hold ON refproj.connection_summary (connector_id)")
        outcome: list[Any] = []
        thread = threading.Thread(
            target=lambda: outcome.append(
                refresher.execute("SELECT refreshed FROM refproj.refresh_connection_summary()").fetchone()
            )
        )
        thread.start()
        wait_for(
            lambda: backends_waiting(db, "Lock", "%refresh_connection_summary%"), what="the refresh to wait"
        )
        with psycopg.connect(db_url) as writer:
            writer.execute(RENAME)
        blocker.rollback()
        thread.join()
    assert outcome == [(True,)]
    # Only the late writer's row is left: the next refresh absorbs it.
    assert db.execute(
        "SELECT count(*), bool_and(xid < pg_current_xact_id()) FROM refproj.source_writes"
    ).fetchone() == (1, True)
    with projection(db_url) as proj:
        assert proj.status().source_changed is True
        assert proj.list(at=AT)[0]["display_name"] == "acme"  # unnamed: the connector's id
        assert proj.refresh().refreshed is True
        assert proj.status().source_changed is False
        assert proj.list(at=AT)[0]["display_name"] == "Work"


@pytest.mark.parametrize("kind", ["full", "schema-only"])
def test_a_partitioned_spine_events_survives_a_restore(
    db: psycopg.Connection[Any], empty_db_url: str, restore: Any, kind: str
) -> None:
    """Restored partitions have new oids (full) or no entry in refproj.spine_partitions
    (schema-only) while their triggers came back: the first refresh used to fail for ever
    ("trigger refproj_note_insert ... already exists")."""
    from tests import test_partitions as parts

    with psycopg.connect(empty_db_url, autocommit=True) as source:
        source.execute(parts.PARTITIONED_SPINE)
        for month in parts.MONTHS:
            source.execute(parts.month_partition(month))
        migrate.upgrade(empty_db_url)
        parts.connections(source)
        parts.succeeded_run(source, "run_jan", "2026-01-10")
        source.execute("SELECT refproj.refresh_connection_summary()")
        parts.succeeded_run(source, "run_feb", "2026-02-10")  # pending at dump time
        url = restore(kind, source)
    with psycopg.connect(url, autocommit=True) as restored:
        restored.execute("SET TimeZone = 'UTC'")
        assert restored.execute("SELECT refreshed FROM refproj.refresh_connection_summary()").fetchone() == (
            True,
        )
        assert parts.source_changed(restored) is False
        assert parts.last_run(restored) == ("run_feb", "run_feb")
        assert restored.execute(
            "SELECT relid::text, watched FROM refproj.spine_partitions ORDER BY 1"
        ).fetchall() == [(f"spine_events_{month}", True) for month in parts.MONTHS]
        # Writes straight into a partition are still seen, and the next refresh is incremental.
        parts.succeeded_run(restored, "run_mar", "2026-03-10", table="spine_events_2026_03")
        parts.assert_incremental_equals_rebuild(restored)
        assert parts.last_run(restored) == ("run_mar", "run_mar")
