"""``refproj browser-bench``: load the owner console in a real headless Chromium and measure it.

The original slowness was only visible in a browser (the page fetched the list several times in a
row), so this harness loads pages the way an owner does and records, per route, viewport and
cache state: document status, TTFB, DOMContentLoaded, load, FCP, LCP, CLS and wall time; console
messages and page errors; failed requests (kept apart from aborted ones); the request count and
the slowest requests; and every read of the connection list with its start, end, duration and
bytes, and whether those reads ran stacked (each starting after the previous one ended).

It drives Debian's Chromium (``CHROME_BIN`` overrides ``/usr/bin/chromium``) with Playwright for
Python over the DevTools protocol. Playwright rather than a hand-written CDP client: it is
maintained, launches the binary we name without downloading a browser of its own, and hands us
request timings, console and page-error events as plain objects.

A "list read" is a GET of a path ending in ``/_ref/connectors`` (not the event stream), or a document whose
``Server-Timing`` header names ``overview``: the server-rendered console page carries the list in
its first response, and says so.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Json = dict[str, Any]

DEFAULT_CHROME = "/usr/bin/chromium"
LIST_PATH = "/_ref/connectors"
VIEWPORTS: dict[str, Json] = {
    "desktop": {"viewport": {"width": 1280, "height": 900}, "device_scale_factor": 1},
    "mobile": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}
# Pages mark themselves settled (their rows are on screen) with data-settled on <html>; the
# harness waits for that instead of "network idle", which a page holding an event stream open
# never reaches.
SETTLE_TIMEOUT_MS = int(os.environ.get("REFPROJ_BROWSER_TIMEOUT_MS", "120000"))
SLOWEST = 5
LCP_WAIT_MS = 5_000

# Paint and layout-shift entries are observed from the first byte (buffered), as web-vitals does.
_OBSERVE_VITALS = """
window.__vitals = {lcp: null, fcp: null, cls: 0};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__vitals.lcp = e.startTime;
}).observe({type: 'largest-contentful-paint', buffered: true});
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.name === 'first-contentful-paint') window.__vitals.fcp = e.startTime;
  }
}).observe({type: 'paint', buffered: true});
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (!e.hadRecentInput) window.__vitals.cls += e.value;
}).observe({type: 'layout-shift', buffered: true});
"""
_READ_TIMINGS = """
() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const vitals = window.__vitals || {lcp: null, fcp: null, cls: null};
  resolve({
    ttfb_ms: nav ? nav.responseStart : null,
    dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
    load_ms: nav ? nav.loadEventEnd : null,
    fcp_ms: vitals.fcp,
    lcp_ms: vitals.lcp,
    cls: vitals.cls,
    resources: [nav, ...performance.getEntriesByType('resource')].filter(Boolean).map((e) => ({
      url: e.name, kind: e.initiatorType, start_ms: e.startTime, end_ms: e.responseEnd,
      duration_ms: e.responseEnd - e.startTime, bytes: e.encodedBodySize,
      server_timing: (e.serverTiming || []).map((t) => t.name),
    })),
  });
})))
"""


class SetupError(Exception):
    """No browser, no DevTools connection, no server to measure, or a bad argument: exit code 2."""


TOKEN_COOKIE = "refproj_token"  # what opening a page with ?token= sets (refproj/web/access.py)


@dataclass
class PageLoad:
    """One load of one route: times in milliseconds from the navigation start."""

    route: str
    viewport: str
    cache: str  # "cold" (fresh profile) or "warm" (same profile, second load)
    status: int | None = None
    ttfb_ms: float | None = None
    dom_content_loaded_ms: float | None = None
    load_ms: float | None = None
    fcp_ms: float | None = None
    lcp_ms: float | None = None
    cls: float | None = None
    wall_ms: float | None = None
    settled: bool = False
    document_error: str | None = None  # why the document itself failed (status, not HTML)
    console: list[Json] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[Json] = field(default_factory=list)
    aborted_requests: list[Json] = field(default_factory=list)
    request_count: int = 0
    slowest_requests: list[Json] = field(default_factory=list)
    list_reads: list[Json] = field(default_factory=list)
    list_reads_stacked: bool = False
    list_read_ms: float = 0.0

    @property
    def failed(self) -> bool:
        """The document did not answer 2xx HTML or the page never showed its rows."""
        return self.document_error is not None or self.status is None or not self.settled

    @property
    def failure(self) -> str:
        """Why the load failed, in a few words ("" when it did not)."""
        if not self.failed:
            return ""
        if self.document_error is not None:
            return self.document_error
        return "no response" if self.status is None else "the page never marked itself settled"

    @property
    def console_errors(self) -> list[Json]:
        return [m for m in self.console if m["type"] == "error"]


def chrome_binary() -> str:
    """The Chromium to drive; raises SetupError when there is none."""
    candidate = os.environ.get("CHROME_BIN") or DEFAULT_CHROME
    found = shutil.which(candidate)
    if found is None:
        raise SetupError(f"no Chromium at {candidate} (apt-get install chromium, or set CHROME_BIN)")
    return found


@contextmanager
def launched_browser() -> Iterator[Any]:
    """A headless Chromium under Playwright; SetupError when either is missing or will not start."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise SetupError(f"Playwright is not installed ({exc}); pip install 'refproj[bench]'") from exc
    binary = chrome_binary()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=binary, headless=True)
        except PlaywrightError as exc:
            raise SetupError(f"Chromium at {binary} did not start: {str(exc).splitlines()[0]}") from exc
        try:
            yield browser
        finally:
            browser.close()


