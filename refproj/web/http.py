"""HTTP plumbing the API and the dashboard share: the status code of every ``RefprojError``,
query parameters checked as the routes document them, ETag comparison, and cancelling a
projection call when its client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from refproj import errors

T = TypeVar("T")

JSON = "application/json"


# (class, HTTP status, "error" code); the first that matches wins.
ERROR_STATUS: list[tuple[type[errors.RefprojError], int, str]] = [
    (errors.ConnectionNotFound, 404, "not_found"),
    (errors.AmbiguousConnection, 409, "ambiguous"),
    # Before InvalidArgument: a URL libpq refuses (sslmode=bogus) is met at the first connect,
    # inside a request; that request is fine, this deployment's DATABASE_URL is not.
    (errors.InvalidDatabaseUrl, 503, "unavailable"),
    (errors.InvalidArgument, 422, "invalid"),
    (errors.MigrationsNotApplied, 503, "not_migrated"),
    (errors.PermissionDenied, 503, "permission_denied"),
    # A refresh sent to a hot standby or a read-only database: the request is fine, this
    # deployment cannot perform it (as with the two above), so 503, not the client's 4xx.
    (errors.ReadOnlyServer, 503, "read_only"),
    (errors.PoolExhausted, 503, "busy"),
    (errors.DatabaseUnavailable, 503, "unavailable"),
    (errors.StatementCanceled, 504, "timeout"),
    (errors.RefprojError, 500, "internal"),
]


def error_response(status: int, error: str, message: str, **extra: Any) -> Response:
    """A JSON error answer: ``{"error": error, "message": message, **extra}`` with ``status``."""
    body = orjson.dumps({"error": error, "message": message, **extra})
    return Response(body, status_code=status, media_type=JSON)


def refproj_error_response(error: errors.RefprojError) -> Response:
    """The answer to ``error``: its ``ERROR_STATUS`` status and code (409s add ``candidates``)."""
    status, code = next((s, c) for kind, s, c in ERROR_STATUS if isinstance(error, kind))
    extra: dict[str, Any] = {}
    if isinstance(error, errors.AmbiguousConnection):
        extra["candidates"] = list(error.candidate_ids)
    return error_response(status, code, str(error), **extra)


class Invalid(errors.InvalidArgument):
    """A query parameter that is not what the route documents (422)."""


def check_utf8_address(request: Request) -> None:
    """``InvalidIdentifier`` (422, as the API refuses the id itself) when the address's
    percent-encoded bytes are not UTF-8 text. The server decodes them with replacement, so
    ``/_ref/connectors/%ED%A0%80`` (a lone surrogate, which has no UTF-8 form) arrived as the
    valid id "\ufffd\ufffd\ufffd" and answered 404 while ``get("\ud800")`` is refused."""
    for part in (request.scope.get("raw_path") or b"", request.scope.get("query_string") or b""):
        try:
            unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            raise errors.InvalidIdentifier(
                "the address is not UTF-8 text: an id must be Unicode text without lone surrogates"
                " (U+D800-U+DFFF)"
            ) from None


def single_valued(params: QueryParams, *names: str) -> None:
    """422 for a parameter given twice (``limit=5&limit=6``): neither value is the obvious one."""
    for name in names:
        if len(params.getlist(name)) > 1:
            raise Invalid(f"{name} must be given at most once")


def int_param(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """Parameter ``name`` as a whole number from ``low`` to ``high``, None when absent; raises
    ``Invalid`` (422) for anything else (a sign, a space, more than 9 digits)."""
    text = params.get(name)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise Invalid(f"{name} must be a whole number between {low} and {high}")
    value = int(text)
    if not low <= value <= high:
        raise Invalid(f"{name} must be a whole number between {low} and {high}")
    return value


_ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?",
    re.ASCII,
)


def at_param(params: Mapping[str, str]) -> datetime | None:
    """Parameter ``at``, an ISO-8601 time with a UTC offset, None when absent; raises ``Invalid``
    (422) for anything else (no offset, a date alone, trailing text)."""
    text = params.get("at")
    if text is None:
        return None
    try:
        # Python 3.11's fromisoformat stops reading at a NUL ("...Z%00garbage" parsed): only
        # what the whole pattern matches reaches it.
        if not _ISO_TIME.fullmatch(text):
            raise ValueError(text)
        value = datetime.fromisoformat(text)
    except ValueError as error:
        raise Invalid("at must be an ISO-8601 time with a UTC offset, e.g. 2026-01-05T12:00:00Z") from error
    if value.tzinfo is None:
        raise Invalid("at must carry a UTC offset (Z or +HH:MM)")
    return value


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match ``header`` matches ``etag`` (``*`` matches any): the weak
    comparison (RFC 9110 13.1.2), W/ prefixes ignored. False without the header."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    candidates = (part.strip().removeprefix("W/") for part in header.split(","))
    return etag in candidates


class ClientDisconnected(Exception):
    """The client went away before its answer was ready; its statement was cancelled. Not an
    error of the service: the app answers it with nothing and logs it at DEBUG only."""


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first (then ClientDisconnected).

    Starlette does not cancel a handler when its client goes away; the projection cancels the
    statement on the server when every task awaiting it is cancelled, so watching for
    ``http.disconnect`` is all it takes to free the connection.
    """
    task = asyncio.ensure_future(work)
    gone = False

    async def watch() -> None:
        nonlocal gone
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                gone = True
                task.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if gone and (current is None or not current.cancelling()):
            # Our own cancel of the work, not one of this handler: a CancelledError leaving the
            # app would be logged by uvicorn as an error with a full traceback.
            raise ClientDisconnected(request.url.path) from None
        raise
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
