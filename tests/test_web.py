"""The HTTP service against a real uvicorn and the real database: every status code, ETag/304,
paging, the event stream, cancellation on disconnect, and detail reads that cannot starve
overview reads."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from refproj.errors import mask_secrets
from tests.test_lifecycle import alter_database
from tests.web_server import free_port, running_server
from tests.world import World, at, iso, wait_for

AT = "2026-01-05T12:00:00+00:00"


def _world(db: psycopg.Connection[Any]) -> World:
    """acme: cin_work (succeeded 11:05), cin_personal (never ran); beta: beta_one, 1 h bound,
    succeeded at 10:00 (current until 11:00)."""
    world = World(db)
    world.siblings()
    world.succeeded_run("run_ok", "cin_work", "11:00", "11:05")
    world.connector("beta", manifest={"refresh_policy": {"max_staleness_seconds": 3600}})
    world.connection("beta_one", "beta", created="09:00")
    world.succeeded_run("run_b1", "beta_one", "09:50", "10:00", connector="beta")
    world.refresh()
    return world


@pytest.fixture
def served(db: psycopg.Connection[Any], db_url: str) -> Iterator[tuple[World, httpx.Client, Any]]:
    world = _world(db)
    with (
        running_server(db_url, heartbeat=0.2) as (base, app),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        yield world, client, app


def _db_json(db: psycopg.Connection[Any], when: str, connector_id: str | None = None) -> str:
    row = db.execute("SELECT refproj.connection_summaries_json(%s, %s)", (at(when), connector_id)).fetchone()
    assert row is not None
    return str(row[0])


def _as_of(db: psycopg.Connection[Any]) -> str:
    """The overview's as_of as the service writes it (ISO-8601, UTC, Python's isoformat)."""
    row = db.execute("SELECT as_of FROM refproj.projection_status()").fetchone()
    assert row is not None
    return str(row[0].astimezone(UTC).isoformat())


# -- GET /_ref/connectors ---------------------------------------------------------------------------


def test_overview_body_is_the_database_text(served: Any, db: psycopg.Connection[Any]) -> None:
    _, client, _ = served
    response = client.get("/_ref/connectors", params={"at": AT})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache"
    text = _db_json(db, AT)
    assert response.content == (
        b'{"as_of":"'
        + _as_of(db).encode()
        + b'","source_changed":false,"valid_until":"2026-01-06T11:05:00+00:00","connections":'
        + text.encode()
        + b"}"
    )
    body = response.json()
    assert [row["connector_instance_id"] for row in body["connections"]] == [
        "cin_work",
        "cin_personal",
        "beta_one",
    ]
    one = client.get("/_ref/connectors", params={"at": AT, "connector_id": "beta"})
    assert one.json()["connections"] == json.loads(_db_json(db, AT, "beta"))
    assert client.get("/_ref/connectors", params={"connector_id": "nobody"}).json()["connections"] == []


def test_etag_and_304_across_a_refresh(served: Any, db: psycopg.Connection[Any]) -> None:
    world, client, _ = served
    first = client.get("/_ref/connectors")
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = client.get("/_ref/connectors", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "no-cache"
    assert client.get("/_ref/connectors", headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    world.succeeded_run("run_ok2", "cin_personal", "11:10", "11:20")
    refreshed = client.post("/_ref/connectors/refresh")
    assert refreshed.status_code == 200
    assert refreshed.json()["as_of"] == _as_of(db)
    after = client.get("/_ref/connectors", headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert after.headers["etag"] != etag
    assert after.json()["as_of"] == _as_of(db)
    personal = next(r for r in after.json()["connections"] if r["connector_instance_id"] == "cin_personal")
    assert personal["last_run"]["run_id"] == "run_ok2"


def test_etag_across_a_valid_until_crossing(served: Any) -> None:
    """beta_one is current up to 11:00 and stale after: the body, and so the ETag, changes
    exactly there, and not between two read times on the same side."""
    _, client, _ = served
    early = client.get("/_ref/connectors", params={"at": "2026-01-05T10:30:00+00:00"})
    assert early.json()["valid_until"] == iso("11:00")
    etag = early.headers["etag"]
    at_step = client.get(
        "/_ref/connectors", params={"at": "2026-01-05T11:00:00+00:00"}, headers={"If-None-Match": etag}
    )
    assert at_step.status_code == 304
    crossed = client.get(
        "/_ref/connectors", params={"at": "2026-01-05T11:00:00.000001+00:00"}, headers={"If-None-Match": etag}
    )
    assert crossed.status_code == 200
    assert crossed.headers["etag"] != etag
    beta = next(r for r in crossed.json()["connections"] if r["connector_instance_id"] == "beta_one")
    assert beta["health"] == {"state": "stale", "reason": "past_max_staleness"}
    assert crossed.json()["valid_until"] == iso("2026-01-06T11:05:00+00:00")
    assert (
        client.get(
            "/_ref/connectors",
            params={"at": "2026-01-06T00:00:00+00:00"},
            headers={"If-None-Match": crossed.headers["etag"]},
        ).status_code
        == 304
    )


def test_pages_follow_next_after(served: Any, db: psycopg.Connection[Any]) -> None:
    _, client, _ = served
    whole = client.get("/_ref/connectors", params={"at": AT}).json()
    assert "next_after" not in whole
    seen: list[Any] = []
    params: dict[str, Any] = {"at": AT, "limit": 2}
    pages = 0
    while True:
        page = client.get("/_ref/connectors", params=params).json()
        pages += 1
        seen.extend(page["connections"])
        if page["next_after"] is None:
            break
        params["after"] = page["next_after"]
    assert pages == 2
    assert seen == whole["connections"]
    for bad in (
        {"limit": "0"},
        {"limit": "10001"},
        {"limit": "two"},
        {"after": "not-a-cursor"},
        {"at": "noon"},
    ):
        response = client.get("/_ref/connectors", params=bad)
        assert response.status_code == 422, bad
        assert response.json()["error"] == "invalid"


# -- GET /_ref/connectors/{connection} ----------------------------------------------------------------


def test_detail_and_its_errors(served: Any, db: psycopg.Connection[Any]) -> None:
    _, client, _ = served
    detail = client.get("/_ref/connectors/cin_work", params={"at": AT})
    assert detail.status_code == 200
    # The database's text, in the overview's form: durations as a JSON reader prints them.
    row = db.execute("SELECT refproj.connection_detail_json('cin_work', 20, %s)", (at(AT),)).fetchone()
    assert row is not None and detail.content == str(row[0]).encode()
    overview = client.get("/_ref/connectors", params={"at": AT}).content
    for body in (detail.content, overview):
        assert b'"max_staleness":86400.0,' in body
        assert b'"max_staleness_seconds": 86400.0}' in body
    assert b'"max_staleness":3600.0,' in overview  # beta's policy
    body = detail.json()
    assert body["connector_instance_id"] == "cin_work"
    assert [run["run_id"] for run in body["recent_runs"]] == ["run_ok"]
    assert client.get("/_ref/connectors/cin_work", params={"runs": 0}).json()["recent_runs"] == []
    # A connector id with one connection resolves to it.
    assert client.get("/_ref/connectors/beta").json()["connector_instance_id"] == "beta_one"
    missing = client.get("/_ref/connectors/nobody")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "no connection 'nobody'"}
    ambiguous = client.get("/_ref/connectors/acme")
    assert ambiguous.status_code == 409
    assert ambiguous.json()["error"] == "ambiguous"
    assert ambiguous.json()["candidates"] == ["cin_work", "cin_personal"]
    for path, params in (
        ("/_ref/connectors/cin_work", {"runs": "101"}),
        ("/_ref/connectors/cin_work", {"runs": "-1"}),
        ("/_ref/connectors/cin_work", {"at": "2026-01-05T12:00:00"}),
        ("/_ref/connectors/" + "x" * 4097, {}),
        ("/_ref/connectors/a%00b", {}),
        ("/_ref/connectors/cin_work", {"at": "2026-12-01T17:53:49Z\x00garbage"}),
        ("/_ref/connectors", {"at": "2026-12-01T17:53:49Z\x00garbage"}),
        ("/_ref/connectors", {"at": "2026-12-01T17:53:49Z garbage"}),
        ("/_ref/connectors/cin_work", {"runs": ["1", "2"]}),
        ("/_ref/connectors", {"limit": ["5", "6"]}),
        ("/_ref/connectors", {"connector_id": ["acme", "beta"]}),
    ):
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, params)
        assert response.json()["error"] == "invalid"
    assert client.get("/_ref/connectors", params={"limit": ["5", "6"]}).json()["message"] == (
        "limit must be given at most once"
    )
    # Ids may hold any character, slashes included.
    assert client.get("/_ref/connectors/a%2Fb").status_code == 404
    # A lone surrogate (no UTF-8 form) percent-encoded: once 404 "no connection '\ufffd\ufffd\ufffd'"
    # while get("\ud800") is InvalidIdentifier; now the same 422 as every invalid id.
    for address in ("/_ref/connectors/%ED%A0%80", "/_ref/connectors?connector_id=%ED%A0%80"):
        surrogate = client.get(address)
        assert (surrogate.status_code, surrogate.json()) == (
            422,
            {
                "error": "invalid",
                "message": "the address is not UTF-8 text: an id must be Unicode text without lone"
                " surrogates (U+D800-U+DFFF)",
            },
        )


def test_unknown_routes_and_methods_answer_json(served: Any) -> None:
    _, client, _ = served
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    response = client.delete("/_ref/connectors")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_bearer_token(db: psycopg.Connection[Any], db_url: str) -> None:
    _world(db)
    with running_server(db_url, token="s3cret") as (base, _), httpx.Client(base_url=base) as client:
        assert client.get("/healthz").status_code == 200
        for path in ("/_ref/connectors", "/_ref/connectors/cin_work", "/readyz", "/metrics", "/openapi.json"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"] == "unauthorized"
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
            # The scheme is case-insensitive (RFC 9110 11.1); the token is not.
            for header in ("bearer s3cret", "BEARER s3cret", "bEaReR  s3cret"):
                assert client.get(path, headers={"Authorization": header}).status_code == 200, header
            for header in ("Bearer S3CRET", "Basic s3cret", "Bearers3cret", "s3cret"):
                assert client.get(path, headers={"Authorization": header}).status_code == 401, header
        assert client.post("/_ref/connectors/refresh").status_code == 401
        assert (
            client.post("/_ref/connectors/refresh", headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )
        # Every 401 above is counted: 5 paths x (none, wrong, 4 bad headers) + the refresh.
        metrics = client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).text
        assert 'refproj_errors_total{error_class="http_401"} 31.0' in metrics


def test_unreachable_database_is_503(db_url: str) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    with (
        running_server(closed, projection_options={"connect_timeout": 2}) as (base, _),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        assert client.get("/healthz").status_code == 200
        # The event stream too (as its OpenAPI entry says), not heartbeats that carry nothing.
        for path in ("/_ref/connectors", "/_ref/connectors/cin_work", "/readyz", "/_ref/connectors/events"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.json()["error"] == "unavailable"
        # Metrics come from the process's memory: scraping works best when it matters most.
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert 'refproj_errors_total{error_class="DatabaseUnavailable"} 4.0' in metrics.text


def test_a_database_url_libpq_refuses_is_503_not_the_clients_422() -> None:
    bogus = "postgresql://postgres@127.0.0.1/postgres?sslmode=bogus"
    with (
        running_server(bogus, listen_conninfo=None) as (base, _),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        for path in ("/_ref/connectors", "/readyz"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.json() == {
                "error": "unavailable",
                "message": "the database URL has a value libpq refuses (connection is bad: invalid"
                f' sslmode value: "bogus"): {bogus!r}',
            }


def test_no_password_is_ever_shown(db_url: str) -> None:
    """Passwords in the URL's userinfo and query never reach a response body (nor a log line:
    the listener's warning goes through the same mask_secrets)."""
    port = free_port()
    closed = f"postgresql://postgres:s3cretPW@127.0.0.1:{port}/x?password=qpw"
    with (
        running_server(closed, projection_options={"connect_timeout": 2}) as (base, _),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        response = client.get("/_ref/connectors")
        assert response.status_code == 503
        message = response.json()["message"]
        assert message.startswith(
            f"database unreachable at postgresql://postgres:***@127.0.0.1:{port}/x?password=***: "
        )
        assert "s3cretPW" not in response.text and "qpw" not in response.text
    assert mask_secrets("host=h password='a b\\'c' sslpassword=k user=u passfile=/p") == (
        "host=h password=*** sslpassword=*** user=u passfile=/p"
    )


def test_listener_backs_off_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """A database that stays down: one warning, then retries at doubling intervals (debug only)."""
    from refproj.web.events import MAX_BACKOFF, Listener

    async def scenario() -> list[float]:
        listener = Listener(f"postgresql://postgres:pw@127.0.0.1:{free_port()}/x", retry_seconds=0.01)
        listener.start()
        try:
            while len(listener.waits) < 8:
                await asyncio.sleep(0.01)
        finally:
            await listener.stop()
        return listener.waits[:8]

    with caplog.at_level(logging.DEBUG, logger="refproj.web.events"):
        waits = asyncio.run(scenario())
    assert waits == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28]
    assert MAX_BACKOFF == 30.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("refproj listener: connection failed: ")
    assert warnings[0].endswith(" failed: Connection refused (reconnecting with back-off up to 30 s)")
    assert "\n" not in warnings[0]  # one line: psycopg's hint on its next line is left out
    assert "pw@" not in warnings[0]


