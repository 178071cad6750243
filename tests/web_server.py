"""A real uvicorn server running the HTTP service in a background thread, for the tests."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from refproj import AsyncProjection
from refproj.settings import libpq_url
from refproj.web import create_app
from tests.world import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    db_url: str, *, projection_options: dict[str, Any] | None = None, **app_options: Any
) -> Iterator[tuple[str, Any]]:
    """(base URL, app) of the service for ``db_url`` on a free port of 127.0.0.1; stopped on exit."""
    projection = AsyncProjection(db_url, **(projection_options or {}))
    app_options.setdefault("listen_conninfo", libpq_url(db_url))
    app = create_app(projection, close_projection=projection.aclose, **app_options)
    port = free_port()
    # log_config=None: uvicorn's records propagate to the root logger, where caplog sees them.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
