"""The watcher listens on a direct session (refproj/watcher_async.py): an idle Projection sends no
statement, a write wakes it through NOTIFY refproj_source_changed, a write whose notification was
lost (the listening session was down) is caught by the check after reconnecting, and a dropped
Projection closes its listening session. (Behind PgBouncer it polls: tests/test_pgbouncer.py.)"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from refproj import AsyncProjection, Projection
from tests.tcp_proxy import Proxy
from tests.test_lifecycle import alter_database
from tests.world import World, listening_sessions, wait_for

LISTEN_QUERY = "LISTEN refproj_source_changed; LISTEN refproj_refreshed;"


@pytest.fixture
def world(refreshed_siblings: World) -> World:
    return refreshed_siblings


def sessions(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Every other client session of this database: pid, state, when the state last changed
    (every statement changes it twice), and the last statement."""
    return db.execute(
        "SELECT pid, state, state_change, query FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend' ORDER BY pid"
    ).fetchall()


def quiet(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The sessions, once the watcher listens and its check after listening is over: every
    session idle, one after the LISTEN, the other after the status check."""
    now = sessions(db)
    if [state for _, state, _, _ in now] != ["idle", "idle"]:
        return []
    last = sorted(
        "listen" if query.endswith(LISTEN_QUERY) else query.rsplit("\n", 1)[-1] for *_, query in now
    )
    return now if last == ["FROM refproj.projection_status() AS s;", "listen"] else []


def test_an_idle_listening_watcher_runs_no_statement_and_a_write_wakes_it(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    bound = 1.0
    with Projection(db_url, staleness_bound=bound, read_reuse=0.1) as proj:
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        # Polling, this watcher would check every (1.0 - 0.1) / 3 = 0.3 s.
        # Listening, then checking once (what it missed before it listened): then all is quiet.
        before = wait_for(lambda: quiet(db), what="the watcher to listen and check once")
        assert len(before) == 2  # the pooled session of list() and the listening one
        # Kept alive by TCP keepalive probes (no statement): 30 s idle, every 10 s, 3 probes.
        fd = proj._wakeup._fd
        assert fd is not None
        with socket.socket(fileno=os.dup(fd)) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert [
                sock.getsockopt(socket.IPPROTO_TCP, option)
                for option in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)
            ] == [30, 10, 3]
        # The window under test: ten polling intervals of idleness.
        time.sleep(3.0)
        # Not one statement on either session: their state never changed.
        assert sessions(db) == before
        refreshes = proj.status().refresh_count

        written = time.monotonic()
        world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
        rows = wait_for(
            lambda: (r := proj.list()) and r[0]["last_run"]["run_id"] == "run_bad" and r,
            what="the write to reach list() through the notification",
        )
        elapsed = time.monotonic() - written
        status = proj.status()
        # Within the staleness bound plus one refresh, long before the 30 s heartbeat.
        assert elapsed < bound + status.last_refresh_ms / 1000
        assert rows.source_changed is False
        assert status.refresh_count == refreshes + 1


def test_the_listening_session_outlives_the_databases_idle_session_timeout(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    alter_database(db, "idle_session_timeout", "300ms")

    def listener() -> list[tuple[Any, ...]]:
        return db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE %s",
            ["%" + LISTEN_QUERY],
        ).fetchall()

    with Projection(db_url, staleness_bound=1.0, read_reuse=0.1) as proj:
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        first = wait_for(listener, what="the watcher to listen")
        # Four idle timeouts' worth: an ordinary session would have been ended three times.
        time.sleep(1.2)
        assert listener() == first
        world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
        wait_for(
            lambda: proj.list()[0]["last_run"]["run_id"] == "run_bad",
            what="the write to reach list() through the same listening session",
        )
        assert listener() == first


def test_a_write_committed_while_the_listening_session_was_down_reaches_list_after_reconnecting(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    url = make_url(db_url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    with Projection(through_proxy, staleness_bound=0.6, read_reuse=0.1, connect_timeout=2) as proj:
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        first = wait_for(lambda: listening_sessions(db), what="the watcher to listen")
        proxy.down()  # the listening session and the pooled one are cut
        wait_for(lambda: listening_sessions(db) == [], what="the listening session to end")
        # Committed while nobody listens: its notification is lost for good.
        world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
        proxy.up()
        rows = wait_for(
            lambda: (r := proj.list()) and r[0]["last_run"]["run_id"] == "run_bad" and r,
            what="the check after reconnecting to find the write",
        )
        assert rows.source_changed is False
        again = wait_for(lambda: listening_sessions(db), what="the watcher to listen again")
        assert again != first
    proxy.down()


def test_a_dropped_projection_closes_its_listening_session(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    proj = Projection(db_url, staleness_bound=0.6, read_reuse=0.1)
    assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
    # Listening and idle: the watcher holds its Projection only during a check.
    wait_for(lambda: quiet(db), what="the watcher to listen and check once")
    with pytest.warns(ResourceWarning, match="garbage-collected without close"):
        del proj
        gc.collect()
    wait_for(lambda: sessions(db) == [], what="the pooled and the listening session to close")


async def test_the_async_watcher_listens_and_a_write_wakes_it(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    async with AsyncProjection(db_url, staleness_bound=1.0, read_reuse=0.1) as proj:
        assert (await proj.list())[0]["last_run"]["run_id"] == "run_ok"
        for _ in range(2000):  # bounded: 20 s
            if len(listening_sessions(db)) == 1:
                break
            await asyncio.sleep(0.01)
        assert len(listening_sessions(db)) == 1
        world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
        for _ in range(2000):
            if (await proj.list())[0]["last_run"]["run_id"] == "run_bad":
                break
            await asyncio.sleep(0.01)
        assert (await proj.list())[0]["last_run"]["run_id"] == "run_bad"
    for _ in range(2000):  # aclose() closed both sessions
        if sessions(db) == []:
            break
        await asyncio.sleep(0.01)
    assert sessions(db) == []
