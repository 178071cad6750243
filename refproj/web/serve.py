"""``refproj serve``: the HTTP service under uvicorn.

Each uvicorn worker process builds its own app (``app_from_environment``, a factory uvicorn
imports), so each has its own pool, single flight and one LISTEN connection.
"""

from __future__ import annotations

import os
import tempfile

import uvicorn
from starlette.applications import Starlette

from refproj import AsyncProjection
from refproj.settings import database_url, libpq_url, url_text
from refproj.web.app import create_app
from refproj.web.metrics import MULTIPROC

TOKEN_VARIABLE = "REFPROJ_API_TOKEN"


def app_from_environment() -> Starlette:
    """The app for ``$DATABASE_URL`` with the token ``$REFPROJ_API_TOKEN`` (none when unset)."""
    url = url_text(database_url())
    projection = AsyncProjection(url)
    return create_app(
        projection,
        token=os.environ.get(TOKEN_VARIABLE) or None,
        listen_conninfo=libpq_url(url),
        close_projection=projection.aclose,
    )


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, log_level: str = "info") -> None:
    """Run the service until interrupted (blocks). The database comes from ``$DATABASE_URL``."""
    if workers == 1:
        run(host, port, workers, log_level)
        return
    # Several workers: their metrics are added up from files in a directory of their own
    # (refproj.web.metrics); the workers are spawned after this, so they all see it.
    with tempfile.TemporaryDirectory(prefix="refproj-metrics-") as shared:
        os.environ[MULTIPROC] = shared
        try:
            run(host, port, workers, log_level)
        finally:
            del os.environ[MULTIPROC]


def run(host: str, port: int, workers: int, log_level: str) -> None:
    uvicorn.run(
        "refproj.web.serve:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        # The overview body is already JSON bytes; nothing to gain from uvicorn's access log
        # formatting on the hot path at high request rates.
        access_log=log_level == "debug",
        # A worker that has not answered uvicorn's supervisor within this many seconds is killed
        # and replaced. The default (5 s) is shorter than importing the stack takes on a busy
        # 2-core machine, where workers were then replaced in a loop and never served.
        timeout_worker_healthcheck=60,
    )
