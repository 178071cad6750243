"""The owner console: ``/dashboard/runs`` (every visible connection) and
``/dashboard/runs/{connection}`` (the live detail of one).

Pages are rendered on the server from Jinja2 templates (``refproj/web/templates``), so the first
response already carries the rows: the browser reads the list once per navigation, inside the
document, and says so with a ``Server-Timing: overview`` entry that the browser harness counts.
A small inline script then follows the Server-Sent Events stream and, on each refresh that changed
the overview, fetches the same page once with ``?fragment=1`` (only the part that shows data).
No front-end build step, no polling.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from refproj.errors import AmbiguousConnection, ConnectionNotFound

ENVIRONMENT = Environment(
    loader=PackageLoader("refproj.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
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
        return Markup('<time datetime="{}" title="{}">{}</time>').format(
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
            return ""
        return ", ".join(str(item) for item in value[:5]) + (" …" if len(value) > 5 else "")

    def stream_bytes(stream: dict[str, Any]) -> int | None:
        parts = [stream.get(k) for k in _STREAM_BYTES]
        return sum(parts) if all(isinstance(p, int) for p in parts) else None  # type: ignore[arg-type]

    return {"when": when, "size": size, "gaps": gaps, "stream_bytes": stream_bytes}


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _render(name: str, context: dict[str, Any], overview_ms: float | None) -> Response:
    headers = {"Cache-Control": "no-cache"}
    if overview_ms is not None:
        # The browser harness counts documents that carried the list read (docs/BENCHMARK.md).
        headers["Server-Timing"] = f"overview;dur={overview_ms:.1f}"
    return HTMLResponse(ENVIRONMENT.get_template(name).render(context), headers=headers)


def _head(as_of: str, source_changed: bool, at: datetime) -> dict[str, Any]:
    as_of_time = _parse(as_of)
    return {
        "as_of_iso": as_of,
        "as_of_text": f"{as_of_time.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if as_of_time else "n/a",
        "source_changed": source_changed,
        "at_text": f"{at:%Y-%m-%d %H:%M:%S} UTC",
    }


async def runs_page(request: Request) -> Response:
    """``GET /dashboard/runs[?connector_id=]``: the console's list, one row per connection."""
    projection = request.app.state.service.projection
    connector_id = request.query_params.get("connector_id") or None
    at = datetime.now(UTC)
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
        **_head(page.as_of, page.source_changed, at),
        "base": _base(request),
        "rows": rows,
        "states": states,
        "connectors": connectors,
        "connector_id": connector_id,
        "building": bool(getattr(page, "building", False)),
    }
    return _render("runs.html", context, overview_ms)


async def run_detail_page(request: Request) -> Response:
    """``GET /dashboard/runs/{connection}``: the live detail of one connection (404/409 pages
    for an unknown id or an ambiguous connector id come from the app's error handlers)."""
    projection = request.app.state.service.projection
    at = datetime.now(UTC)
    status = await projection.status()
    as_of = status.as_of.astimezone(UTC).isoformat()
    head = {**_head(as_of, status.source_changed, at), "base": _base(request)}
    try:
        detail = await projection.get(request.path_params["connection"], run_limit=DETAIL_RUNS, at=at)
    except (ConnectionNotFound, AmbiguousConnection) as error:
        ambiguous = isinstance(error, AmbiguousConnection)
        context = {
            **head,
            "title": "Which connection?" if ambiguous else "No such connection",
            "message": str(error),
            "candidates": list(error.candidate_ids) if isinstance(error, AmbiguousConnection) else [],
        }
        response = _render("not_found.html", context, None)
        response.status_code = 409 if ambiguous else 404
        return response
    context = {**helpers(at), **head, "d": detail}
    return _render("run_detail.html", context, None)


ROUTES = [
    Route("/dashboard/runs", runs_page, methods=["GET"]),
    Route("/dashboard/runs/{connection:path}", run_detail_page, methods=["GET"]),
]
