"""``AsyncProjection``: the asyncio twin, its event-loop behaviour, cancellation, typed rows."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import TypeAdapter
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from refproj import (
    AmbiguousConnection,
    AsyncProjection,
    ConnectionNotFound,
    Detail,
    InvalidArgument,
    OverviewRow,
    Projection,
    ProjectionClosed,
    StatementCanceled,
    json_schemas,
    projection_async,
)
from refproj.rows import ROW_TYPES
from tests.world import StatementLog, World, backends_waiting, iso

ROOT = Path(__file__).resolve().parent.parent
OVERVIEW_MARK = "refproj.connection_summaries"
OVERVIEW_LIKE = "%connection_summaries_json%"


async def until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` without blocking the loop; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def lock_overview(db_url: str) -> psycopg.Connection[Any]:
    """A session holding the refresh bookkeeping every overview statement reads: overview
    statements wait on it until the session rolls back."""
    locker = psycopg.connect(db_url, autocommit=False)
    locker.execute("LOCK TABLE refproj.projection_state IN ACCESS EXCLUSIVE MODE")
    return locker


def waiting_pids(db: psycopg.Connection[Any]) -> list[int]:
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND state = 'active' AND query LIKE %s",
        (OVERVIEW_LIKE,),
    ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> World:
    w = World(db)
    w.siblings()
    w.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    w.refresh()
    return w


@pytest.fixture
async def aproj(db_url: str) -> AsyncIterator[AsyncProjection]:
    async with AsyncProjection(db_url, staleness_bound=None, read_reuse=0) as projection:
        yield projection


# -- the twins -----------------------------------------------------------------------------------------


def test_sync_twin_is_generated_from_the_async_source() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "async_to_sync.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


async def test_list_get_status_refresh(world: World, aproj: AsyncProjection, db_url: str) -> None:
    rows = await aproj.list()
    assert [row["connector_instance_id"] for row in rows] == ["cin_work", "cin_personal"]
    assert rows[0]["last_run"]["run_id"] == "run_ok"
    assert rows.source_changed is False
    with Projection(db_url, staleness_bound=None) as sync:
        same = sync.list()
    assert list(rows) == list(same) and rows.as_of == same.as_of
    assert json.loads(rows.json_text) == list(rows)

    detail = await aproj.get("cin_work")
    assert detail["last_run"]["last_at"] == iso("11:05")
    assert {key: detail[key] for key in rows[0] if key not in ("freshness", "health")} == {
        key: value for key, value in rows[0].items() if key not in ("freshness", "health")
    }
    with pytest.raises(AmbiguousConnection):
        await aproj.get("acme")
    with pytest.raises(ConnectionNotFound):
        await aproj.get("nope")

    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    assert (await aproj.status()).source_changed is True
    before = (await aproj.status()).refresh_count
    result = await aproj.refresh()
    assert result.refreshed is True
    after = await aproj.list()
    assert after[0]["last_run"]["run_id"] == "run_bad"
    assert after.as_of == result.as_of
    status = await aproj.status()
    assert (status.refresh_count, status.source_changed) == (before + 1, False)


async def test_accepts_the_applications_async_engine(world: World, db_url: str) -> None:
    engine = create_async_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    async with AsyncProjection(engine, staleness_bound=None) as proj:
        assert [row["connector_instance_id"] for row in await proj.list()] == ["cin_work", "cin_personal"]
    # The application's engine stays usable: AsyncProjection does not dispose what it did not create.
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1
    await engine.dispose()


def test_engines_of_the_wrong_kind_are_named_errors(db_url: str) -> None:
    sync_engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with pytest.raises(InvalidArgument, match="not Engine"):
        AsyncProjection(sync_engine)  # type: ignore[arg-type]
    async_engine = create_async_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with pytest.raises(InvalidArgument, match="not AsyncEngine"):
        Projection(async_engine)  # type: ignore[arg-type]


# -- the event loop is never blocked -------------------------------------------------------------------


async def test_a_waiting_statement_does_not_block_the_event_loop(
    world: World, db: psycopg.Connection[Any], db_url: str, aproj: AsyncProjection
) -> None:
    ticks = 0

    async def ping() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    locker = lock_overview(db_url)
    reader = asyncio.create_task(aproj.list())
    pinger = asyncio.create_task(ping())
    await until(lambda: backends_waiting(db, "Lock", OVERVIEW_LIKE) == 1, what="the overview to wait")
    # While the statement stays blocked, the loop keeps serving the ping task: 50 ticks of 10 ms.
    start = ticks
    await until(lambda: ticks >= start + 50, what="50 pings")
    assert not reader.done()
    assert backends_waiting(db, "Lock", OVERVIEW_LIKE) == 1
    locker.rollback()
    locker.close()
    rows = await reader
    pinger.cancel()
    assert rows[0]["last_run"]["run_id"] == "run_ok"


# -- single flight ---------------------------------------------------------------------------------------


async def test_64_concurrent_lists_share_one_statement(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    async with AsyncProjection(db_url, staleness_bound=None, read_reuse=0) as proj:
        log = StatementLog(proj.engine)
        locker = lock_overview(db_url)
        readers = [asyncio.create_task(proj.list()) for _ in range(64)]
        await until(
            lambda: (
                proj._reads.sharers((None, None)) == 63 and backends_waiting(db, "Lock", OVERVIEW_LIKE) == 1
            ),
            what="64 readers on one statement",
        )
        locker.rollback()
        results = await asyncio.gather(*readers)
        assert log.count(OVERVIEW_MARK) == 1
        assert all(result is results[0] for result in results)

        # The shared statement fails: every reader gets the error, and it is not reused.
        locker.execute("LOCK TABLE refproj.projection_state IN ACCESS EXCLUSIVE MODE")
        readers = [asyncio.create_task(proj.list()) for _ in range(64)]
        await until(
            lambda: (
                proj._reads.sharers((None, None)) == 63 and backends_waiting(db, "Lock", OVERVIEW_LIKE) == 1
            ),
            what="64 readers on the failing statement",
        )
        db.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s)", (waiting_pids(db),)
        )
        outcomes = await asyncio.gather(*readers, return_exceptions=True)
        locker.rollback()
        locker.close()
        assert all(isinstance(outcome, StatementCanceled) for outcome in outcomes), outcomes
        assert log.count(OVERVIEW_MARK) == 2
        assert (await proj.list())[0]["last_run"]["run_id"] == "run_ok"
        assert log.count(OVERVIEW_MARK) == 3


async def test_read_reuse_window_and_refresh(world: World, db_url: str) -> None:
    async with AsyncProjection(db_url, staleness_bound=None, read_reuse=1.0) as proj:
        log = StatementLog(proj.engine)
        first = await proj.list()
        assert await proj.list() is first
        assert log.count(OVERVIEW_MARK) == 1
        await proj.refresh()  # a refresh ends reuse so the caller reads its own write
        assert await proj.list() is not first
        assert log.count(OVERVIEW_MARK) == 2


async def test_refresh_callers_join_a_call_still_waiting_for_a_connection(world: World, db_url: str) -> None:
    async with AsyncProjection(
        db_url, staleness_bound=None, pool_size=1, max_overflow=0, pool_timeout=30
    ) as proj:
        log = StatementLog(proj.engine)
        refreshes_before = (await proj.status()).refresh_count
        held = await proj.engine.connect()  # the only pooled connection: the next caller waits for it
        callers = [asyncio.create_task(proj.refresh()) for _ in range(8)]
        await until(lambda: proj._refreshes.sharers("refresh") == 7, what="seven callers to join")
        await held.close()
        results = await asyncio.gather(*callers)
        assert log.count("refresh_connection_summary") == 1
        assert all(result is results[0] for result in results)
        assert (await proj.status()).refresh_count == refreshes_before + 1


# -- cancellation -----------------------------------------------------------------------------------------


async def test_cancelling_every_waiter_cancels_the_statement_and_returns_its_connection(
    world: World, db: psycopg.Connection[Any], db_url: str, aproj: AsyncProjection
) -> None:
    await aproj.status()  # one pooled connection, opened before the test
    locker = lock_overview(db_url)
    readers = [asyncio.create_task(aproj.list()) for _ in range(3)]
    pids = await until(lambda: waiting_pids(db), what="the overview statement to wait")
    await until(lambda: aproj._reads.sharers((None, None)) == 2, what="three readers on it")

    # Two of three clients leave: the statement keeps running for the third.
    readers[0].cancel()
    readers[1].cancel()
    await asyncio.gather(readers[0], readers[1], return_exceptions=True)
    assert readers[0].cancelled() and readers[1].cancelled()
    assert waiting_pids(db) == pids
    assert not readers[2].done()

    # The last one leaves: the statement is cancelled on the server, its connection is back in the pool.
    readers[2].cancel()
    await asyncio.gather(readers[2], return_exceptions=True)
    await until(lambda: not waiting_pids(db), what="the statement to leave pg_stat_activity")
    await until(lambda: aproj.engine.pool.checkedout() == 0, what="the connection back in the pool")  # type: ignore[attr-defined]
    state = db.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pids[0],)).fetchone()
    assert state == ("idle",)  # the same session, idle: returned, not discarded
    locker.rollback()
    locker.close()
    # The next caller starts a new statement (the cancelled one is not reused) on that connection.
    rows = await aproj.list()
    assert rows[0]["last_run"]["run_id"] == "run_ok"


# -- typed, read-only rows ----------------------------------------------------------------------------------


async def test_one_callers_edit_does_not_show_in_anothers_rows(world: World, db_url: str) -> None:
    async with AsyncProjection(db_url, staleness_bound=None, read_reuse=1.0) as proj:
        mine, theirs = await asyncio.gather(proj.list(), proj.list())
        assert mine is theirs  # shared: one statement, one answer
        with pytest.raises(TypeError, match="read-only"):
            mine[0]["display_name"] = "edited"
        with pytest.raises(TypeError, match="read-only"):
            mine[0]["health"]["state"] = "edited"
        with pytest.raises(TypeError, match="read-only"):
            mine[0]["streams"].append("x")
        with pytest.raises(TypeError, match="read-only"):
            mine.pop()
        edited = copy.deepcopy(mine)  # a caller that wants to edit takes a plain copy
        edited[0]["health"]["state"] = "edited"
        edited.pop()
        later = await proj.list()
        assert later is mine
        assert len(later) == 2 and later[0]["health"]["state"] == "stale"
        assert type(edited[0]) is dict and type(edited[0]["health"]) is dict


async def test_every_object_and_array_of_an_overview_row_is_read_only(
    db: psycopg.Connection[Any], aproj: AsyncProjection
) -> None:
    # Rows are frozen by their type (refproj.rows._freezer visits the fields that hold objects
    # or arrays only): every container reachable from a row must still be a frozen one.
    w = World(db)
    w.connector("acme", manifest={"streams": ["messages", {"name": "photos"}]})
    w.connection("cin_work")
    w.connection("cin_new", created="09:05")
    w.succeeded_run("run_ok", "cin_work", "11:00", "11:05", data={"records_emitted": 3})
    w.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    db.execute(
        "INSERT INTO retained_size_connection (connector_instance_id, connector_id, record_count, blob_bytes)"
        " VALUES ('cin_work', 'acme', 5, 7)"
    )
    db.execute(
        "INSERT INTO retained_size_stream (connector_instance_id, stream, connector_id, record_count)"
        " VALUES ('cin_work', 'messages', 'acme', 5), ('cin_work', 'photos', 'acme', 0)"
    )
    await aproj.refresh()
    rows = await aproj.list()
    containers: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            containers[path] = type(value).__name__
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            containers[path] = type(value).__name__
            for item in value:
                walk(item, f"{path}[]")

    for row in rows:
        walk(row, row["connector_instance_id"])
    assert {path: kind for path, kind in containers.items() if path.startswith("cin_work")} == {
        "cin_work": "FrozenDict",
        "cin_work.streams": "FrozenList",
        "cin_work.retained_bytes": "FrozenDict",
        "cin_work.last_run": "FrozenDict",
        "cin_work.last_successful_run": "FrozenDict",
        "cin_work.freshness": "FrozenDict",
        "cin_work.health": "FrozenDict",
    }
    assert set(containers.values()) == {"FrozenDict", "FrozenList"}
    assert rows[0]["streams"] == ["messages", "photos"] and rows[0]["retained_bytes"]["blob_bytes"] == 7
    with pytest.raises(TypeError, match="read-only"):
        rows[0]["retained_bytes"]["blob_bytes"] = 0
    with pytest.raises(TypeError, match="read-only"):
        rows[0]["last_successful_run"]["status"] = "failed"


async def test_rows_match_their_typed_definitions_and_json_schemas(
    db: psycopg.Connection[Any], aproj: AsyncProjection
) -> None:
    w = World(db)
    w.siblings()
    w.connector("solo")
    w.connection("solo_draft", "solo", status="draft")
    w.succeeded_run("run_ok", "cin_work", "11:00", "11:05", data={"records_emitted": 3})
    w.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    db.execute(
        "INSERT INTO retained_size_stream (connector_instance_id, stream, connector_id, record_count)"
        " VALUES ('cin_work', 'messages', 'acme', 5)"
    )
    await aproj.refresh()
    rows = await aproj.list()
    overview = TypeAdapter(list[OverviewRow])
    assert overview.validate_python(json.loads(rows.json_text), strict=True) == list(rows)
    for row in rows:
        detail = await aproj.get(row["connector_instance_id"])
        assert TypeAdapter(Detail).validate_python(detail, strict=True) == detail
        assert set(detail) == set(Detail.__annotations__) | set(OverviewRow.__annotations__)
    assert set(rows[0]) == set(OverviewRow.__annotations__)

    schemas = json_schemas()
    assert set(schemas["OverviewRow"]["required"]) == set(OverviewRow.__annotations__)
    assert schemas["Health"]["properties"]["state"]["enum"] == [
        "revoked",
        "paused",
        "setup",
        "running",
        "idle",
        "failing",
        "stale",
        "healthy",
        "unknown",
    ]
    assert json.loads(json.dumps(schemas)) == schemas
    # Status and RefreshResult too (README: "for each"), as their to_dict() writes them.
    assert set(schemas) == {*ROW_TYPES, "Status", "RefreshResult"}
    status, result = (await aproj.status()).to_dict(), (await aproj.refresh()).to_dict()
    assert set(schemas["Status"]["properties"]) == set(status)  # building included
    assert (
        set(schemas["RefreshResult"]["properties"])
        == set(result)
        == set(schemas["RefreshResult"]["required"])
    )
    for answer, schema in ((status, schemas["Status"]), (result, schemas["RefreshResult"])):
        assert schema["properties"]["as_of"] == {"format": "date-time", "title": "As Of", "type": "string"}
        assert isinstance(answer["as_of"], str)


async def test_list_json_shares_the_statement_and_is_never_parsed_again(
    world: World, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncProjection(db_url, staleness_bound=None, read_reuse=1.0) as proj:
        log = StatementLog(proj.engine)
        text = await proj.list_json()
        assert not text.parsed
        assert json.loads(text.json_text)[0]["connector_instance_id"] == "cin_work"
        assert (text.as_of, text.source_changed) == ((await proj.status()).as_of, False)
        # list() with the same arguments, within the reuse window: the same answer, parsed once.
        monkeypatch.setattr(projection_async, "_PARSE_IN_THREAD", 0)  # the large-answer path
        rows = await asyncio.gather(*(proj.list() for _ in range(8)))
        assert all(r is rows[0] for r in rows) and text.parsed and text.overview() is rows[0]
        assert rows[0].json_text is text.json_text
        assert log.count(OVERVIEW_MARK) == 1


# -- refreshes and automatic freshness ---------------------------------------------------------------------


async def test_write_reaches_readers_without_refresh(world: World, db_url: str) -> None:
    async with AsyncProjection(db_url, staleness_bound=0.6, read_reuse=0.1) as proj:
        assert (await proj.list())[0]["last_run"]["run_id"] == "run_ok"
        refreshes_before = (await proj.status()).refresh_count
        world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
        # Nobody calls refresh(): the watcher task notices the write and refreshes.
        latest: Any = None

        async def read() -> bool:
            nonlocal latest
            latest = await proj.list()
            return latest[0]["last_run"]["run_id"] == "run_bad"

        deadline = time.monotonic() + 20
        while not await read():
            assert time.monotonic() < deadline, "the new run never reached list()"
            await asyncio.sleep(0.05)
        assert latest.source_changed is False
        assert (await proj.status()).refresh_count == refreshes_before + 1
        watcher = proj._watcher
        assert isinstance(watcher, asyncio.Task) and not watcher.done()
    assert watcher.done()  # aclose() stopped it


async def test_sixteen_concurrent_refreshes_cost_at_most_two(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    before = db.execute("SELECT refresh_count FROM refproj.projection_status()").fetchone()
    assert before is not None
    # Sixteen projections (as sixteen processes would have): no in-process joining, every call
    # reaches the database, which coalesces them.
    projections = [AsyncProjection(db_url, staleness_bound=None) for _ in range(16)]
    locker = psycopg.connect(db_url, autocommit=False)
    locker.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
    called_at = db.execute("SELECT clock_timestamp()").fetchone()
    assert called_at is not None
    callers = [asyncio.create_task(proj.refresh()) for proj in projections]
    await until(
        lambda: backends_waiting(db, "Lock", "%refresh_connection_summary%") == 16,
        timeout=60,
        what="16 refresh calls queued in the database",
    )
    assert not any(caller.done() for caller in callers)
    locker.rollback()
    locker.close()
    results = await asyncio.gather(*callers)
    for proj in projections:
        await proj.aclose()
    assert all(result.as_of > called_at[0] for result in results)
    after = db.execute("SELECT refresh_count FROM refproj.projection_status()").fetchone()
    assert after is not None
    assert 1 <= after[0] - before[0] <= 2
    async with AsyncProjection(db_url, staleness_bound=None) as proj:
        assert (await proj.list())[0]["last_run"]["run_id"] == "run_bad"


async def test_a_cancelled_detail_read_is_cancelled_on_the_server(
    world: World, db: psycopg.Connection[Any], db_url: str, aproj: AsyncProjection
) -> None:
    await aproj.status()
    locker = psycopg.connect(db_url, autocommit=False)
    locker.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
    readers = [asyncio.create_task(aproj.get("cin_work")) for _ in range(3)]
    await until(
        lambda: backends_waiting(db, "Lock", "%connection_detail%") == 3, what="three detail reads waiting"
    )
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await until(
        lambda: backends_waiting(db, "Lock", "%connection_detail%") == 0, what="the detail reads to go away"
    )
    await until(lambda: aproj.engine.pool.checkedout() == 0, what="their connections back in the pool")  # type: ignore[attr-defined]
    locker.rollback()
    locker.close()
    assert (await aproj.get("cin_work"))["connector_instance_id"] == "cin_work"


async def test_a_closed_async_projection_raises_instead_of_reopening(world: World, db_url: str) -> None:
    proj = AsyncProjection(db_url, staleness_bound=None)
    await proj.status()
    await proj.aclose()
    with pytest.raises(ProjectionClosed, match=r"^this AsyncProjection was closed; create a new one$"):
        await proj.get("cin_work")
    with pytest.raises(ProjectionClosed):
        await proj.list()


# Every typed argument of the public methods, wrong in type: (method, args, kwargs, message).
BAD_TYPED_ARGUMENTS: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
    ("refresh", (), {"full": None}, "full must be True or False, not None"),
    ("refresh", (), {"full": "yes"}, "full must be True or False, not 'yes'"),
    ("refresh", (), {"full": 1}, "full must be True or False, not 1"),
    ("list_page", (), {"limit": "5"}, "limit must be a whole number, not str"),
    ("list_page", (), {"limit": 2.5}, "limit must be a whole number, not float"),
    ("list_page", (), {"limit": True}, "limit must be a whole number, not bool"),
    ("list_page", (), {"after": 5}, "after is not a page cursor this service issued"),
    ("list_page", (5,), {}, "connector id must be a string, not int"),
    ("list", (b"acme",), {}, "connector id must be a string, not bytes"),
    ("list", (), {"at": "2026-01-05"}, "at must be a datetime, not str"),
    ("get", (None,), {}, "connection id must be a string, not NoneType"),
    ("get", ("cin_work",), {"run_limit": "20"}, "run limit must be a whole number, not str"),
    ("get_json", ("cin_work",), {"run_limit": None}, "run limit must be a whole number, not NoneType"),
]


async def test_every_typed_argument_is_checked_sync_and_async(
    world: World, aproj: AsyncProjection, db_url: str
) -> None:
    """refresh(full=None) and refresh(full='yes') once refreshed (SQL refuses a NULL p_full) and
    list_page(limit='5') raised TypeError: both twins raise InvalidArgument before any statement."""
    with Projection(db_url, staleness_bound=None, read_reuse=0) as proj:
        for method, args, kwargs, message in BAD_TYPED_ARGUMENTS:
            with pytest.raises(InvalidArgument) as sync_error:
                getattr(proj, method)(*args, **kwargs)
            with pytest.raises(InvalidArgument) as async_error:
                await getattr(aproj, method)(*args, **kwargs)
            assert (str(sync_error.value), str(async_error.value)) == (message, message), method
    status = world.db.execute("SELECT refresh_count FROM refproj.projection_status()").fetchone()
    assert status == (1,)  # the fixture's refresh only
    for options, message in (
        ({"read_reuse": "0.5"}, "read_reuse must be a number of seconds from 0 to 1, not '0.5'"),
        ({"pool_size": 2.0}, "pool_size must be a whole number from 0 to 10000, not 2.0"),
        ({"staleness_bound": True}, "staleness_bound must be a number of seconds from 0 to 86400, not True"),
        ({"replica": 5}, "expected a database URL or an SQLAlchemy AsyncEngine, not int"),
    ):
        with pytest.raises(InvalidArgument) as error:
            AsyncProjection(db_url, **options)
        assert str(error.value).startswith(message), options