def test_unmigrated_database_is_503(empty_db_url: str) -> None:
    with (
        running_server(empty_db_url, listen_conninfo=None) as (base, _),
        httpx.Client(base_url=base) as client,
    ):
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"] == "not_migrated"
        assert "refproj migrate" in response.json()["message"]


def test_a_refresh_on_a_read_only_database_is_503_read_only(db: psycopg.Connection[Any], db_url: str) -> None:
    """The request is fine; this deployment's database accepts no writes (a hot standby answers
    the same SQLSTATE 25006), so the answer is 503 naming it, not 500 internal."""
    _world(db)
    alter_database(db, "default_transaction_read_only", "on")
    with (
        running_server(db_url) as (base, _),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        response = client.post("/_ref/connectors/refresh")
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "read_only"
        assert body["message"].startswith(f"this server is read-only; refresh on the primary ({db_url}: ")
        assert body["message"].endswith(" in a read-only transaction)")
        # Reads still work on it.
        assert client.get("/_ref/connectors").status_code == 200
        document = client.get("/openapi.json").json()
        assert "read_only" in document["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
        described = document["paths"]["/_ref/connectors/refresh"]["post"]["responses"]["503"]["description"]
        assert described.endswith(" read_only: it accepts no writes (a hot standby).")


def test_statement_timeout_is_504(db: psycopg.Connection[Any], db_url: str) -> None:
    _world(db)
    with (
        running_server(db_url, projection_options={"statement_timeout": 0.3}) as (base, _),
        httpx.Client(base_url=base, timeout=30) as client,
        psycopg.connect(db_url) as locker,
    ):
        locker.execute("LOCK TABLE refproj.run_facts IN ACCESS EXCLUSIVE MODE")
        response = client.get("/_ref/connectors/cin_work")
        assert response.status_code == 504
        assert response.json()["error"] == "timeout"
        locker.rollback()
        assert client.get("/_ref/connectors/cin_work").status_code == 200


# -- the event stream -------------------------------------------------------------------------------


def _listeners(db: psycopg.Connection[Any]) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'refproj events'"
    ).fetchone()
    assert row is not None
    return int(row[0])


async def _next_event(lines: Any) -> dict[str, str]:
    """The next event (not a heartbeat comment) of an SSE line iterator."""
    event: dict[str, str] = {}
    async for line in lines:
        if line == "" and event:
            return event
        if line.startswith(":") or not line:
            continue
        name, _, value = line.partition(":")
        event[name] = value.removeprefix(" ")
    raise AssertionError("the stream ended")


def test_events_after_a_write_without_anyone_refreshing(served: Any, db: psycopg.Connection[Any]) -> None:
    world, client, app = served
    base = str(client.base_url)

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as aclient:
            # Five subscribers, one LISTEN connection.
            streams = [aclient.stream("GET", "/_ref/connectors/events") for _ in range(5)]
            responses = [await stream.__aenter__() for stream in streams]
            try:
                assert all(r.status_code == 200 for r in responses)
                assert responses[0].headers["content-type"].startswith("text/event-stream")
                await asyncio.to_thread(
                    wait_for, lambda: app.state.service.metrics.subscribers._value.get() == 5
                )
                assert _listeners(db) == 1
                # The service's projection watches for writes; nobody calls refresh or reads.
                world.succeeded_run("run_late", "cin_personal", "11:30", "11:40")
                lines = [r.aiter_lines() for r in responses]
                events = await asyncio.wait_for(asyncio.gather(*(_next_event(it) for it in lines)), 20)
                as_of = _as_of(db)
                for event in events:
                    assert event["event"] == "refreshed"
                    assert event["id"] == as_of
                    assert json.loads(event["data"]) == {"as_of": as_of}
                overview = (await aclient.get("/_ref/connectors")).json()
                assert overview["as_of"] == as_of
            finally:
                for stream in streams:
                    await stream.__aexit__(None, None, None)

    asyncio.run(scenario())
    assert _listeners(db) == 1


def test_last_event_id_is_honoured(served: Any, db: psycopg.Connection[Any]) -> None:
    _, client, _ = served
    base = str(client.base_url)
    current = _as_of(db)

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as aclient:
            # An id from before the last refresh: the current as_of comes at once.
            old = "2026-01-01T00:00:00+00:00"
            async with aclient.stream("GET", "/_ref/connectors/events", headers={"Last-Event-ID": old}) as r:
                event = await asyncio.wait_for(_next_event(r.aiter_lines()), 20)
                assert event["id"] == current
            # The current id: the next event is the next refresh's, after heartbeats only.
            async with aclient.stream(
                "GET", "/_ref/connectors/events", headers={"Last-Event-ID": current}
            ) as r:
                lines = r.aiter_lines()
                heartbeat = await asyncio.wait_for(lines.__anext__(), 20)
                assert heartbeat.startswith(":")
                await aclient.post("/_ref/connectors/refresh")
                event = await asyncio.wait_for(_next_event(lines), 20)
                assert event["id"] == _as_of(db) != current

    asyncio.run(scenario())


def test_events_catch_up_a_refresh_missed_while_reconnecting(
    served: Any, db: psycopg.Connection[Any], db_url: str
) -> None:
    """A refresh committed while the listener's LISTEN connection is gone sends its NOTIFY to
    nobody: after reconnecting, the listener reads the as_of and sends the event anyway."""
    world, client, app = served
    listener = app.state.service.listener
    base = str(client.base_url)
    name = sql.Identifier(db.info.dbname)
    # A database cannot refuse connections to itself from inside: say it from another one.
    admin = psycopg.connect(make_conninfo(db_url, dbname="postgres"), autocommit=True)

    async def scenario() -> None:
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as aclient,
            aclient.stream("GET", "/_ref/connectors/events") as response,
        ):
            lines = response.aiter_lines()
            assert (await asyncio.wait_for(lines.__anext__(), 20)).startswith(":")  # a heartbeat
            await asyncio.to_thread(wait_for, listener.listening.is_set)
            seen = app.state.service.metrics.refreshes._value.get()
            before = _as_of(db)
            # No connection can LISTEN again until the refresh has committed.
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
            try:
                db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = 'refproj events'"
                )
                await asyncio.to_thread(wait_for, lambda: not listener.listening.is_set())
                assert world.refresh() is True
            finally:
                admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
            event = await asyncio.wait_for(_next_event(lines), 60)
            assert event["id"] == _as_of(db) != before
            assert json.loads(event["data"]) == {"as_of": event["id"]}
            # It came from the catch-up read: no NOTIFY of that refresh reached this process.
            assert listener.connections_opened == 2
            assert app.state.service.metrics.refreshes._value.get() == seen

    with admin:
        asyncio.run(scenario())


