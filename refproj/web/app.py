"""The console's HTTP service: a Starlette app around one ``AsyncProjection``.

``create_app(projection, token=...)`` builds it; the routing table at the bottom is the whole
surface. The app never computes anything: the overview body is the JSON text the database
serialised, wrapped in its envelope (``refproj.paging.OverviewPage``), and every error leaving
the projection is a ``RefprojError`` mapped to one status code here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from refproj.errors import (
    AmbiguousConnection,
    ConnectionNotFound,
    DatabaseUnavailable,
    InvalidArgument,
    MigrationsNotApplied,
    PermissionDenied,
    PoolExhausted,
    RefprojError,
    StatementCanceled,
)
from refproj.paging import OverviewPage
from refproj.rows import Detail, RefreshResult, Status
from refproj.web import dashboard
from refproj.web.events import Listener
from refproj.web.metrics import Metrics
from refproj.web.openapi import openapi_document

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RUNS = 100  # ?runs= bound of the detail
DEFAULT_RUNS = 20
JSON = "application/json"


class Source(Protocol):
    """What the app needs of ``refproj.AsyncProjection``."""

    async def list_page(
        self,
        connector_id: str | None = None,
        *,
        at: datetime | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> OverviewPage: ...

    async def get(self, connection: str, *, run_limit: int = 20, at: datetime | None = None) -> Detail: ...

    async def refresh(self) -> RefreshResult: ...

    async def status(self) -> Status: ...

    def stats(self) -> dict[str, int]: ...


# -- errors ---------------------------------------------------------------------------------------

# (class, HTTP status, "error" code); the first that matches wins.
ERROR_STATUS: list[tuple[type[RefprojError], int, str]] = [
    (ConnectionNotFound, 404, "not_found"),
    (AmbiguousConnection, 409, "ambiguous"),
    (InvalidArgument, 422, "invalid"),
    (MigrationsNotApplied, 503, "not_migrated"),
    (PermissionDenied, 503, "permission_denied"),
    (PoolExhausted, 503, "busy"),
    (DatabaseUnavailable, 503, "unavailable"),
    (StatementCanceled, 504, "timeout"),
    (RefprojError, 500, "internal"),
]


def error_response(status: int, error: str, message: str, **extra: Any) -> Response:
    body = orjson.dumps({"error": error, "message": message, **extra})
    return Response(body, status_code=status, media_type=JSON)


def _refproj_error(error: RefprojError) -> Response:
    status, code = next((s, c) for kind, s, c in ERROR_STATUS if isinstance(error, kind))
    extra: dict[str, Any] = {}
    if isinstance(error, AmbiguousConnection):
        extra["candidates"] = list(error.candidate_ids)
    return error_response(status, code, str(error), **extra)


class Invalid(InvalidArgument):
    """A query parameter that is not what the route documents (422)."""


# -- request helpers ------------------------------------------------------------------------------


def _int_param(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise Invalid(f"{name} must be a whole number between {low} and {high}")
    value = int(text)
    if not low <= value <= high:
        raise Invalid(f"{name} must be a whole number between {low} and {high}")
    return value


def _at_param(params: Mapping[str, str]) -> datetime | None:
    text = params.get("at")
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as error:
        raise Invalid("at must be an ISO-8601 time with a UTC offset, e.g. 2026-01-05T12:00:00Z") from error
    if value.tzinfo is None:
        raise Invalid("at must carry a UTC offset (Z or +HH:MM)")
    return value


def _etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ prefixes are ignored."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    candidates = (part.strip().removeprefix("W/") for part in header.split(","))
    return etag in candidates


async def _cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first.

    Starlette does not cancel a handler when its client goes away; the projection cancels the
    statement on the server when every task awaiting it is cancelled, so watching for
    ``http.disconnect`` is all it takes to free the connection.
    """
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                task.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


# -- the service ----------------------------------------------------------------------------------