def _is_list_read(resource: Json) -> bool:
    """A read of the connection list: a GET of /_ref/connectors (not the event stream), or a
    document whose Server-Timing says the server read the overview for it."""
    path = urlsplit(resource["url"]).path.rstrip("/")
    if path.endswith(LIST_PATH):  # also the comparison's /old/_ref/connectors
        return resource["kind"] in ("fetch", "xmlhttprequest")
    return "overview" in resource["server_timing"]


class _Failed(Exception):
    """The document failed; its load ends at once."""


def _document_error(response: Any) -> str | None:
    """Why a document cannot become a page: no response, a status of 400 or more, or not HTML."""
    if response is None:
        return "no response"
    content_type = response.headers.get("content-type", "")
    if not 200 <= response.status < 300:
        return f"status {response.status} ({content_type or 'no content type'})"
    if not content_type.startswith("text/html"):
        return f"status {response.status} but {content_type or 'no content type'}, not HTML"
    return None


def _load(context: Any, url: str, route: str, viewport: str, cache: str) -> PageLoad:
    result = PageLoad(route=route, viewport=viewport, cache=cache)
    page = context.new_page()
    requests: list[Any] = []

    def console(message: Any) -> None:
        entry = {"type": message.type, "text": message.text}
        if entry not in result.console:  # the same message twice says nothing new
            result.console.append(entry)

    page.on("console", console)
    page.on("pageerror", lambda e: result.page_errors.append(str(e)))
    page.on("request", lambda r: requests.append(r))

    def failed(request: Any) -> None:
        entry = {"url": request.url, "error": request.failure}
        aborted = "ERR_ABORTED" in (request.failure or "")
        (result.aborted_requests if aborted else result.failed_requests).append(entry)

    page.on("requestfailed", failed)
    started = time.perf_counter()
    try:
        response = page.goto(url, wait_until="load", timeout=SETTLE_TIMEOUT_MS)
        result.status = response.status if response is not None else None
        result.document_error = _document_error(response)
        if result.document_error is not None:  # nothing will settle: end this load now
            raise _Failed
        page.wait_for_function("document.documentElement.dataset.settled === '1'", timeout=SETTLE_TIMEOUT_MS)
        result.settled = True
        # The LCP entry of content painted just before the page settled is delivered a little
        # later; a page that painted nothing before its data (the old design) has none until then.
        page.wait_for_function("window.__vitals && window.__vitals.lcp !== null", timeout=LCP_WAIT_MS)
    except _Failed:
        pass
    except Exception as exc:  # a page that fails to load is a result to report, not a crash
        result.page_errors.append(f"load: {str(exc).splitlines()[0]}")
    result.wall_ms = (time.perf_counter() - started) * 1000
    resources: list[Json] = []
    if result.settled:
        timings: Json = page.evaluate(_READ_TIMINGS)
        resources = timings.pop("resources")
        for key, value in timings.items():
            setattr(result, key, value)
    result.list_reads = [r for r in resources if _is_list_read(r)]
    result.request_count = len(requests)
    result.slowest_requests = sorted(resources, key=lambda r: -r["duration_ms"])[:SLOWEST]
    reads = sorted(result.list_reads, key=lambda r: r["start_ms"])
    result.list_reads_stacked = len(reads) > 1 and all(
        later["start_ms"] >= earlier["end_ms"] for earlier, later in itertools.pairwise(reads)
    )
    result.list_read_ms = sum(r["duration_ms"] for r in reads)
    page.close()
    return result


def measure(
    base: str,
    routes: Sequence[str],
    viewports: Sequence[str],
    browser: Any,
    caches: Sequence[str] = ("cold", "warm"),
    token: str | None = None,
) -> list[PageLoad]:
    """Load every route in every viewport, cold (a fresh browser profile) then warm (reloaded in
    the same profile), as ``caches`` asks. With ``token`` each profile starts signed in: it holds
    the cookie that opening a page with ``?token=`` sets, so pages and their event stream carry
    it as they would in an owner's browser. Raises SetupError for an unknown viewport."""
    loads: list[PageLoad] = []
    for viewport in viewports:
        if viewport not in VIEWPORTS:
            raise SetupError(f"unknown viewport {viewport!r}; choose from {', '.join(VIEWPORTS)}")
        for route in routes:
            context = browser.new_context(**VIEWPORTS[viewport])
            context.add_init_script(_OBSERVE_VITALS)
            if token:
                context.add_cookies(
                    [
                        {
                            "name": TOKEN_COOKIE,
                            "value": token,
                            "url": base,
                            "httpOnly": True,
                            "sameSite": "Strict",
                        }
                    ]
                )
            try:
                url = base.rstrip("/") + route
                for cache in caches:
                    loads.append(_load(context, url, route, viewport, cache))
                    load = loads[-1]
                    if sys.stderr.isatty():  # progress for a person; a failure stays one line
                        print(
                            f"  {route} {viewport} {cache}: status {load.status}, LCP {load.lcp_ms} ms,"
                            f" wall {load.wall_ms:.0f} ms",
                            file=sys.stderr,
                        )
            finally:
                context.close()
    return loads
