"""Figure 7: ``GET /_ref/connectors`` over HTTP, against the old design on the same HTTP stack and
against the floor (the same bytes as a constant response from the same server), with 1 and 64
concurrent clients; and ``If-None-Match`` revalidation (304).

Goals (issue 11): old / new >= 1,000x at M; new / floor <= 1.5x at 64 clients; 304 <= 1.2x the
floor (64 clients).
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from refproj_bench.config import Iterations, Json, Progress
from refproj_bench.measure import Cell, goal, ms, ratio, rounds, stats, x

CLIENTS = (1, 64)


@contextmanager
def _server(url: str) -> Iterator[str]:
    """``refproj_bench.http_server`` in its own process (so the load generator does not share its
    interpreter), on a free port of 127.0.0.1; stopped on exit."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "refproj_bench.http_server", "--url", url, "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark's HTTP server did not start")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _load(
    client: httpx.AsyncClient, path: str, clients: int, per_client: int, headers: dict[str, str], status: int
) -> list[float]:
    """Seconds per request: ``clients`` concurrent clients, each sending ``per_client`` requests
    one after the other (closed loop)."""
    samples: list[float] = []

    async def one_client() -> None:
        for _ in range(per_client):
            started = time.perf_counter()
            response = await client.get(path, headers=headers)
            await response.aread()
            samples.append(time.perf_counter() - started)
            if response.status_code != status:
                raise RuntimeError(f"GET {path}: {response.status_code}, expected {status}")

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return samples