class Service:
    """The handlers, with their dependencies."""

    def __init__(
        self,
        projection: Source,
        *,
        listen_conninfo: str | None,
        detail_concurrency: int,
        detail_wait: float,
        heartbeat: float,
    ) -> None:
        self.projection = projection
        self.metrics = Metrics()
        self.listener = (
            Listener(listen_conninfo, on_refresh=self.metrics.observe_refresh)
            if listen_conninfo is not None
            else None
        )
        # Detail reads are live and can be slow; they get at most this many connections at a
        # time, so overview reads (one shared statement per distinct request) and refreshes
        # always find one in the pool.
        self.detail_slots = asyncio.Semaphore(detail_concurrency)
        self.detail_wait = detail_wait
        self.details_waiting = 0
        self.heartbeat = heartbeat
        self._warm: asyncio.Task[None] | None = None

    # GET /_ref/connectors
    async def overview(self, request: Request) -> Response:
        params = request.query_params
        connector_id = params.get("connector_id")
        limit = _int_param(params, "limit", 1, 10_000)
        page = await _cancel_on_disconnect(
            request,
            self.projection.list_page(
                connector_id, at=_at_param(params), limit=limit, after=params.get("after")
            ),
        )
        headers = {"ETag": page.etag, "Cache-Control": "no-cache"}
        if _etag_matches(request.headers.get("if-none-match"), page.etag):
            return Response(status_code=304, headers=headers)
        return Response(page.body, media_type=JSON, headers=headers)

    # GET /_ref/connectors/{connection}
    async def detail(self, request: Request) -> Response:
        connection = request.path_params["connection"]
        runs = _int_param(request.query_params, "runs", 0, MAX_RUNS)
        at = _at_param(request.query_params)
        self.details_waiting += 1
        try:
            async with asyncio.timeout(self.detail_wait):
                await self.detail_slots.acquire()
        except TimeoutError as error:
            raise PoolExhausted(
                f"no detail read slot free within {self.detail_wait:g} s (too many slow details in flight)"
            ) from error
        finally:
            self.details_waiting -= 1
        try:
            detail = await _cancel_on_disconnect(
                request,
                self.projection.get(connection, run_limit=DEFAULT_RUNS if runs is None else runs, at=at),
            )
        finally:
            self.detail_slots.release()
        return Response(orjson.dumps(detail), media_type=JSON, headers={"Cache-Control": "no-store"})

    # POST /_ref/connectors/refresh
    async def refresh(self, request: Request) -> Response:
        result = await self.projection.refresh()
        return Response(orjson.dumps(result.to_dict()), media_type=JSON)

    # GET /_ref/connectors/events
    async def events(self, request: Request) -> Response:
        if self.listener is None:
            return error_response(503, "unavailable", "this app was built without an event listener")
        listener = self.listener
        last_id = request.headers.get("last-event-id")

        async def stream() -> AsyncIterator[ServerSentEvent]:
            with listener.subscribe() as subscription:
                self.metrics.subscribers.inc()
                try:
                    # Subscribed first, then compared: a refresh in between is not lost.
                    if last_id is not None:
                        current = _iso((await self.projection.status()).as_of)
                        if current != last_id:
                            yield _event(current)
                    while True:
                        yield _event((await subscription.next()).as_of)
                finally:
                    self.metrics.subscribers.dec()

        return EventSourceResponse(stream(), ping=self.heartbeat, headers={"Cache-Control": "no-cache"})

    # GET /healthz
    async def healthz(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    # GET /readyz
    async def readyz(self, request: Request) -> Response:
        status = await self.projection.status()
        body = {"status": "ready", "as_of": _iso(status.as_of), "source_changed": status.source_changed}
        return Response(orjson.dumps(body), media_type=JSON)

    # GET /metrics
    async def metrics_text(self, request: Request) -> Response:
        status = await self.projection.status()
        now = datetime.now(UTC)
        m = self.metrics
        m.as_of.set(status.as_of.timestamp())
        m.staleness.set((now - status.as_of).total_seconds() if status.source_changed else 0.0)
        numbers = self.projection.stats()
        m.coalesced_reads.set(numbers["coalesced_reads"])
        m.pool_in_use.set(numbers["pool_in_use"])
        m.pool_waiting.set(self.details_waiting)
        return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # GET /openapi.json
    async def openapi(self, request: Request) -> Response:
        return Response(openapi_document(), media_type=JSON)

    async def startup(self) -> None:
        if self.listener is not None:
            self.listener.start()
        # A first read starts the projection's watcher, which refreshes after source writes
        # (and so drives the event stream) whether or not anyone reads; in the background, so
        # that a database still down at startup delays nothing.
        self._warm = asyncio.get_running_loop().create_task(self._first_read(), name="refproj-warm")

    async def _first_read(self) -> None:
        try:
            await self.projection.list_page(limit=1)
        except RefprojError as error:
            log.warning("refproj web: first read failed (%s); the next request tries again", error)

    async def shutdown(self) -> None:
        if self._warm is not None:
            self._warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm
        if self.listener is not None:
            await self.listener.stop()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _event(as_of: str) -> ServerSentEvent:
    return ServerSentEvent(data=orjson.dumps({"as_of": as_of}).decode(), event="refreshed", id=as_of)


class BearerToken:
    """Requires the token on every route but ``/healthz``: ``Authorization: Bearer <token>``, or,
    for a browser (which cannot add that header to a page load or an EventSource), the
    ``refproj_token`` cookie. Opening ``/dashboard/runs?token=<token>`` once sets that cookie
    (HttpOnly, SameSite=Strict) and redirects to the same page without the token in its URL."""

    COOKIE = "refproj_token"

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.expected = b"Bearer " + self.token

    def _matches(self, given: str | bytes | None, expected: bytes) -> bool:
        given_bytes = given.encode() if isinstance(given, str) else given or b""
        return hmac.compare_digest(given_bytes, expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/healthz":
            connection = HTTPConnection(scope)
            offered = connection.query_params.get("token")
            if scope["path"].startswith("/dashboard/") and self._matches(offered, self.token):
                kept = [(k, v) for k, v in connection.query_params.multi_items() if k != "token"]
                location = scope["path"] + ("?" + urlencode(kept) if kept else "")
                response: Response = RedirectResponse(location, status_code=303)
                response.set_cookie(self.COOKIE, self.token.decode(), httponly=True, samesite="strict")
                await response(scope, receive, send)
                return
            authorized = self._matches(
                dict(scope["headers"]).get(b"authorization"), self.expected
            ) or self._matches(connection.cookies.get(self.COOKIE), self.token)
            if not authorized:
                response = error_response(
                    401, "unauthorized", "this service needs Authorization: Bearer <REFPROJ_API_TOKEN>"
                )
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    projection: Source,
    *,
    token: str | None = None,
    listen_conninfo: str | None = None,
    detail_concurrency: int = 4,
    detail_wait: float = 10.0,
    heartbeat: float = 15.0,
    close_projection: Callable[[], Awaitable[None]] | None = None,
) -> Starlette:
    """The HTTP service around ``projection`` (an ``AsyncProjection``).

    ``token``: when set, every route but ``/healthz`` needs ``Authorization: Bearer <token>``.
    ``listen_conninfo``: a libpq URL for the one ``LISTEN refproj_refreshed`` connection behind
    the event stream and the refresh metrics (None: no event stream). ``detail_concurrency``:
    detail reads running at once (keep it below the pool size so overviews and refreshes always
    find a connection); a detail waits at most ``detail_wait`` seconds for a slot, then 503.
    ``heartbeat``: seconds between comment lines on idle event streams.
    ``close_projection`` is awaited at shutdown.
    """
    if detail_concurrency < 1:
        raise ValueError("detail_concurrency must be at least 1")
    service = Service(
        projection,
        listen_conninfo=listen_conninfo,
        detail_concurrency=detail_concurrency,
        detail_wait=detail_wait,
        heartbeat=heartbeat,
    )
    routes = [
        Route("/_ref/connectors", service.overview, methods=["GET"]),
        Route("/_ref/connectors/refresh", service.refresh, methods=["POST"]),
        Route("/_ref/connectors/events", service.events, methods=["GET"]),
        Route("/_ref/connectors/{connection:path}", service.detail, methods=["GET"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics_text, methods=["GET"]),
        Route("/openapi.json", service.openapi, methods=["GET"]),
        *dashboard.ROUTES,
    ]

    async def on_refproj_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RefprojError)
        service.metrics.errors.labels(type(error).__name__).inc()
        return _refproj_error(error)

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        service.metrics.errors.labels(f"http_{error.status_code}").inc()
        response = error_response(error.status_code, code, str(error.detail))
        if error.headers:
            response.headers.update(error.headers)
        return response

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.startup()
        try:
            yield
        finally:
            await service.shutdown()
            if close_projection is not None:
                await close_projection()

    app = Starlette(
        routes=routes,
        exception_handlers={RefprojError: on_refproj_error, HTTPException: on_http_error},
        lifespan=lifespan,
    )
    app.state.service = service
    if token:
        app.add_middleware(BearerToken, token=token)
    return app
