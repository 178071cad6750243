"""The JSON API (``/_ref/...``) and the operational routes (``/healthz``, ``/readyz``,
``/metrics``, ``/openapi.json``): the handlers of ``Service``, around one ``AsyncProjection``.
The handlers compute nothing: the overview body is the JSON text the database serialised,
wrapped in its envelope (``refproj.paging.OverviewPage``). A ``RefprojError`` a handler raises
answers with the status ``refproj.web.http.ERROR_STATUS`` gives it and a JSON body
``{"error", "message"}`` (404 not found, 409 ambiguous, 422 invalid, 503 unavailable, 504 timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from refproj.errors import DatabaseUnavailable, PoolExhausted, RefprojError
from refproj.web.events import Listener, Subscription
from refproj.web.http import (
    JSON,
    at_param,
    cancel_on_disconnect,
    check_utf8_address,
    error_response,
    etag_matches,
    int_param,
    single_valued,
)
from refproj.web.metrics import Metrics
from refproj.web.openapi import openapi_document

if TYPE_CHECKING:
    from refproj.projection_async import AsyncProjection

log = logging.getLogger(__name__)

MAX_RUNS = 100  # ?runs= bound of the detail
DEFAULT_RUNS = 20
SHUTDOWN_GRACE = 5.0  # seconds an event stream has to end by itself at shutdown
LISTEN_WAIT = 2.0  # seconds a new event stream waits for the listener to be listening


class Service:
    """The handlers, with their dependencies."""

    def __init__(
        self,
        projection: AsyncProjection,
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

    async def overview(self, request: Request) -> Response:
        """GET /_ref/connectors[?connector_id=&at=&limit=&after=]: 200 with the overview page
        (``list_page()``) and its ETag, 304 when If-None-Match matches it, 422 for a bad parameter."""
        check_utf8_address(request)
        params = request.query_params
        single_valued(params, "connector_id", "at", "limit", "after")
        connector_id = params.get("connector_id")
        limit = int_param(params, "limit", 1, 10_000)
        page = await cancel_on_disconnect(
            request,
            self.projection.list_page(
                connector_id, at=at_param(params), limit=limit, after=params.get("after")
            ),
        )
        headers = {"ETag": page.etag, "Cache-Control": "no-cache"}
        if etag_matches(request.headers.get("if-none-match"), page.etag):
            return Response(status_code=304, headers=headers)
        return Response(page.body, media_type=JSON, headers=headers)

    async def detail(self, request: Request) -> Response:
        """GET /_ref/connectors/{connection}[?at=&runs=]: 200 with the live detail (``get_json()``,
        ``runs`` 0 to 100, default 20); 404, 409 with ``candidates``, 422; 503 ``busy`` when no
        detail slot frees within ``detail_wait`` seconds."""
        check_utf8_address(request)
        connection = request.path_params["connection"]
        single_valued(request.query_params, "at", "runs")
        runs = int_param(request.query_params, "runs", 0, MAX_RUNS)
        at = at_param(request.query_params)
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
            detail = await cancel_on_disconnect(
                request,
                self.projection.get_json(connection, run_limit=DEFAULT_RUNS if runs is None else runs, at=at),
            )
        finally:
            self.detail_slots.release()
        # The database's text, as the overview's: both bodies in one form (numbers, spacing).
        return Response(detail.encode(), media_type=JSON, headers={"Cache-Control": "no-store"})

    async def refresh(self, request: Request) -> Response:
        """POST /_ref/connectors/refresh: 200 with ``{"refreshed", "as_of", "refresh_ms"}`` once a
        refresh that started after the request committed (``refresh()``); 504 past its timeout."""
        result = await self.projection.refresh()
        return Response(orjson.dumps(result.to_dict()), media_type=JSON)

    async def events(self, request: Request) -> Response:
        """GET /_ref/connectors/events: 200, a server-sent event stream, one ``refreshed`` event
        (``{"as_of"}``, id as_of) per refresh, preceded by the current one when a Last-Event-ID
        differs from it; 503 when the app has no listener or its LISTEN is not up within 2 s."""
        if self.listener is None:
            return error_response(503, "unavailable", "this app was built without an event listener")
        listener = self.listener
        # No LISTEN in effect (the database is down, or the listener is still connecting after
        # startup): 503 as documented, rather than a stream of heartbeats that cannot carry events.
        # EventSource clients retry by themselves.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LISTEN_WAIT):
                await listener.listening.wait()
        if not listener.listening.is_set():
            raise DatabaseUnavailable("the event stream's LISTEN connection is down; retry later")
        last_id = request.headers.get("last-event-id")

        # Set by sse-starlette when the server shuts down: the stream then ends like a finished
        # response (cancelled, it would leave the response incomplete, which uvicorn logs).
        shutdown = anyio.Event()

        async def close_at_shutdown(subscription: Subscription) -> None:
            await shutdown.wait()
            subscription.close()

        async def stream() -> AsyncIterator[ServerSentEvent]:
            with listener.subscribe() as subscription:
                self.metrics.subscribers.inc()
                closer = asyncio.ensure_future(close_at_shutdown(subscription))
                try:
                    # Subscribed first, then compared: a refresh in between is not lost.
                    if last_id is not None:
                        current = _iso((await self.projection.status()).as_of)
                        if current != last_id:
                            yield _event(current)
                    while (event := await subscription.next()) is not None:
                        yield _event(event.as_of)
                finally:
                    closer.cancel()
                    self.metrics.subscribers.dec()

        return EventSourceResponse(
            stream(),
            ping=self.heartbeat,
            headers={"Cache-Control": "no-cache"},
            shutdown_event=shutdown,
            shutdown_grace_period=SHUTDOWN_GRACE,
        )

    async def healthz(self, request: Request) -> Response:
        """GET /healthz: 200 ``{"status": "ok"}`` while the process serves; asks the database nothing."""
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def readyz(self, request: Request) -> Response:
        """GET /readyz: 200 ``{"status": "ready", "as_of", "source_changed"}`` (``status()``); 503
        while the database is unreachable or not migrated."""
        status = await self.projection.status()
        body = {"status": "ready", "as_of": _iso(status.as_of), "source_changed": status.source_changed}
        return Response(orjson.dumps(body), media_type=JSON)

    async def metrics_text(self, request: Request) -> Response:
        """GET /metrics: 200, Prometheus text format; always answers (no statement)."""
        # From this process's memory only, never a statement: scrapes matter most while the
        # database is down (only /readyz reflects the database).
        status = self.projection.last_status
        m = self.metrics
        if status is not None:
            m.as_of.set(status.as_of.timestamp())
            stale = (datetime.now(UTC) - status.as_of).total_seconds() if status.source_changed else 0.0
            m.staleness.set(stale)
        numbers = self.projection.stats()
        m.coalesced_reads.set(numbers["coalesced_reads"])
        m.pool_in_use.set(numbers["pool_in_use"])
        m.pool_waiting.set(self.details_waiting)
        return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(self, request: Request) -> Response:
        """GET /openapi.json: 200 with the API's OpenAPI 3.1 document."""
        return Response(openapi_document(), media_type=JSON)

    async def startup(self) -> None:
        """Start the event listener and, in the background, a first read; raises nothing."""
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
        """Stop the first read, the listener and the metrics; raises nothing."""
        if self._warm is not None:
            self._warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm
        if self.listener is not None:
            await self.listener.stop()
        self.metrics.close()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _event(as_of: str) -> ServerSentEvent:
    return ServerSentEvent(data=orjson.dumps({"as_of": as_of}).decode(), event="refreshed", id=as_of)


def routes(service: Service) -> list[Route]:
    """The API's routing table."""
    return [
        Route("/_ref/connectors", service.overview, methods=["GET"]),
        Route("/_ref/connectors/refresh", service.refresh, methods=["POST"]),
        Route("/_ref/connectors/events", service.events, methods=["GET"]),
        Route("/_ref/connectors/{connection:path}", service.detail, methods=["GET"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics_text, methods=["GET"]),
        Route("/openapi.json", service.openapi, methods=["GET"]),
    ]
