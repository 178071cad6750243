"""Faults: a refresh killed midway, a refresh blocked by a lock, dropped connections, an
exhausted pool. Each is produced with the real mechanism (pg_terminate_backend, table locks,
statement_timeout, a held pooled connection)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from refproj import DatabaseUnavailable, PoolExhausted, Projection, StatementCanceled
from refproj.settings import milliseconds
from tests.world import World, backends_waiting, wait_for


@pytest.fixture
def world(refreshed_siblings: World) -> World:
    return refreshed_siblings


def refresh_in_thread(proj: Projection) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(proj.refresh())
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_refresh_terminated_midway_keeps_the_previous_overview(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    locker = psycopg.connect(db_url)
    locker.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
    with (
        Projection(db_url, staleness_bound=None, read_reuse=0) as first,
        Projection(db_url, staleness_bound=None, read_reuse=0) as second,
    ):
        first_thread, first_outcome = refresh_in_thread(first)
        wait_for(
            lambda: backends_waiting(db, "Lock", "%refresh_connection_summary%") == 1,
            what="the first refresh to be mid-way",
        )
        second_thread, second_outcome = refresh_in_thread(second)
        wait_for(
            lambda: backends_waiting(db, "Lock", "%refresh_connection_summary%") == 2,
            what="the second refresh to queue behind it",
        )
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = 'relation'"
            " AND query LIKE '%refresh_connection_summary%'"
        )
        first_thread.join(timeout=30)
        assert isinstance(first_outcome[0], DatabaseUnavailable)
        # Readers still get the previous rows, intact, while the queued refresh takes over.
        with Projection(db_url, staleness_bound=None, read_reuse=0) as reader:
            rows = reader.list()
        assert rows[0]["last_run"]["run_id"] == "run_ok"
        assert rows.source_changed is True
        locker.rollback()
        locker.close()
        second_thread.join(timeout=30)
        assert second_outcome[0].refreshed is True
        assert first.list()[0]["last_run"]["run_id"] == "run_bad"
        # The Projection whose connection was killed works again without being recreated.
        assert first.refresh().as_of >= second_outcome[0].as_of


def test_refresh_blocked_by_a_lock_fails_within_its_timeout(world: World, db_url: str) -> None:
    locker = psycopg.connect(db_url)
    locker.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
    try:
        with Projection(db_url, staleness_bound=None, refresh_timeout=0.3) as proj:
            with pytest.raises(StatementCanceled, match="canceling statement due to statement timeout"):
                proj.refresh()
            # The failed refresh changed nothing, and reads are not blocked by the lock.
            assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
            locker.rollback()
            assert proj.refresh().refreshed is True
    finally:
        locker.close()


@pytest.mark.parametrize("seconds", [0.0004, 1e-9])
def test_a_timeout_below_a_millisecond_is_one_millisecond_not_no_limit(
    world: World, db_url: str, seconds: float
) -> None:
    """PostgreSQL counts whole milliseconds and reads 0 as no limit: a positive timeout is
    rounded up, so a tiny one cancels at once instead of never."""
    locker = psycopg.connect(db_url)
    try:
        locker.execute("LOCK TABLE connector_instances, refproj.run_facts IN ACCESS EXCLUSIVE MODE")
        with Projection(
            db_url, staleness_bound=None, read_reuse=0, refresh_timeout=seconds, statement_timeout=seconds
        ) as proj:
            with pytest.raises(StatementCanceled, match="canceling statement due to statement timeout"):
                proj.refresh()
            with pytest.raises(StatementCanceled, match="canceling statement due to statement timeout"):
                proj.get("cin_work")
    finally:
        locker.close()


@pytest.mark.parametrize(
    ("seconds", "setting"),
    [
        (0, "0"),
        (1e-9, "1"),
        (0.0004, "1"),
        (0.001, "1"),
        (0.0011, "2"),
        (0.3, "300"),
        (1.1, "1100"),
        (86400, "86400000"),
    ],
)
def test_timeouts_become_whole_milliseconds_rounded_up(seconds: float, setting: str) -> None:
    assert milliseconds(seconds) == setting


def test_dropped_connections_are_replaced_transparently(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    with Projection(db_url, staleness_bound=None, read_reuse=0) as proj:
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        pids = [
            row[0]
            for row in db.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchall()
        ]
        assert pids  # the pooled connection of proj
        for pid in pids:
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_for(
            lambda: (
                db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()
                == (0,)
            ),
            what="the killed backends to exit",
        )
        # As after a database restart: the pooled connection is dead; the read reconnects.
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        assert proj.get("cin_work")["connector_instance_id"] == "cin_work"


def test_exhausted_pool_is_a_clear_error(world: World, db_url: str) -> None:
    with Projection(
        db_url, staleness_bound=None, read_reuse=0, pool_size=1, max_overflow=0, pool_timeout=0.2
    ) as proj:
        held = proj.engine.connect()
        try:
            with pytest.raises(PoolExhausted) as raised:
                proj.list()
            # Our words, not SQLAlchemy's ("QueuePool limit of size 1 overflow 0 reached, ...").
            assert str(raised.value) == "no database connection free within 0.2 s; the pool is busy"
            with pytest.raises(PoolExhausted):
                proj.refresh()
        finally:
            held.close()
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"


def test_database_down_then_back(world: World, db_url: str) -> None:
    from sqlalchemy.engine import make_url

    from tests.tcp_proxy import Proxy

    url = make_url(db_url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    with Projection(through_proxy, staleness_bound=None, read_reuse=0, connect_timeout=2) as proj:
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        proxy.down()
        for call in (proj.list, lambda: proj.get("cin_work"), proj.refresh, proj.status):
            with pytest.raises(DatabaseUnavailable, match=r"^database unreachable at "):
                call()
        proxy.up()
        # Same Projection, no restart of the application: calls succeed again.
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        assert proj.refresh().refreshed is True
        assert proj.get("cin_work")["connector_instance_id"] == "cin_work"