def measure(url: str, it: Iterations, say: Progress) -> Json:
    # Requests per variant: about the overview-read budget with one client, and 64 clients x a
    # twentieth of it (each client keeps one request in flight).
    single = it.overview_reads.n
    per_client = max(3, it.overview_reads.n // 20)
    out: Json = {"clients": list(CLIENTS), "requests_1": single, "requests_per_client_64": per_client}
    with _server(url) as base:

        async def run() -> None:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(base_url=base, limits=limits, timeout=600) as client:
                first = await client.get("/_ref/connectors")
                etag = first.headers["etag"]
                out["body_bytes"] = len(first.content)
                floor = await client.get("/bench/floor")
                if floor.content != first.content:
                    raise RuntimeError("the floor does not serve the service's bytes")
                variants = {
                    "new": ("/_ref/connectors", {}, 200),
                    "new_no_reuse": ("/bench/cold", {}, 200),
                    "revalidate_304": ("/_ref/connectors", {"If-None-Match": etag}, 304),
                    "floor": ("/bench/floor", {}, 200),
                }
                for clients in CLIENTS:
                    n = single if clients == 1 else per_client
                    for path, headers, status in variants.values():
                        await _load(client, path, clients, 3, headers, status)  # warm-up, not counted
                    # Interleaved in small rounds so drifting machine load hits every variant alike.
                    samples: dict[str, list[float]] = {name: [] for name in variants}
                    step = max(1, n // 10)
                    for _ in range(0, n, step):
                        for name, (path, headers, status) in variants.items():
                            samples[name] += await _load(client, path, clients, step, headers, status)
                    for name, values in samples.items():
                        out[f"{name}_{clients}"] = stats(values)
                    say(
                        f"http, {clients} client(s): new p50 {out[f'new_{clients}']['p50_ms']:.2f} ms,"
                        f" floor {out[f'floor_{clients}']['p50_ms']:.2f} ms,"
                        f" 304 {out[f'revalidate_304_{clients}']['p50_ms']:.2f} ms"
                    )
                # The old design takes seconds per request at M: one client, the naive budget.
                naive: list[float] = []
                for n in rounds(it.naive_reads):
                    naive += await _load(client, "/bench/naive", 1, 1, {}, 200)
                    say(f"  http naive request {n + 1}: {naive[-1] * 1000:,.0f} ms")
                out["naive_1"] = stats(naive)

        asyncio.run(run())
    out["ratio_naive_over_new_1"] = ratio(out["naive_1"]["p50_ms"], out["new_1"]["p50_ms"])
    out["ratio_naive_over_new_no_reuse_1"] = ratio(out["naive_1"]["p50_ms"], out["new_no_reuse_1"]["p50_ms"])
    for clients in CLIENTS:
        floor_p50 = out[f"floor_{clients}"]["p50_ms"]
        out[f"ratio_new_over_floor_{clients}"] = ratio(out[f"new_{clients}"]["p50_ms"], floor_p50)
        out[f"ratio_new_no_reuse_over_floor_{clients}"] = ratio(
            out[f"new_no_reuse_{clients}"]["p50_ms"], floor_p50
        )
        out[f"ratio_304_over_floor_{clients}"] = ratio(out[f"revalidate_304_{clients}"]["p50_ms"], floor_p50)
    return out


def goals(results: Json) -> list[Json]:
    out: list[Json] = []
    for name, p in results["profiles"].items():
        h = p.get("http")
        if h is None:
            continue
        value = h["ratio_naive_over_new_1"]
        bar_applies = name in ("M", "L")
        met = None if not bar_applies or value is None else value >= 1000
        out.append(goal("HTTP old / new (1 client)", ">= 1,000x at M", name, x(value), met, value))
        value = h["ratio_new_over_floor_64"]
        out.append(
            goal("HTTP new / floor (64 clients)", "<= 1.5x", name, x(value), _at_most(value, 1.5), value)
        )
        value = h["ratio_304_over_floor_64"]
        out.append(
            goal("HTTP 304 / floor (64 clients)", "<= 1.2x", name, x(value), _at_most(value, 1.2), value)
        )
    return out


def _at_most(value: float | None, bar: float) -> bool | None:
    return None if value is None or math.isnan(value) else value <= bar


def _dist(key: str) -> Cell:
    def cell(p: Json) -> str:
        h = p.get("http")
        if h is None or key not in h:
            return "n/a"
        return f"{ms(h[key]['p50_ms'])} / {ms(h[key]['p95_ms'])}"

    return cell


def _ratio(key: str) -> Cell:
    return lambda p: x(p["http"][key]) if p.get("http") else "n/a"


ROWS: list[tuple[str, Cell]] = [
    ("HTTP `GET /_ref/connectors`, 1 client, p50 / p95 (ms)", _dist("new_1")),
    ("HTTP same, no read reuse (`read_reuse=0`), 1 client", _dist("new_no_reuse_1")),
    ("HTTP 304 revalidation (`If-None-Match`), 1 client", _dist("revalidate_304_1")),
    ("HTTP floor (same bytes, constant response), 1 client", _dist("floor_1")),
    ("HTTP old design (naive N+1 per request), 1 client", _dist("naive_1")),
    ("HTTP `GET /_ref/connectors`, 64 clients, p50 / p95 (ms)", _dist("new_64")),
    ("HTTP same, no read reuse, 64 clients", _dist("new_no_reuse_64")),
    ("HTTP 304 revalidation, 64 clients", _dist("revalidate_304_64")),
    ("HTTP floor, 64 clients", _dist("floor_64")),
    ("HTTP old / new, 1 client (no reuse: old / new-no-reuse)", lambda p: _old_new(p)),
    ("HTTP new / floor, 1 and 64 clients", lambda p: _pair(p, "ratio_new_over_floor")),
    ("HTTP new-no-reuse / floor, 1 and 64 clients", lambda p: _pair(p, "ratio_new_no_reuse_over_floor")),
    ("HTTP 304 / floor, 1 and 64 clients", lambda p: _pair(p, "ratio_304_over_floor")),
]


def _old_new(p: Json) -> str:
    h = p.get("http")
    if not h:
        return "n/a"
    return f"{x(h['ratio_naive_over_new_1'])} ({x(h['ratio_naive_over_new_no_reuse_1'])})"


def _pair(p: Json, key: str) -> str:
    h = p.get("http")
    if not h:
        return "n/a"
    return f"{x(h[f'{key}_1'])}, {x(h[f'{key}_64'])}"


DEFINITIONS = [
    "- **HTTP**: `python -m refproj_bench.http_server` (uvicorn, one worker, 127.0.0.1) in its own",
    "  process serves `refproj.web` and the comparison routes; the load comes from the benchmark",
    "  process through one `httpx.AsyncClient` (keep-alive, up to 64 connections). N clients are N",
    "  tasks, each sending its requests one after the other; the latency of a request is from",
    "  sending it to having read its whole body. The variants are interleaved in rounds. **new**:",
    "  `GET /_ref/connectors` with the service's defaults (reads shared in flight, reused 0.5 s);",
    "  **no read reuse**: the same body from an `AsyncProjection(read_reuse=0)`; **304**: the same",
    "  request with `If-None-Match` of the current ETag; **floor**: the same bytes as a constant",
    "  response from the same server; **old design**: the naive N+1 reads per request (on a",
    "  thread, pooled psycopg connections), one client, the naive budget (seconds per request at M).",
]