# -- cancellation and budgets -----------------------------------------------------------------------


def _detail_statements(db: psycopg.Connection[Any], like: str = "%connection_detail%") -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE %s",
        (like,),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("path", "table", "query"),
    [
        ("/_ref/connectors/cin_work", "refproj.run_facts", "%connection_detail%"),
        ("/_ref/connectors?limit=7", "refproj.projection_state", "%connection_summaries_page%"),
    ],
)
def test_client_disconnect_cancels_the_statement(
    served: Any,
    db: psycopg.Connection[Any],
    db_url: str,
    path: str,
    table: str,
    query: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The statement of a request whose client went away is cancelled, and nothing is logged
    at INFO or above (a disconnect is not an error of the service)."""
    _, client, _ = served
    port = client.base_url.port
    with caplog.at_level(logging.INFO), psycopg.connect(db_url) as locker:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            wait_for(lambda: _detail_statements(db, query) == 1, what="the statement to wait on the lock")
        # The client is gone; the lock is still held, so only a cancel ends the statement.
        wait_for(lambda: _detail_statements(db, query) == 0, what="the statement to be canceled")
        locker.rollback()
        assert client.get(path).status_code == 200
    logged = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.INFO and r.name != "httpx"  # the client's own request lines
    ]
    assert logged == []


def test_slow_details_cannot_starve_overview_reads(
    served: Any, db: psycopg.Connection[Any], db_url: str
) -> None:
    _, client, app = served
    base = str(client.base_url)
    slots = 4  # create_app's default detail_concurrency

    async def scenario(locker: psycopg.AsyncConnection[Any]) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as aclient:
            details = [asyncio.ensure_future(aclient.get("/_ref/connectors/cin_work")) for _ in range(20)]
            await asyncio.to_thread(wait_for, lambda: _detail_statements(db) == slots)
            await asyncio.to_thread(wait_for, lambda: app.state.service.details_waiting == 20 - slots)
            # Twenty slow details in flight: the overview still answers, and a refresh runs.
            overview = await aclient.get("/_ref/connectors")
            assert overview.status_code == 200
            assert len(overview.json()["connections"]) == 3
            assert not any(d.done() for d in details)
            metrics = (await aclient.get("/metrics")).text
            assert f"refproj_pool_waiting {float(20 - slots)}" in metrics
            await locker.rollback()
            responses = await asyncio.gather(*details)
            assert [r.status_code for r in responses] == [200] * 20

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(db_url) as locker:
            await locker.execute("LOCK TABLE refproj.run_facts IN ACCESS EXCLUSIVE MODE")
            await scenario(locker)

    asyncio.run(main())


# -- health, metrics, documentation -----------------------------------------------------------------


def test_health_readiness_and_metrics(served: Any, db: psycopg.Connection[Any]) -> None:
    _, client, app = served
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "as_of": _as_of(db), "source_changed": False}
    before = app.state.service.metrics.refreshes._value.get()
    client.post("/_ref/connectors/refresh")
    wait_for(lambda: app.state.service.metrics.refreshes._value.get() == before + 1, what="the NOTIFY")
    client.get("/_ref/connectors/nobody")
    text = client.get("/metrics").text
    for name in (
        "refproj_refreshes_total 1.0",
        "refproj_refresh_duration_seconds_count 1.0",
        "refproj_overview_staleness_seconds 0.0",
        "refproj_coalesced_reads",
        "refproj_pool_connections_in_use",
        "refproj_pool_waiting 0.0",
        'refproj_errors_total{error_class="ConnectionNotFound"} 1.0',
        "refproj_event_subscribers 0.0",
    ):
        assert name in text, name


def test_openapi_documents_typed_responses(served: Any) -> None:
    _, client, _ = served
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    schemas = document["components"]["schemas"]
    for name in ("OverviewRow", "Detail", "RunBrief", "Freshness", "Health", "OverviewEnvelope", "Error"):
        assert schemas[name]["type"] == "object", name
    assert set(schemas["OverviewRow"]["required"]) >= {"connector_instance_id", "freshness", "health"}
    get = document["paths"]["/_ref/connectors/{connection}"]["get"]
    assert set(get["responses"]) == {"200", "401", "404", "409", "422", "503", "504"}


def test_refproj_serve(db: psycopg.Connection[Any], db_url: str, tmp_path: Path) -> None:
    """The command: two workers on 127.0.0.1, the token from the environment; every scrape
    shows both workers' counters added up, each refresh counted once."""
    import os
    import signal
    import subprocess
    import sys

    _world(db)
    port = free_port()
    command = [str(Path(sys.executable).parent / "refproj"), "serve", "--port", str(port), "--workers", "2"]
    env = {**os.environ, "DATABASE_URL": db_url, "REFPROJ_API_TOKEN": "t0ken", "TMPDIR": str(tmp_path)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return server.poll() is not None

        try:
            wait_for(ready, timeout=60, what="refproj serve to answer")
        except AssertionError:
            server.kill()
            raise AssertionError(server.communicate()[0].decode(errors="replace")[-3000:]) from None
        assert server.poll() is None
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/_ref/connectors").status_code == 401
            response = client.get("/_ref/connectors", headers={"Authorization": "Bearer t0ken"})
            assert response.status_code == 200
            assert [r["connector_instance_id"] for r in response.json()["connections"]] == [
                "cin_work",
                "cin_personal",
                "beta_one",
            ]
        # One LISTEN connection per worker process.
        wait_for(lambda: _listeners(db) == 2, what="each worker's LISTEN connection")
        # Fresh connections (so both workers answer some): every scrape adds up every worker.
        token = {"Authorization": "Bearer t0ken"}
        for _ in range(6):
            assert (
                httpx.get(f"http://127.0.0.1:{port}/_ref/connectors/nobody", headers=token).status_code == 404
            )
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 401
        assert (
            httpx.post(f"http://127.0.0.1:{port}/_ref/connectors/refresh", headers=token).status_code == 200
        )

        def scrape() -> str:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", headers=token).text

        wait_for(lambda: "refproj_refreshes_total 1.0" in scrape(), what="the refresh in the metrics")
        for _ in range(4):
            text = scrape()
            assert 'refproj_errors_total{error_class="ConnectionNotFound"} 6.0' in text
            assert 'refproj_errors_total{error_class="http_401"} 7.0' in text  # and the first one above
            assert "refproj_refreshes_total 1.0" in text
            assert "refproj_refresh_duration_seconds_count 1.0" in text
        # Ctrl-C with an event stream open: the stream ends as a complete response.
        stream = socket.create_connection(("127.0.0.1", port))
        stream.sendall(
            b"GET /_ref/connectors/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t0ken\r\n\r\n"
        )
        received = stream.recv(4096)
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0].decode(errors="replace")
    assert server.returncode == 0
    with stream:
        while chunk := stream.recv(4096):
            received += chunk
    assert received.endswith(b"\r\n0\r\n\r\n"), received[-200:]  # the last chunk of the body
    assert "ERROR" not in output and "Traceback" not in output, output
    assert list(tmp_path.iterdir()) == []  # the metrics directory is gone


@pytest.mark.parametrize(
    ("host", "first_line"),
    [
        (
            "0.0.0.0",
            "refproj: warning: serving 0.0.0.0 without REFPROJ_API_TOKEN: anyone who can reach it reads"
            " the console\n",
        ),
        ("127.0.0.1", "INFO:     Uvicorn running on http://127.0.0.1:"),
        ("::1", "INFO:     Uvicorn running on http://[::1]:"),
    ],
)
def test_refproj_serve_warns_when_open_to_the_network(db_url: str, host: str, first_line: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    command = [
        str(Path(sys.executable).parent / "refproj"),
        "serve",
        "--host",
        host,
        "--port",
        str(port := free_port()),
    ]
    env = {k: v for k, v in os.environ.items() if k != "REFPROJ_API_TOKEN"} | {"DATABASE_URL": db_url}
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        assert server.stderr.readline().startswith(first_line)
        url = f"http://{'[::1]' if host == '::1' else '127.0.0.1'}:{port}/healthz"

        def answers() -> bool:  # an interrupt before the server runs ends it with another code
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.TransportError:
                return server.poll() is not None

        wait_for(answers, timeout=60, what="refproj serve to answer")
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0


def test_refproj_serve_refuses_bad_options() -> None:
    import subprocess
    import sys
    from pathlib import Path

    refproj = str(Path(sys.executable).parent / "refproj")
    done = subprocess.run([refproj, "serve", "--workers", "0"], capture_output=True, text=True, check=False)
    assert done.returncode == 7
    assert done.stderr == "refproj: --workers must be from 1 to 64, not 0\n"
