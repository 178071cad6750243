"""The console's HTTP service: a Starlette app around one ``AsyncProjection``.

``create_app(projection, token=...)`` builds it from its parts: the JSON API and operational
routes (``refproj.web.api``), the dashboard pages (``refproj.web.dashboard``), the bearer token
(``refproj.web.access``), and one status code per ``RefprojError`` (``refproj.web.http``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from refproj.errors import RefprojError
from refproj.web import api, dashboard
from refproj.web.access import BearerToken
from refproj.web.api import Service
from refproj.web.http import ClientDisconnected, error_response, refproj_error_response

if TYPE_CHECKING:
    from refproj.projection_async import AsyncProjection

log = logging.getLogger(__name__)


def create_app(
    projection: AsyncProjection,
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
    routes = [*api.routes(service), *dashboard.ROUTES]

    async def on_refproj_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RefprojError)
        service.metrics.errors.labels(type(error).__name__).inc()
        return refproj_error_response(error)

    async def on_client_gone(request: Request, error: Exception) -> Response:
        log.debug(
            "refproj web: %s %s: the client went away; its statement was cancelled", request.method, error
        )
        return Response(status_code=499)  # nginx's "client closed request"; nobody receives it

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        service.metrics.errors.labels(f"http_{error.status_code}").inc()
        if request.url.path.startswith("/dashboard/"):  # a browser's address: answer a page
            title = "No such page" if error.status_code == 404 else str(error.detail)
            response = dashboard.error_page(request, error.status_code, title, str(error.detail))
        else:
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
        exception_handlers={
            RefprojError: on_refproj_error,
            HTTPException: on_http_error,
            ClientDisconnected: on_client_gone,
        },
        lifespan=lifespan,
    )
    app.state.service = service
    if token:
        app.add_middleware(BearerToken, token=token, on_reject=service.metrics.errors.labels("http_401").inc)
    return app
