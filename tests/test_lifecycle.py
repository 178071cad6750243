"""A Projection over the life of the database and of the application (issue 9, sections 3-4):
sessions the server closes while idle, a read-only database, an unreachable one, os.fork(),
Projections dropped without close(), and close() while the watcher is refreshing. Real
mechanisms only: ALTER DATABASE ... SET, a loopback proxy taken down, a real fork, real locks."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import threading
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from refproj import AsyncProjection, Projection, ReadOnlyServer
from refproj._core import MAX_BACKOFF
from tests.tcp_proxy import Proxy
from tests.world import World, backends_waiting, listening_sessions, wait_for

WATCHER_LOG = "refproj.projection"


def watcher_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The watcher's warnings logged so far."""
    return [r.getMessage() for r in caplog.records if r.name == WATCHER_LOG and r.levelno == logging.WARNING]


@pytest.fixture
def world(refreshed_siblings: World) -> World:
    return refreshed_siblings


def alter_database(db: psycopg.Connection[Any], setting: str, value: str | None) -> None:
    """ALTER DATABASE <this test's database> SET setting = value (RESET when None); sessions
    opened afterwards start with it, the test's own ``db`` session keeps what it had."""
    name = db.info.dbname
    if value is None:
        db.execute(f'ALTER DATABASE "{name}" RESET {setting}')
    else:
        db.execute(f"ALTER DATABASE \"{name}\" SET {setting} = '{value}'")


def other_sessions(db: psycopg.Connection[Any]) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def watcher_threads() -> int:
    return sum(thread.name == "refproj-watcher" for thread in threading.enumerate())


# -- sessions closed while idle in the pool ----------------------------------------------------------


