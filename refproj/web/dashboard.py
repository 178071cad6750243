"""The owner console: ``/dashboard/runs`` (every visible connection) and
``/dashboard/runs/{connection}`` (the live detail of one).

Pages are rendered on the server from Jinja2 templates (``refproj/web/templates``), so the first
response already carries the rows: the browser reads the list once per navigation, inside the
document, and says so with a ``Server-Timing: overview`` entry that the browser harness counts.
A small inline script then follows the Server-Sent Events stream and, on each refresh that changed
the overview, fetches the same page once with ``?fragment=1`` (only the part that shows data).
Health and freshness also change with time alone, with no write and no refresh: each page carries
the overview's ``valid_until`` (the first read time at which a shown row changes) and its read
time, and the script fetches the fragment once at that moment. Relative times ("5 min ago") are
``<time datetime>`` elements the script advances at their next change. No front-end build step,
no polling.

Browsers get HTML error pages, never JSON: bad input, an unknown or ambiguous connection and a
database problem each answer a page with the API's status code (``refproj.web.http``).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from refproj._core import identifier_fits
from refproj._format import text
from refproj.errors import AmbiguousConnection, ConnectionNotFound, InvalidArgument, RefprojError
from refproj.web.http import ERROR_STATUS, at_param, check_utf8_address


def _shown(value: Any) -> Any:
    """What every ``{{ }}`` prints: text as the CLI shows it (``refproj._format.text``: U+202E,
    ESC, line breaks escaped), so an id or a name cannot reorder or hide what the page shows.
    Markup (built here, or marked ``|exact``) is left as it is."""
    return text(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def _exact(value: Any) -> Markup:
    """``{{ value|exact }}``: HTML-escaped only, for a value the browser sends back (a form
    option's value) and must be the id itself."""
    return escape(value)


ENVIRONMENT = Environment(
    loader=PackageLoader("refproj.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_shown,
)
ENVIRONMENT.filters["exact"] = _exact
DETAIL_RUNS = 20
_BYTE_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
_STREAM_BYTES = ("current_record_json_bytes", "record_history_json_bytes", "blob_bytes")


def _parse(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def helpers(at: datetime) -> dict[str, Any]:
    """Formatting functions the templates call, bound to the read time ``at``."""

    def when(value: str | None) -> Markup:
        moment = _parse(value)
        if moment is None:
            return Markup("n/a")
        exact = f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        return Markup('<time datetime="{}" title="{}" data-ago>{}</time>').format(
            value, exact, _ago((at - moment).total_seconds())
        )

    def size(value: int | None) -> str:
        if value is None:
            return "n/a"
        amount = float(value)
        for unit in _BYTE_UNITS:
            if amount < 1000 or unit == _BYTE_UNITS[-1]:
                return f"{amount:,.0f} {unit}" if unit == "B" else f"{amount:,.1f} {unit}"
            amount /= 1000
        return f"{value} B"

    def gaps(value: Any) -> str:
        if not value:
            return "none"
        return ", ".join(str(item) for item in value[:5]) + (" …" if len(value) > 5 else "")

    def stream_bytes(stream: dict[str, Any]) -> int | None:
        parts = [stream.get(k) for k in _STREAM_BYTES]
        return sum(parts) if all(isinstance(p, int) for p in parts) else None  # type: ignore[arg-type]

    return {"when": when, "size": size, "gaps": gaps, "stream_bytes": stream_bytes}


def detail_href(base: str, connection_id: str) -> str:
    """The detail page of ``connection_id``: one percent-encoded path segment ("a/b" is
    ``a%2Fb``). A browser resolves the segments ``.`` and ``..`` away even when percent-encoded
    (``%2E%2E`` is a dot segment to the URL standard), so those two ids go in the query instead:
    ``/dashboard/runs/?connection=..``."""
    if connection_id in (".", ".."):
        return f"{base}/dashboard/runs/?connection={quote(connection_id, safe='')}"
    return f"{base}/dashboard/runs/{quote(connection_id, safe='')}"


ENVIRONMENT.globals["detail_href"] = detail_href
# A row whose id get() refuses (only a compressible id over 4,096 bytes: refproj._core) is shown
# without a link rather than with one that opens "Bad address".
ENVIRONMENT.globals["has_detail"] = identifier_fits


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _render(name: str, context: dict[str, Any], overview_ms: float | None) -> Response:
    headers = {"Cache-Control": "no-cache"}
    if overview_ms is not None:
        # The browser harness counts documents that carried the list read (docs/BENCHMARK.md).
        headers["Server-Timing"] = f"overview;dur={overview_ms:.1f}"
    return HTMLResponse(ENVIRONMENT.get_template(name).render(context), headers=headers)


def _head(as_of: str, source_changed: bool, at: datetime, valid_until: str | None = None) -> dict[str, Any]:
    as_of_time = _parse(as_of)
    return {
        "as_of_iso": as_of,
        "as_of_text": f"{as_of_time.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if as_of_time else "n/a",
        "source_changed": source_changed,
        "at_text": f"{at:%Y-%m-%d %H:%M:%S} UTC",
        "at_iso": at.isoformat(),
        "valid_until": valid_until,
    }


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InvalidArgument(f"{name} is given {len(values)} times; give it once")
    return values[0] if values else None


def error_page(
    request: Request, status: int, title: str, message: str, candidates: list[str] | None = None
) -> Response:
    """An HTML error page (the console's own look) with ``status``; no database read."""
    context = {"base": _base(request), "title": title, "message": message, "candidates": candidates or []}
    response = _render("not_found.html", context, None)
    response.status_code = status
    return response


def _refproj_error_page(request: Request, error: RefprojError) -> Response:
    status = next(s for kind, s, _code in ERROR_STATUS if isinstance(error, kind))
    if isinstance(error, AmbiguousConnection):
        return error_page(request, status, "Which connection?", str(error), list(error.candidate_ids))
    if isinstance(error, ConnectionNotFound):
        if request.query_params.get("fragment") == "1":
            # The live update of an open detail page whose connection was deleted: an expected
            # state, answered 200 (a browser logs every 4xx fetch as a console error) with a
            # fragment the page shows in place of its stale data.
            return error_page(request, 200, "This connection no longer exists", str(error))
        return error_page(request, status, "No such connection", str(error))
    title = "Bad address" if status < 500 else "The evidence cannot be read right now"
    return error_page(request, status, title, str(error))


async def runs_page(request: Request) -> Response:
    """``GET /dashboard/runs[?connector_id=]``: the console's list, one row per connection."""
    projection = request.app.state.service.projection
    try:
        check_utf8_address(request)
        connector_id = _single(request, "connector_id") or None
        return await _runs_page(request, projection, connector_id, _at(request))
    except RefprojError as error:
        return _refproj_error_page(request, error)


def _at(request: Request) -> datetime:
    """The read time: ``?at=`` as the API reads it (422 page for anything else), else now."""
    _single(request, "at")
    return (at_param(request.query_params) or datetime.now(UTC)).astimezone(UTC)


async def _runs_page(request: Request, projection: Any, connector_id: str | None, at: datetime) -> Response:
    started = time.perf_counter()
    page = await projection.list_page(connector_id, at=at)
    # The filter offers every connector; a filtered page reads the whole (shared, coalesced) list
    # once more for the choices rather than asking the database for another shape.
    everyone = page if connector_id is None else await projection.list_page(None, at=at)
    overview_ms = (time.perf_counter() - started) * 1000
    rows = orjson.loads(page.connections_json)
    connectors = sorted(
        {(r["connector_id"], r["connector_display_name"]) for r in orjson.loads(everyone.connections_json)}
    )
    states = sorted(Counter(r["health"]["state"] for r in rows).items())
    context = {
        **helpers(at),
        **_head(page.as_of, page.source_changed, at, page.valid_until),
        "base": _base(request),
        "rows": rows,
        "states": states,
        "connectors": connectors,
        "connector_id": connector_id,
        "building": bool(getattr(page, "building", False)),
    }
    return _render("runs.html", context, overview_ms)


async def run_detail_page(request: Request) -> Response:
    """``GET /dashboard/runs/{connection}`` (or ``/dashboard/runs/?connection=`` for the ids ``.``
    and ``..``): the live detail of one connection."""
    projection = request.app.state.service.projection
    try:
        check_utf8_address(request)
        connection = request.path_params["connection"] or _single(request, "connection")
        if not connection:
            return error_page(request, 404, "No such connection", "This address names no connection.")
        at = _at(request)
        status = await projection.status()
        detail = await projection.get(connection, run_limit=DETAIL_RUNS, at=at)
        # When this connection's freshness or health next changes with time alone: the first such
        # moment among its connector's stored rows (never later than its own).
        page = await projection.list_page(detail["connector_id"], at=at)
    except RefprojError as error:
        return _refproj_error_page(request, error)
    as_of = status.as_of.astimezone(UTC).isoformat()
    head = {**_head(as_of, status.source_changed, at, page.valid_until), "base": _base(request)}
    context = {**helpers(at), **head, "d": detail}
    return _render("run_detail.html", context, None)


ROUTES = [
    Route("/dashboard/runs", runs_page, methods=["GET"]),
    Route("/dashboard/runs/{connection:path}", run_detail_page, methods=["GET"]),
]
