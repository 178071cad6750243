"""The server the browser side-by-side measures: refproj's own app plus two comparison pages.

- ``/dashboard/runs``: refproj's console page, unchanged (``refproj.web``).
- ``/old/dashboard/runs``: the design refproj replaced. An empty shell whose script fetches
  ``/old/_ref/connectors`` three times in a row, as the original console did, and then renders
  the table; each fetch computes the list naively per request (the N+1 baseline of
  ``make bench``, ``refproj_bench.baselines.naive_overview``).
- ``/floor/dashboard/runs``: refproj's page rendered from an in-memory copy of its rows taken at
  start-up, with no database work: the floor for this page on this stack.

Run it with ``python -m refproj_bench.browser_app --database-url URL --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from refproj import AsyncProjection
from refproj.settings import libpq_url
from refproj.web import create_app
from refproj.web.dashboard import ENVIRONMENT, _head, helpers
from refproj_bench.baselines import naive_overview

OLD_FETCHES = 3

_OLD_SHELL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>Connections (old design)</title>
<style>body{font:15px/1.45 system-ui,sans-serif;margin:1rem}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #d0d7de;padding:.5rem;text-align:left}</style></head>
<body><div id="app"></div>
<script>
// The original console: the list was fetched several times in a row before anything rendered.
(async function () {
  let data = null;
  for (let i = 0; i < FETCHES; i++) {
    const response = await fetch("/old/_ref/connectors");
    data = await response.json();
  }
  const rows = data.connections.map((c) =>
    "<tr><td><a href='#'>" + c.display_name + "</a><br>" + c.connector_id + "</td><td>" + c.status +
    "</td><td>" + (c.last_run ? c.last_run.status + " " + c.last_run.last_at : "never") + "</td><td>" +
    (c.last_successful_run ? c.last_successful_run.last_at : "none") + "</td></tr>").join("");
  document.getElementById("app").innerHTML = "<h1>Connections</h1><table><thead><tr><th>Connection</th>" +
    "<th>Status</th><th>Last run</th><th>Last success</th></tr></thead><tbody>" + rows + "</tbody></table>";
  document.documentElement.dataset.settled = "1";
})();
</script></body></html>
"""


def build(database_url: str) -> Starlette:
    """The comparison app over ``database_url``: refproj mounted at /, the old and floor pages."""
    projection = AsyncProjection(database_url, staleness_bound=None)
    refproj_app = create_app(
        projection, listen_conninfo=libpq_url(database_url), close_projection=projection.aclose
    )
    conninfo = libpq_url(database_url)
    floor: dict[str, Any] = {}

    def naive_json() -> bytes:
        with psycopg.connect(conninfo) as conn:
            rows, _statements = naive_overview(conn)
        return orjson.dumps({"connections": rows}, default=str)

    async def old_list(request: Request) -> Response:
        return Response(await asyncio.to_thread(naive_json), media_type="application/json")

    async def old_page(request: Request) -> Response:
        return HTMLResponse(_OLD_SHELL.replace("FETCHES", str(OLD_FETCHES)))

    async def floor_page(request: Request) -> Response:
        at = datetime.now(UTC)
        context = {
            **helpers(at),
            **_head(floor["as_of"], False, at),
            "base": "",
            "rows": floor["rows"],
            "states": [],
            "connectors": floor["connectors"],
            "connector_id": None,
            "building": False,
        }
        html = ENVIRONMENT.get_template("runs.html").render(context)
        return HTMLResponse(html, headers={"Server-Timing": "overview;dur=0", "Cache-Control": "no-cache"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        page = await projection.list_page(None)
        floor["rows"] = rows = orjson.loads(page.connections_json)
        floor["as_of"] = page.as_of
        floor["connectors"] = sorted({(r["connector_id"], r["connector_display_name"]) for r in rows})
        async with refproj_app.router.lifespan_context(refproj_app):
            yield

    return Starlette(
        routes=[
            Route("/old/_ref/connectors", old_list),
            Route("/old/dashboard/runs", old_page),
            Route("/floor/dashboard/runs", floor_page),
            Mount("/", app=refproj_app),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build(args.database_url), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
