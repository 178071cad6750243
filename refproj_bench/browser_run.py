"""``refproj browser-bench``: the harness runs (a server's console pages, or the side-by-side).

Exit codes: 0 measured; 1 a page failed to load (or, with ``--check``, a console error, a page
error or a failed request); 2 a setup problem (no browser, no DevTools connection, no server) or a
bad argument. Every argument is checked before anything is created, seeded or launched, and the
databases a run creates are dropped whether it succeeds or fails.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from refproj_bench import browser_report
from refproj_bench.browser import PageLoad, SetupError, launched_browser, measure
from refproj_bench.measure import goal

Json = dict[str, Any]
SERVER_START_TIMEOUT_S = 60.0
OLD, REFPROJ, FLOOR = "/old/dashboard/runs", "/dashboard/runs", "/floor/dashboard/runs"
# The side-by-side goals (docs/BENCHMARK.md): next to the code that measures them.
GOAL_OLD_OVER_NEW_AT_S = 10.0  # old design cold LCP / refproj cold LCP, at least, at S
GOAL_NEW_OVER_FLOOR_AT_M = 1.5  # refproj cold LCP / in-memory floor cold LCP, at most, at M


@dataclass
class Options:
    base: str | None
    database_url: str
    routes: Sequence[str] | None
    viewports: Sequence[str]
    check: bool
    compare_profiles: Sequence[str]
    repeat: int
    output: Path
    token: str | None = None


def validate(options: Options) -> None:
    """SetupError (exit 2, a usage error) for any argument the run could not use, before the run
    creates, seeds or launches anything."""
    from refproj.seed import PROFILES

    if options.base is not None:
        parts = urlsplit(options.base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SetupError(f"--base {options.base!r} is not an http(s) URL such as http://127.0.0.1:8000")
    for route in options.routes or []:
        if not route.startswith("/"):
            raise SetupError(f"--route {route!r} must be a path starting with /")
    unknown = [p for p in options.compare_profiles if p not in PROFILES]
    if unknown:
        raise SetupError(f"unknown profile {unknown[0]!r} in --compare; choose from {', '.join(PROFILES)}")
    if options.compare_profiles and (options.base is not None or options.routes):
        raise SetupError("--compare starts its own servers and pages; it takes no --base or --route")
    if options.repeat < 1:
        raise SetupError(f"--repeat must be at least 1, not {options.repeat}")


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def probe(base: str, token: str | None) -> None:
    """SetupError unless a refproj service answers at ``base`` (and accepts ``token``)."""
    try:
        response = httpx.get(base + "/readyz", headers=_auth(token), timeout=30)
    except httpx.HTTPError as error:
        raise SetupError(f"no server answers at {base} ({type(error).__name__}: {error})") from error
    if response.status_code == 401:
        wanted = "rejected the token" if token else "needs a token: pass --token or set REFPROJ_API_TOKEN"
        raise SetupError(f"{base} {wanted}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def bench_server(database_url: str) -> Iterator[str]:
    """Start ``refproj_bench.browser_app`` on a free port; yield its base URL; stop it."""
    port = _free_port()
    command = [sys.executable, "-m", "refproj_bench.browser_app", "--database-url", database_url]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                error = (process.stderr.read() if process.stderr else b"").decode(errors="replace").strip()
                last = error.splitlines()[-1] if error else f"exit code {process.returncode}"
                raise SetupError(f"the page server exited: {last}")
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SetupError(f"the page server did not answer within {SERVER_START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)  # polling a starting server's readiness, bounded by the deadline
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def default_routes(base: str, token: str | None = None) -> list[str]:
    """The console list and the detail of its first connection (when there is one)."""
    response = httpx.get(base + "/_ref/connectors", params={"limit": "1"}, headers=_auth(token), timeout=30)
    if response.status_code != 200:
        raise SetupError(
            f"{base}/_ref/connectors answered {response.status_code}; is this a refproj service?"
        )
    body = response.json()
    routes = [REFPROJ]
    if body.get("connections"):
        routes.append(f"{REFPROJ}/{quote(body['connections'][0]['connection_id'], safe='')}")
    return routes


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def side_by_side(base: str, browser: Any, repeat: int) -> tuple[Json, list[PageLoad]]:
    """Cold loads (desktop) of the old design, refproj and the floor, ``repeat`` times each,
    interleaved so drift on a noisy machine hits all three alike; medians and ratios."""
    loads: list[PageLoad] = []
    for _ in range(repeat):
        for route in (OLD, REFPROJ, FLOOR):
            loads += measure(base, [route], ["desktop"], browser, caches=["cold"])
    figures: Json = {}
    for route in (OLD, REFPROJ, FLOOR):
        mine = [load for load in loads if load.route == route]
        figures[route] = {
            "cold_lcp_ms": _median([load.lcp_ms for load in mine]),
            "list_read_ms": _median([load.list_read_ms for load in mine]),
            "list_reads": _median([len(load.list_reads) for load in mine]),
            "stacked": any(load.list_reads_stacked for load in mine),
        }
    old, new, floor = (figures[r]["cold_lcp_ms"] for r in (OLD, REFPROJ, FLOOR))
    figures["old_over_refproj"] = old / new if old and new else None
    figures["refproj_over_floor"] = new / floor if new and floor else None
    return figures, loads


@contextmanager
def _seeded_database(profile: str, database_url: str) -> Iterator[str]:
    """A new database seeded with ``profile`` and refreshed; dropped on exit, even when creating,
    seeding or measuring it failed."""
    from refproj import Projection
    from refproj_bench.workload import Server

    server = Server(database_url, keep=False, say=lambda message: print(message, file=sys.stderr))
    try:
        url = server.create(f"refproj_bench_browser_{profile.lower()}")
        server.seed(url, profile, history_factor=1.0, seed_value=1)
        with Projection(url, staleness_bound=None) as projection:
            projection.refresh()
        yield url
    finally:
        server.drop_created()


# (profile, comparison key, figure, comparison, bound): the browser figure's goals.
GOALS = [
    ("S", "old_over_refproj", "cold LCP old / refproj at S", ">=", GOAL_OLD_OVER_NEW_AT_S),
    ("M", "refproj_over_floor", "cold LCP refproj / floor at M", "<=", GOAL_NEW_OVER_FLOOR_AT_M),
]


def _goals(comparison: Json) -> list[Json]:
    """One goals-table line (``measure.goal``) per goal whose profile was compared."""
    lines = []
    for profile, key, figure, comparison_op, bound in GOALS:
        if profile in comparison:
            value = comparison[profile][key]
            met = value is not None and (value >= bound if comparison_op == ">=" else value <= bound)
            shown = "n/a" if value is None else f"{value:.2f}x"
            lines.append(goal(figure, f"{comparison_op} {bound:g}x", profile, shown, met, value))
    return lines


def _write(options: Options, document: Json, table: str) -> Path:
    results = options.output / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results / f"browser-{stamp}.json"
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    (results / f"browser-{stamp}.md").write_text(table, encoding="utf-8")
    return path


def run(options: Options) -> int:
    """Measure and report; the exit code of the module docstring."""
    document: Json = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "argv": sys.argv[1:]}
    loads: list[PageLoad] = []
    table = ""
    validate(options)
    if options.base is not None:
        probe(options.base.rstrip("/"), options.token)
    with launched_browser() as chromium:
        document["browser"] = chromium.version
        if options.compare_profiles:
            comparison: Json = {}
            for profile in options.compare_profiles:
                with _seeded_database(profile, options.database_url) as url, bench_server(url) as base:
                    comparison[profile], measured = side_by_side(base, chromium, options.repeat)
                    loads += measured
            document["comparison"] = comparison
            document["goals"] = _goals(comparison)
            table += comparison_markdown(comparison, document["goals"])
        else:
            with _server(options) as base:
                routes = options.routes or default_routes(base, options.token)
                loads = measure(base, routes, options.viewports, chromium, token=options.token)
            table += browser_report.markdown(loads)
    document["loads"] = browser_report.as_json(loads)
    path = _write(options, document, table)
    print(table, end="")
    print(f"results: {path}")
    failed = [load for load in loads if load.failed]
    for load in failed:
        print(
            f"refproj: {load.route} ({load.viewport}, {load.cache}) failed to load: {load.failure}",
            file=sys.stderr,
        )
    if failed:
        return 1
    problems = browser_report.check_failures(loads) if options.check else []
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


@contextmanager
def _server(options: Options) -> Iterator[str]:
    if options.base is not None:
        yield options.base.rstrip("/")
    else:
        with bench_server(options.database_url) as base:
            yield base


def comparison_markdown(comparison: Json, goals: Sequence[Json]) -> str:
    lines = [
        "| profile | old design cold LCP ms | refproj cold LCP ms | floor cold LCP ms | old list reads (ms) "
        "| refproj list reads (ms) | old / refproj | refproj / floor |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for profile, f in comparison.items():
        lcp = [_ms(f[route]["cold_lcp_ms"]) for route in (OLD, REFPROJ, FLOOR)]
        reads = [f"{f[route]['list_reads']:g} ({_ms(f[route]['list_read_ms'])})" for route in (OLD, REFPROJ)]
        ratios = [_x(f["old_over_refproj"]), _x(f["refproj_over_floor"])]
        lines.append("| " + " | ".join([profile, *lcp, *reads, *ratios]) + " |")
    lines += ["", "| goal | target | measured | met |", "| --- | --- | --- | --- |"]
    for g in goals:
        lines.append(f"| {g['figure']} | {g['goal']} | {_x(g['value'])} | {'yes' if g['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}x"


def database_url_default() -> str:
    return os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/refproj_demo")
