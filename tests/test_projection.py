"""The Python API: scenarios 17-22 through ``Projection``, JSON readiness, errors, coalescing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine

from refproj import (
    AmbiguousConnection,
    ConnectionNotFound,
    DatabaseError,
    DatabaseUnavailable,
    InvalidArgument,
    InvalidDatabaseUrl,
    InvalidIdentifier,
    MigrationsNotApplied,
    PermissionDenied,
    Projection,
    ProjectionClosed,
    RefprojError,
    StatementCanceled,
)
from refproj.errors import translate
from tests.refresh_worker import refresh_burst
from tests.world import StatementLog, World, at, backends_waiting, iso, wait_for

OVERVIEW_MARK = "refproj.connection_summaries"


@pytest.fixture
def proj(db_url: str) -> Iterator[Projection]:
    with Projection(db_url, staleness_bound=None, read_reuse=0) as projection:
        yield projection


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> World:
    w = World(db)
    w.siblings()
    return w


# -- scenario 17: detail resolution ------------------------------------------------------------------


def test_s17_get_resolution(world: World, proj: Projection) -> None:
    world.connector("solo")
    world.connection("solo_main", "solo")
    world.connection(
        "solo_shell", "solo", status="revoked", source_binding={"kind": "browser_enrollment_shell"}
    )

    assert proj.get("cin_work")["connector_instance_id"] == "cin_work"
    with pytest.raises(AmbiguousConnection) as ambiguous:
        proj.get("acme")
    assert ambiguous.value.candidates == 2
    assert ambiguous.value.candidate_ids == ["cin_work", "cin_personal"]
    assert str(ambiguous.value) == (
        "'acme' is a connector with 2 connections; name one connection id: cin_work, cin_personal"
    )
    # A connector whose only other connection is a retired shell resolves to its one visible connection.
    assert proj.get("solo")["connector_instance_id"] == "solo_main"
    with pytest.raises(ConnectionNotFound) as missing:
        proj.get("nope")
    assert str(missing.value) == "no connection 'nope'"
    with pytest.raises(ConnectionNotFound):
        proj.get("solo_shell")

    world.db.execute(
        "UPDATE connector_instances SET status = 'revoked' WHERE connector_instance_id = 'cin_work'"
    )
    with pytest.raises(AmbiguousConnection):
        proj.get("acme")  # a revoked account connection is still visible, so still two
    world.db.execute("DELETE FROM connector_instances WHERE connector_instance_id = 'cin_work'")
    assert proj.get("acme")["connector_instance_id"] == "cin_personal"


# -- scenario 18: overview row and detail agree after a refresh ----------------------------------------


def test_s18_list_and_get_agree(world: World, proj: Projection) -> None:
    world.succeeded_run("run_ok", "cin_work", "11:00", "11:05", data={"records_emitted": 3})
    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    world.surface_failure("run_p", "12:02", "acme:cin_personal", wait_reason="capacity_full")
    world.db.execute(
        "INSERT INTO retained_size_stream (connector_instance_id, stream, connector_id, record_count)"
        " VALUES ('cin_work', 'messages', 'acme', 5)"
    )
    proj.refresh()
    when = at("13:00")
    rows = proj.list(at=when)
    assert [row["connector_instance_id"] for row in rows] == ["cin_work", "cin_personal"]
    for row in rows:
        detail = proj.get(row["connector_instance_id"], at=when)
        assert set(row) < set(detail)
        assert {key: detail[key] for key in row} == row
    work = rows[0]
    assert work["last_run"]["run_id"] == "run_bad"
    assert work["last_successful_run"]["run_id"] == "run_ok"
    assert work["health"] == {"state": "failing", "reason": "connector_exit"}


# -- JSON readiness --------------------------------------------------------------------------------


def test_rows_are_json_ready(world: World, proj: Projection) -> None:
    world.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    proj.refresh()
    rows = proj.list()
    detail = proj.get("cin_work")
    # No custom encoder: timestamps are ISO strings with an offset, numbers are int/float.
    decoded_rows = json.loads(json.dumps(rows))
    assert decoded_rows == list(rows)
    assert json.loads(json.dumps(detail)) == detail
    assert detail["last_run"]["last_at"] == iso("11:05")
    assert detail["created_at"] == iso("09:00")
    envelope = json.loads(json.dumps(rows.envelope()))
    assert envelope["source_changed"] is False
    assert envelope["as_of"] == rows.as_of.isoformat()
    assert rows.as_of.utcoffset() is not None


# -- scenario 19: read-your-writes and automatic freshness ------------------------------------------


def test_s19_refresh_shows_a_new_run(world: World, proj: Projection) -> None:
    proj.refresh()
    assert proj.list()[0]["last_run"] is None
    world.succeeded_run("run_new", "cin_work", "12:00", "12:05")
    before = proj.list()
    assert before.source_changed is True
    assert before[0]["last_run"] is None
    proj.refresh()
    after = proj.list()
    assert after.source_changed is False
    assert after[0]["last_run"]["run_id"] == "run_new"
    assert after.as_of > before.as_of


def test_s19_write_reaches_readers_without_refresh(world: World, db_url: str) -> None:
    with Projection(db_url, staleness_bound=0.6, read_reuse=0.1) as proj:
        # The connections themselves were written after the last refresh: the watcher picks them up.
        wait_for(lambda: len(proj.list()) == 2, what="the new connections to reach list()")
        assert proj.list()[0]["last_run"] is None
        refreshes_before = proj.status().refresh_count
        world.succeeded_run("run_auto", "cin_work", "12:00", "12:05")
        # Nobody calls refresh(): the watcher notices the write and refreshes.
        rows = wait_for(
            lambda: (r := proj.list()) and r[0]["last_run"] and r,
            what="the new run to reach list()",
        )
        assert rows[0]["last_run"]["run_id"] == "run_auto"
        assert rows.source_changed is False
        assert proj.status().refresh_count == refreshes_before + 1


# -- scenario 20: concurrent reads share one statement; errors are shared, never cached -----------------


def test_s20_concurrent_list_calls_share_one_statement(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    world.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    world.refresh()
    with Projection(db_url, staleness_bound=None, read_reuse=0) as proj:
        log = StatementLog(proj.engine)
        results: list[Any] = [None] * 32
        errors: list[BaseException | None] = [None] * 32

        def read(i: int) -> None:
            try:
                results[i] = proj.list()
            except BaseException as error:
                errors[i] = error

        def in_flight_with_31_sharers() -> bool:
            return (
                proj._reads.sharers((None, None)) == 31
                and backends_waiting(db, "Lock", "%connection_summaries%") == 1
            )

        # Hold the refresh bookkeeping the overview statement reads, so it cannot finish until every reader
        # has joined it.
        locker = psycopg.connect(db_url, autocommit=False)
        locker.execute("LOCK TABLE refproj.projection_state IN ACCESS EXCLUSIVE MODE")
        threads = [threading.Thread(target=read, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        wait_for(in_flight_with_31_sharers, what="32 readers on one statement")
        locker.rollback()
        for thread in threads:
            thread.join()
        assert errors == [None] * 32
        assert log.count(OVERVIEW_MARK) == 1
        assert all(result is results[0] for result in results)
        assert results[0][0]["last_run"]["run_id"] == "run_ok"

        # The same, but the shared statement fails: every reader gets the error.
        locker.execute("LOCK TABLE refproj.projection_state IN ACCESS EXCLUSIVE MODE")
        errors = [None] * 32
        threads = [threading.Thread(target=read, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        wait_for(in_flight_with_31_sharers, what="32 readers on the failing statement")
        db.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND query LIKE '%connection_summaries%'"
        )
        for thread in threads:
            thread.join()
        locker.rollback()
        locker.close()
        assert all(isinstance(error, StatementCanceled) for error in errors), errors
        assert log.count(OVERVIEW_MARK) == 2
        # The failure is not cached: the next call runs a new statement and succeeds.
        assert proj.list()[0]["last_run"]["run_id"] == "run_ok"
        assert log.count(OVERVIEW_MARK) == 3


def test_read_reuse_window_and_forget(world: World, db_url: str) -> None:
    with Projection(db_url, staleness_bound=None, read_reuse=1.0) as proj:
        log = StatementLog(proj.engine)
        first = proj.list()
        assert proj.list() is first  # within the reuse window: no new statement
        assert log.count(OVERVIEW_MARK) == 1
        assert proj.list("acme") is not first  # other arguments, other key
        assert log.count(OVERVIEW_MARK) == 2
        proj.refresh()  # a refresh ends reuse so the caller reads its own write
        proj.list()
        assert log.count(OVERVIEW_MARK) == 3
        proj.get("cin_work")
        proj.get("cin_work")
        assert log.count("refproj.connection_detail") == 2  # detail is never cached


# -- scenario 21: concurrent refreshes across processes -------------------------------------------------


def test_s21_sixteen_refreshes_from_four_processes(
    world: World, db: psycopg.Connection[Any], db_url: str
) -> None:
    refresh_burst(db, db_url)


def test_refresh_callers_join_a_call_still_waiting_for_a_connection(world: World, db_url: str) -> None:
    with Projection(db_url, staleness_bound=None, pool_size=1, max_overflow=0, pool_timeout=30) as proj:
        log = StatementLog(proj.engine)
        refreshes_before = proj.status().refresh_count
        held = proj.engine.connect()  # the only pooled connection: the next caller must wait for it
        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(proj.refresh())) for _ in range(8)]
        threads[0].start()
        wait_for(lambda: "refresh" in proj._refreshes._calls, what="a refresh waiting for a connection")
        for thread in threads[1:]:
            thread.start()
        wait_for(
            lambda: proj._refreshes.sharers("refresh") == 7, what="seven callers to join the waiting refresh"
        )
        held.close()
        for thread in threads:
            thread.join()
        # Callers that arrived before the leader reached the database shared its one call.
        assert log.count("refresh_connection_summary") == 1
        assert len(results) == 8
        assert all(result is results[0] for result in results)
        assert results[0].refreshed is True
        assert proj.status().refresh_count == refreshes_before + 1


# -- scenario 22: readers are never blocked by a refresh -------------------------------------------------


def test_s22_list_answers_while_a_refresh_is_running(
    world: World, db: psycopg.Connection[Any], db_url: str, proj: Projection
) -> None:
    world.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    proj.refresh()
    world.failed_run("run_bad", "cin_work", "12:00", "12:01", "connector_exit")
    locker = psycopg.connect(db_url, autocommit=False)
    locker.execute("LOCK TABLE connector_instances IN ACCESS EXCLUSIVE MODE")
    refresher = threading.Thread(target=proj.refresh)
    refresher.start()
    wait_for(
        lambda: backends_waiting(db, "Lock", "%refresh_connection_summary%") == 1,
        what="the refresh to hold its place mid-way",
    )
    # The refresh holds the view's refresh lock; readers still get the previous rows.
    with Projection(db_url, staleness_bound=None, read_reuse=0) as reader:
        rows = reader.list()
    assert backends_waiting(db, "Lock", "%refresh_connection_summary%") == 1
    assert rows[0]["last_run"]["run_id"] == "run_ok"
    assert rows.source_changed is True
    locker.rollback()
    locker.close()
    refresher.join()
    assert proj.list()[0]["last_run"]["run_id"] == "run_bad"


# -- configuration and errors -------------------------------------------------------------------------


def test_accepts_an_existing_engine(world: World, db_url: str) -> None:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with Projection(engine, staleness_bound=None) as proj:
        assert [row["connector_instance_id"] for row in proj.list()] == []
        proj.refresh()
        assert [row["connector_instance_id"] for row in proj.list()] == ["cin_work", "cin_personal"]
    # The application's engine stays usable: Projection does not dispose what it did not create.
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    engine.dispose()


def test_reads_database_url_from_environment(
    world: World, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    with Projection(staleness_bound=None) as proj:
        proj.refresh()
        assert proj.get("cin_personal")["connector_id"] == "acme"


def test_unreachable_database_is_a_named_error() -> None:
    with Projection("postgresql://postgres@127.0.0.1:1/nowhere", staleness_bound=None) as proj:
        with pytest.raises(
            DatabaseUnavailable, match=r"^database unreachable at postgresql://postgres@127\.0\.0\.1:1/"
        ):
            proj.list()
        with pytest.raises(DatabaseUnavailable):
            proj.refresh()


def test_missing_migrations_is_a_named_error(empty_db_url: str) -> None:
    with Projection(empty_db_url, staleness_bound=None) as proj:
        with pytest.raises(MigrationsNotApplied, match="run `refproj migrate`"):
            proj.list()
        with pytest.raises(MigrationsNotApplied):
            proj.get("cin_work")
        with pytest.raises(MigrationsNotApplied):
            proj.status()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "connection id must not be empty"),
        ("cin\x00work", "connection id must not contain NUL characters"),
        ("x" * 4097, "connection id is longer than 4096 bytes (UTF-8)"),
        ("é" * 2049, "connection id is longer than 4096 bytes (UTF-8)"),
        (42, "connection id must be a string, not int"),
        ("\ud800", "connection id must be Unicode text without lone surrogates (U+D800-U+DFFF)"),
        ("cin_\udcffwork", "connection id must be Unicode text without lone surrogates (U+D800-U+DFFF)"),
    ],
)
def test_bad_connection_ids_are_rejected(proj: Projection, value: Any, message: str) -> None:
    with pytest.raises(InvalidIdentifier) as error:
        proj.get(value)
    assert str(error.value) == message
    if isinstance(value, str) and value:  # the same rule for a connector id of list()
        with pytest.raises(InvalidIdentifier) as error:
            proj.list(connector_id=value)
        assert str(error.value) == message.replace("connection id", "connector id")


def test_any_other_character_is_a_legal_id(db: psycopg.Connection[Any], proj: Projection) -> None:
    w = World(db)
    url_id = "https://example.com/connectors/acme?x=1&y='2'; DROP TABLE spine_events; --"
    w.connector(url_id)
    w.connection("naïve ☃ connection", url_id)
    proj.refresh()
    assert proj.get(url_id)["connector_instance_id"] == "naïve ☃ connection"
    assert [row["connector_id"] for row in proj.list(url_id)] == [url_id]
    assert db.execute("SELECT count(*) FROM spine_events").fetchone() == (0,)


# -- every error leaving the API is a RefprojError ----------------------------------------------------


def test_no_database_given_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library never guesses a database (only the CLI and `make demo` have a default)."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(InvalidDatabaseUrl) as error:
        Projection()
    assert str(error.value) == "no database given: pass a postgresql:// URL or an Engine, or set DATABASE_URL"
    monkeypatch.setenv("DATABASE_URL", "")
    with pytest.raises(InvalidDatabaseUrl):
        Projection()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("garbage", "not a database URL: 'garbage'"),
        # The whole URL, its passwords masked.
        ("postgresql://me:secret@host:port/db", "not a database URL: 'postgresql://me:***@host:port/db'"),
        (
            "postgresql://me:secret@h:x/db?password=pw",
            "not a database URL: 'postgresql://me:***@h:x/db?password=***'",
        ),
        # What libpq would refuse or misread is refused before any connection.
        (
            "postgresql://me:secret@h/db?bogusparam=1",
            'not a database URL libpq reads (invalid URI query parameter: "bogusparam"):'
            " 'postgresql://me:***@h/db?bogusparam=1'",
        ),
        (
            "postgresql://me@h:99999/db",
            "the database URL's port must be from 1 to 65535, not 99999: 'postgresql://me@h:99999/db'",
        ),
        (
            "postgresql://me@h/db%00x",
            "the database URL must not contain NUL (%00): 'postgresql://me@h/db%00x'",
        ),
        (
            "postgresql://me:se%00cret@h/db",
            "the database URL must not contain NUL (%00): 'postgresql://me:***@h/db'",
        ),
        (
            "postgresql://me@h/db?application_name=a%00",
            "the database URL must not contain NUL (%00): 'postgresql://me@h/db?application_name=a%00'",
        ),
        (
            "postgresql://po\ud800stgres@127.0.0.1/db",
            "the database URL must be Unicode text without lone surrogates (U+D800-U+DFFF)",
        ),
        (
            "mysql://root@127.0.0.1/db",
            "unsupported database URL scheme 'mysql': refproj needs a postgresql:// URL (driver psycopg)",
        ),
        (
            "postgresql+asyncpg://u@127.0.0.1/db",
            "unsupported database URL scheme 'postgresql+asyncpg': refproj needs a postgresql:// URL"
            " (driver psycopg)",
        ),
    ],
)
def test_unusable_urls_are_named_errors(url: str, message: str) -> None:
    with pytest.raises(InvalidDatabaseUrl) as error:
        Projection(url)
    assert str(error.value) == message
    assert isinstance(error.value, RefprojError) and isinstance(error.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"run_limit": -1}, "run limit must be between 0 and 2147483647, not -1"),
        ({"run_limit": 2**31}, "run limit must be between 0 and 2147483647, not 2147483648"),
        ({"run_limit": True}, "run limit must be a whole number, not bool"),
        ({"run_limit": 2.5}, "run limit must be a whole number, not float"),
        (
            {"at": datetime(2026, 1, 5, 12)},
            "at must be a timezone-aware datetime (a naive one has no fixed instant)",
        ),
        ({"at": "2026-01-05"}, "at must be a datetime, not str"),
    ],
)
def test_bad_detail_arguments_are_invalid_argument(
    world: World, proj: Projection, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument) as error:
        proj.get("cin_work", **kwargs)
    assert str(error.value) == message
    assert proj.get("cin_work", run_limit=2**31 - 1)["recent_runs"] == []
    assert proj.get("cin_work", run_limit=0)["connector_instance_id"] == "cin_work"


def test_bad_options_are_invalid_argument(db_url: str) -> None:
    for options in ({"read_reuse": 2}, {"read_reuse": -1}, {"staleness_bound": 0.1}, {"pool_size": -1}):
        with pytest.raises(InvalidArgument):
            Projection(db_url, **options)


def test_driver_errors_become_refproj_errors() -> None:
    """What a caller can do decides the class; a protocol violation (the server answered) is not
    "unreachable"."""
    where = "postgresql://postgres@db/x"
    cases = [
        (psycopg.errors.ProtocolViolation("invalid frontend message type 0"), DatabaseError),
        (psycopg.errors.InsufficientPrivilege("permission denied for table spine_events"), PermissionDenied),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), StatementCanceled),
        (psycopg.errors.UndefinedFunction("function refproj.x() does not exist"), MigrationsNotApplied),
        (
            psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
            DatabaseUnavailable,
        ),
        (psycopg.OperationalError("connection refused"), DatabaseUnavailable),
        (psycopg.errors.DivisionByZero("division by zero"), DatabaseError),
    ]
    for error, kind in cases:
        translated = translate(error, where)
        assert type(translated) is kind, error
        assert str(error) in str(translated)
    protocol = translate(cases[0][0], where)
    assert isinstance(protocol, DatabaseError) and protocol.sqlstate == "08P01"
    assert str(protocol) == "the database reported an error (SQLSTATE 08P01): invalid frontend message type 0"


def test_a_closed_projection_raises_instead_of_reopening(world: World, db_url: str) -> None:
    proj = Projection(db_url, staleness_bound=None)
    proj.refresh()
    assert [row["connector_instance_id"] for row in proj.list()][:1] == ["cin_work"]  # reusable, but
    proj.close()
    for call in (proj.list, lambda: proj.get("cin_work"), proj.status, proj.refresh, proj.verify):
        with pytest.raises(ProjectionClosed) as error:
            call()
        assert str(error.value) == "this Projection was closed; create a new one"
    assert proj.engine.pool.checkedin() == 0  # nothing reopened
    proj.close()  # closing twice is fine
