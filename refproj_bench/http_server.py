"""The HTTP service as the benchmark runs it: ``refproj.web`` plus two comparison routes on the
same server, so every variant goes through the same uvicorn, Starlette and client.

- ``GET /_ref/connectors``: the service itself (default ``AsyncProjection``: reads shared in flight
  and reused for 0.5 s).
- ``GET /bench/cold``: the same body from an ``AsyncProjection(read_reuse=0)``: in-flight sharing
  only, so a lone client pays a statement per request.
- ``GET /bench/naive``: the old design: the naive N+1 reads of ``baselines.naive_overview`` per
  request (on a thread, one pooled psycopg connection each), the rows serialised from dicts.
- ``GET /bench/floor``: the floor: the same bytes as the service's body, a constant response.

Run: ``python -m refproj_bench.http_server --url URL --port PORT`` (blocks; 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import queue
from typing import Any

import orjson
import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from refproj import AsyncProjection
from refproj_bench.baselines import naive_overview

NAIVE_CONNECTIONS = 8


def build_app(url: str) -> Starlette:
    from refproj.web import create_app

    projection = AsyncProjection(url, staleness_bound=None)
    cold = AsyncProjection(url, read_reuse=0, staleness_bound=None)

    async def close() -> None:
        await projection.aclose()
        await cold.aclose()

    app = create_app(projection, close_projection=close)
    floor: list[bytes] = []
    pool: queue.Queue[psycopg.Connection[Any]] = queue.Queue()
    opened: list[psycopg.Connection[Any]] = []

    async def floor_route(request: Request) -> Response:
        if not floor:
            floor.append((await projection.list_page()).body)
        return Response(floor[0], media_type="application/json")

    async def cold_route(request: Request) -> Response:
        page = await cold.list_page()
        return Response(page.body, media_type="application/json", headers={"ETag": page.etag})

    def naive_body() -> bytes:
        try:
            conn = pool.get_nowait()
        except queue.Empty:
            conn = psycopg.connect(url, autocommit=True)
            opened.append(conn)
        try:
            rows, _ = naive_overview(conn)
            return orjson.dumps({"connections": rows}, default=str)
        finally:
            pool.put(conn)

    async def naive_route(request: Request) -> Response:
        return Response(await run_in_threadpool(naive_body), media_type="application/json")

    app.add_route("/bench/floor", floor_route, methods=["GET"])
    app.add_route("/bench/cold", cold_route, methods=["GET"])
    app.add_route("/bench/naive", naive_route, methods=["GET"])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Keep-alive outlives the pauses between phases, so no client reuses a connection the server
    # is closing.
    uvicorn.run(
        build_app(args.url),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=600,
    )


if __name__ == "__main__":
    main()