def test_the_first_refresh_after_idling_recovers_from_idle_session_timeout(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    alter_database(db, "idle_session_timeout", "300ms")
    with Projection(db_url, staleness_bound=None, read_reuse=0, pool_size=1, max_overflow=0) as proj:
        assert proj.refresh().refreshed is True  # the pool now holds one session
        # The server ends the pooled session after 300 ms of idleness (SQLSTATE 57P05).
        wait_for(lambda: other_sessions(db) == 0, what="the idle pooled session to be closed")
        assert proj.refresh().refreshed is True


def test_every_call_recovers_once_from_a_pooled_session_cut_while_idle(
    world: World, db: psycopg.Connection[Any], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """...and silently: psycopg's "error ignored terminating <Pipeline>" about the dead session's
    read pipeline, whose failure is the one being recovered from, is not logged."""
    caplog.set_level(logging.DEBUG)
    # As a load balancer or a failover cuts it. (A session whose last request was a pipelined
    # read does not time out by idle_session_timeout: PostgreSQL re-arms that timer only
    # after a request that ends with ReadyForQuery, and psycopg ends a pipeline with a flush.)
    with Projection(db_url, staleness_bound=None, read_reuse=0, pool_size=1, max_overflow=0) as proj:
        calls = {
            "refresh": lambda: proj.refresh().refreshed,
            "list": lambda: proj.list()[0]["last_run"]["run_id"],
            "get": lambda: proj.get("cin_work")["last_run"]["run_id"],
            "status": lambda: proj.status().source_changed,
        }
        expected = {"refresh": True, "list": "run_ok", "get": "run_ok", "status": False}
        proj.status()  # the pool now holds one session
        for name, call in calls.items():
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state = 'idle'"
            )
            wait_for(lambda: other_sessions(db) == 0, what="the idle pooled session to end")
            assert call() == expected[name], name
    assert [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_async_refresh_recovers_from_a_session_closed_while_idle(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    alter_database(db, "idle_session_timeout", "300ms")
    async with AsyncProjection(db_url, staleness_bound=None, pool_size=1, max_overflow=0) as proj:
        assert (await proj.refresh()).refreshed is True
        while other_sessions(db) != 0:  # bounded by the 300 ms timeout; the loop yields
            await asyncio.sleep(0.01)
        assert (await proj.refresh()).refreshed is True


# -- a read-only server ------------------------------------------------------------------------------


def test_a_refresh_on_a_read_only_database_is_one_clear_error_and_the_watcher_backs_off(
    world: World, db: psycopg.Connection[Any], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    alter_database(db, "default_transaction_read_only", "on")
    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")  # a pending write
    caplog.set_level(logging.DEBUG, logger=WATCHER_LOG)
    with Projection(db_url, staleness_bound=0.3, read_reuse=0) as proj:
        with pytest.raises(ReadOnlyServer, match=r"^this server is read-only; refresh on the primary \("):
            proj.refresh()
        # Reads work; the watcher (every 0.1 s while healthy) fails, says so once, and backs off.
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        wait_for(
            lambda: sum("still failing" in r.getMessage() for r in caplog.records) >= 3,
            what="the watcher to retry three more times",
        )
        warnings = [r for r in caplog.records if r.name == WATCHER_LOG and r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "this server is read-only; refresh on the primary" in warnings[0].getMessage()
    attempts = [r.created for r in caplog.records if r.name == WATCHER_LOG and r.levelno <= logging.WARNING]
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    # 0.2 s, 0.4 s, 0.8 s ...: each wait at least 1.5 times the one before.
    assert all(later > 1.5 * earlier for earlier, later in itertools.pairwise(gaps)), gaps


# -- an unreachable database -------------------------------------------------------------------------


def test_the_watcher_backs_off_while_the_database_is_unreachable_and_logs_changes_of_state(
    world: World, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_url(db_url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    caplog.set_level(logging.DEBUG, logger=WATCHER_LOG)
    with Projection(through_proxy, staleness_bound=0.3, read_reuse=0, connect_timeout=2) as proj:
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        proxy.down()
        wait_for(
            lambda: sum("still failing" in r.getMessage() for r in caplog.records) >= 4,
            what="four retries while the database is unreachable",
        )
        warnings = watcher_warnings(caplog)
        assert len(warnings) == 1
        assert "database unreachable" in warnings[0]
        proxy.up()
        world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
        wait_for(
            lambda: proj.list()[0]["last_run"]["run_id"] == "run_bad",
            timeout=MAX_BACKOFF + 20,
            what="the write to reach list() once the database is back",
        )
        warnings = watcher_warnings(caplog)
        assert len(warnings) == 2
        assert "the database answers again" in warnings[1]
    proxy.down()


# -- os.fork() ---------------------------------------------------------------------------------------


def test_after_a_fork_the_child_gets_its_own_connections_and_watcher_and_the_parent_keeps_working(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    proj = Projection(db_url, staleness_bound=0.6, read_reuse=0.1)
    try:
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        assert watcher_threads() == 1
        # The parent's watcher listens on a session of its own before the fork.
        parent_listener = wait_for(lambda: listening_sessions(db), what="the parent's watcher to listen")
        parent_backends = other_sessions(db)
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status, never return into pytest
            status = 1
            try:
                # The parent's watcher thread did not survive the fork; a list() starts ours.
                assert watcher_threads() == 0
                assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
                assert watcher_threads() == 1
                with psycopg.connect(db_url, autocommit=True) as writer:
                    World(writer).failed_run("run_child", "cin_work", "12:00", "12:01", "child_exit")
                wait_for(
                    lambda: proj.list()[0]["last_run"]["run_id"] == "run_child",
                    what="the child's write to reach the child's list() through its own watcher",
                )
                assert proj.get("cin_work")["last_run"]["run_id"] == "run_child"
                proj.close()
                status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The child used sessions of its own: the parent's are still there and still work, its
        # listening session included (the child neither closed nor used it).
        assert other_sessions(db) >= parent_backends
        assert listening_sessions(db) == parent_listener
        assert proj.list()[0]["last_run"]["run_id"] in ("run_ok", "run_child")
        world.succeeded_run("run_parent", "cin_work", "13:00", "13:05")
        wait_for(
            lambda: proj.list()[0]["last_run"]["run_id"] == "run_parent",
            what="the parent's watcher to keep refreshing",
        )
        assert proj.get("cin_work")["last_run"]["run_id"] == "run_parent"
    finally:
        proj.close()


# -- Projections dropped without close() --------------------------------------------------------------


def test_forty_dropped_projections_release_their_sessions_and_watchers(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    before = other_sessions(db)
    with pytest.warns(ResourceWarning, match="garbage-collected without close") as caught:
        for _ in range(40):
            proj = Projection(db_url, staleness_bound=2.0)
            assert proj.list()[0]["last_run"]["run_id"] == "run_ok"  # a session and a watcher each
            del proj
        gc.collect()
        wait_for(lambda: watcher_threads() == 0, what="every watcher thread to stop")
    assert len([w for w in caught if issubclass(w.category, ResourceWarning)]) == 40
    wait_for(lambda: other_sessions(db) == before, what="every dropped Projection's sessions to close")


async def test_dropped_async_projections_release_their_sessions(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    before = other_sessions(db)
    with pytest.warns(ResourceWarning, match="garbage-collected without close"):
        for _ in range(10):
            proj = AsyncProjection(db_url, staleness_bound=None)
            assert (await proj.list())[0]["last_run"]["run_id"] == "run_ok"
            del proj
        gc.collect()
    for _ in range(2000):  # bounded: 20 s
        gc.collect()
        if other_sessions(db) == before:
            break
        await asyncio.sleep(0.01)
    assert other_sessions(db) == before


# -- close() while the watcher refreshes ---------------------------------------------------------------


def test_close_returns_promptly_while_the_watcher_is_refreshing(
    world: World, db: psycopg.Connection[Any], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """...and quietly: the cancelled refresh is not a failure to retry (it once logged
    "retrying with back-off")."""
    caplog.set_level(logging.DEBUG, logger="refproj")
    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    locker = psycopg.connect(db_url)
    locker.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
    try:
        proj = Projection(db_url, staleness_bound=0.3, read_reuse=0, refresh_timeout=120)
        proj.list()
        wait_for(
            lambda: backends_waiting(db, "Lock", "%refresh_connection_summary%") == 1,
            what="the watcher's refresh to wait for the lock",
        )
        closer = threading.Thread(target=proj.close)
        closer.start()
        # With the lock still held (the refresh could wait 120 s), close() returns...
        wait_for(lambda: not closer.is_alive(), timeout=10, what="close() to return")
        # ...having cancelled the refresh on the server, and the watcher is gone.
        wait_for(
            lambda: backends_waiting(db, "Lock", "%refresh_connection_summary%") == 0,
            what="the watcher's refresh to be cancelled",
        )
        wait_for(lambda: watcher_threads() == 0, what="the watcher thread to end")
    finally:
        locker.rollback()
        locker.close()
    assert quiet_close(caplog) == (True, [])


def quiet_close(caplog: pytest.LogCaptureFixture) -> tuple[bool, list[str]]:
    """Whether the watcher noted its stop (at debug level), and the warnings refproj logged."""
    stopped = any(
        r.getMessage().startswith("refproj watcher: stopped during a check: ") for r in caplog.records
    )
    return stopped, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_async_close_returns_promptly_while_the_watcher_is_refreshing(
    world: World, db: psycopg.Connection[Any], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="refproj")
    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    locker = psycopg.connect(db_url)
    locker.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
    try:
        proj = AsyncProjection(db_url, staleness_bound=0.3, read_reuse=0, refresh_timeout=120)
        await proj.list()
        for _ in range(2000):  # bounded: 20 s
            if backends_waiting(db, "Lock", "%refresh_connection_summary%") == 1:
                break
            await asyncio.sleep(0.01)
        assert backends_waiting(db, "Lock", "%refresh_connection_summary%") == 1
        await asyncio.wait_for(proj.aclose(), timeout=10)
        for _ in range(2000):
            if backends_waiting(db, "Lock", "%refresh_connection_summary%") == 0:
                break
            await asyncio.sleep(0.01)
        assert backends_waiting(db, "Lock", "%refresh_connection_summary%") == 0
    finally:
        locker.rollback()
        locker.close()
    assert quiet_close(caplog) == (True, [])
