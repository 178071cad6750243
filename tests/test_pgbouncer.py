"""Everything through a real PgBouncer in transaction pooling mode with a stock configuration
(tests/pgbouncer.py): reads, details, refreshes and read-your-writes under concurrency, the
read timeout, coalesced refreshes across processes, the watcher, and two `refproj migrate` at once."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory

from refproj import Projection, StatementCanceled, migrate
from tests.pgbouncer import PgBouncer
from tests.refresh_worker import refresh_burst
from tests.world import World, wait_for


@pytest.fixture(scope="module")
def bouncer() -> Iterator[PgBouncer]:
    from tests.conftest import _server

    pooler = PgBouncer(_server.render_as_string(hide_password=False))
    yield pooler
    pooler.stop()


@pytest.fixture
def pooled_url(bouncer: PgBouncer, db_url: str) -> Iterator[str]:
    yield bouncer.url(db_url)
    bouncer.drop_server_sessions(db_url)


@pytest.fixture
def world(refreshed_siblings: World) -> World:
    return refreshed_siblings


def test_stock_pgbouncer_refuses_startup_options(pooled_url: str) -> None:
    # What refproj used to send: the reason it now sets everything per transaction.
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
        psycopg.connect(pooled_url, options="-c TimeZone=UTC")


def test_concurrent_calls_through_pgbouncer_all_succeed_and_read_their_writes(
    world: World, db: psycopg.Connection[Any], pooled_url: str
) -> None:
    # Server sessions of this database start in another zone; refproj's answers stay in UTC.
    db.execute("SELECT set_config('refproj.test_db', current_database(), false)")
    db.execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET TimeZone = %L',"
        " current_setting('refproj.test_db'), 'America/New_York'); END $$"
    )
    errors: list[BaseException] = []
    with Projection(pooled_url, staleness_bound=None, read_reuse=0, pool_size=8, max_overflow=0) as proj:

        def caller(index: int) -> None:
            # Far more than psycopg's five executions before it would prepare a statement, on
            # connections whose transactions PgBouncer hands to whichever server session is free.
            try:
                for _ in range(12):
                    assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
                    assert proj.get("cin_work")["last_run"]["run_id"] == "run_ok"
                    assert proj.status().refresh_count >= 1
                    if index % 4 == 0:
                        proj.refresh()
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []

        # Read-your-writes: a write committed before refresh() is in the next list().
        world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
        proj.refresh()
        rows = proj.list()
        assert rows[0]["last_run"]["run_id"] == "run_bad"
        assert rows.source_changed is False
        # The detail's timestamps are UTC although nothing was set at connection start.
        assert proj.get("cin_work")["last_run"]["finished_at"] == "2026-01-05T12:01:00+00:00"
        assert rows[0]["last_run"]["finished_at"] == "2026-01-05T12:01:00+00:00"
    with psycopg.connect(pooled_url, prepare_threshold=None) as plain:
        assert plain.execute("SHOW TimeZone").fetchone() == ("America/New_York",)


def test_the_read_timeout_applies_through_pgbouncer_and_leaves_nothing_behind(
    world: World, db: psycopg.Connection[Any], db_url: str, pooled_url: str
) -> None:
    locker = psycopg.connect(pooled_url)
    # The overview reads the refresh bookkeeping: hold it so the read cannot finish.
    locker.execute("LOCK TABLE refproj.projection_state IN ACCESS EXCLUSIVE MODE")
    try:
        with (
            Projection(pooled_url, staleness_bound=None, read_reuse=0, statement_timeout=0.3) as proj,
            pytest.raises(StatementCanceled, match="canceling statement due to statement timeout"),
        ):
            proj.list()
    finally:
        locker.rollback()
        locker.close()
    # Every server session PgBouncer holds for this database is back to the server's defaults.
    sessions = int(
        db.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]  # type: ignore[index]
    )
    assert sessions >= 1
    with psycopg.connect(db_url) as direct:
        defaults = direct.execute(
            "SELECT current_setting('statement_timeout'), current_setting('TimeZone')"
        ).fetchone()
    with psycopg.connect(pooled_url, autocommit=True, prepare_threshold=None) as plain:
        for _ in range(sessions * 2):
            assert (
                plain.execute(
                    "SELECT current_setting('statement_timeout'), current_setting('TimeZone')"
                ).fetchone()
                == defaults
            )


def test_sixteen_refreshes_from_four_processes_through_pgbouncer(
    world: World, db: psycopg.Connection[Any], pooled_url: str
) -> None:
    refresh_burst(db, pooled_url)


def test_the_watcher_polls_through_pgbouncer(
    world: World, db: psycopg.Connection[Any], pooled_url: str
) -> None:
    with Projection(pooled_url, staleness_bound=0.6, read_reuse=0.1) as proj:
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        world.succeeded_run("run_auto", "cin_work", "12:00", "12:05")
        rows = wait_for(
            lambda: (r := proj.list()) and r[0]["last_run"]["run_id"] == "run_auto" and r,
            what="the new run to reach list() through PgBouncer",
        )
        assert rows.source_changed is False
        # It polled: a LISTEN through a transaction pooler would stay on whichever server session
        # ran it. As many open transactions as there are server sessions visit each one.
        sessions = int(
            db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchone()[0]  # type: ignore[index]
        )
        clients = [psycopg.connect(pooled_url, prepare_threshold=None) for _ in range(sessions)]
        try:
            seen = [
                client.execute("SELECT pg_backend_pid(), count(*) FROM pg_listening_channels()").fetchone()
                for client in clients
            ]
        finally:
            for client in clients:
                client.close()
        assert len({row[0] for row in seen if row is not None}) == sessions
        assert {row[1] for row in seen if row is not None} == {0}


def test_two_refproj_migrate_at_once_through_pgbouncer_reach_head_and_leave_nothing_behind(
    bouncer: PgBouncer, empty_db_url: str
) -> None:
    # Server sessions of this database start in another zone: a session-level SET TimeZone
    # left behind by a migration would show on the session the next client gets.
    with psycopg.connect(empty_db_url, autocommit=True) as direct:
        direct.execute(f"ALTER DATABASE \"{direct.info.dbname}\" SET TimeZone = 'America/New_York'")
    url = bouncer.url(empty_db_url)
    script = Path(sys.executable).parent / "refproj"
    processes = [
        subprocess.Popen(
            [str(script), "--database-url", url, "migrate"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(process.communicate(timeout=300), process.returncode) for process in processes]
    assert [code for _, code in outcomes] == [0, 0], outcomes
    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    with psycopg.connect(empty_db_url, autocommit=True) as direct:
        assert direct.execute("SELECT version_num FROM refproj_alembic_version").fetchall() == [(head,)]
        index = direct.execute(
            "SELECT indisvalid FROM pg_index"
            " WHERE indexrelid = 'spine_events_source_run_summary_idx'::regclass"
        ).fetchone()
        assert index == (True,)
        sessions = int(
            direct.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchone()[0]  # type: ignore[index]
        )
        assert sessions >= 1
        world = World(direct)
        world.siblings()
        world.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    # As many open transactions as PgBouncer holds server sessions: each runs on its own one, so
    # together they see every session the migrations used. None kept a setting or a prepared
    # statement.
    clients = [psycopg.connect(url, prepare_threshold=None) for _ in range(sessions)]
    try:
        seen = [
            client.execute(
                "SELECT pg_backend_pid(), current_setting('TimeZone'),"
                " (SELECT count(*) FROM pg_prepared_statements)"
            ).fetchone()
            for client in clients
        ]
    finally:
        for client in clients:
            client.close()
    assert len({row[0] for row in seen if row is not None}) == sessions
    assert {row[1:] for row in seen if row is not None} == {("America/New_York", 0)}
    with Projection(url, staleness_bound=None) as proj:
        proj.refresh()
        assert [row["connector_instance_id"] for row in proj.list()] == ["cin_work", "cin_personal"]
