"""What ``Projection`` and ``AsyncProjection`` share and that does no I/O: argument checks,
turning query rows into answers, and turning driver errors into ``RefprojError``s.

The twins differ only in how they wait (threads or asyncio); see refproj/projection_async.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import exc
from sqlalchemy.engine import URL

from refproj.errors import (
    AmbiguousConnection,
    ConnectionNotFound,
    DatabaseError,
    DatabaseUnavailable,
    InvalidArgument,
    InvalidIdentifier,
    RefprojError,
    first_line,
    mask_secrets,
    translate,
)
from refproj.rows import Detail, OverviewJson, RefreshResult, Status
from refproj.settings import connect_args, is_utf8_text, milliseconds, url_text

# Ids a caller names are bounded in UTF-8 bytes, above the longest random id a source table's
# key holds (a btree entry: 2,704 bytes), so every such connection the overview serves opens;
# only a compressible id over the bound ("a" * 5000 is storable) is refused, and the console
# shows that one without a link (README "Decisions"). Percent-encoded, the longest id fits the
# HTTP server's 16 KiB request line.
MAX_IDENTIFIER_BYTES = 4096
MAX_RUN_LIMIT = 2**31 - 1  # connection_detail's p_run_limit is an int4
MAX_TIMEOUT = 86_400.0  # seconds: every timeout and bound is at most a day
DEFAULT_REFRESH_TIMEOUT = 120.0  # seconds; a full rebuild after a bulk load at M takes about 15


def check_identifier(value: object, what: str = "connection id") -> str:
    """A caller-supplied id as text: any characters PostgreSQL text can hold, bounded length."""
    if not isinstance(value, str):
        raise InvalidIdentifier(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidIdentifier(f"{what} must not be empty")
    if "\x00" in value:
        raise InvalidIdentifier(f"{what} must not contain NUL characters")
    if not is_utf8_text(value):
        raise InvalidIdentifier(f"{what} must be Unicode text without lone surrogates (U+D800-U+DFFF)")
    if not identifier_fits(value):
        raise InvalidIdentifier(f"{what} is longer than {MAX_IDENTIFIER_BYTES} bytes (UTF-8)")
    return value


def identifier_fits(value: str) -> bool:
    """Whether a valid id is within MAX_IDENTIFIER_BYTES (what get() and the detail pages take)."""
    return (
        len(value) <= MAX_IDENTIFIER_BYTES
        and len(value.encode("utf-8", "surrogatepass")) <= MAX_IDENTIFIER_BYTES
    )


def check_run_limit(value: object) -> int:
    """A detail's run limit: a whole number from 0 to 2**31 - 1 (the SQL int4)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"run limit must be a whole number, not {type(value).__name__}")
    if not 0 <= value <= MAX_RUN_LIMIT:
        raise InvalidArgument(f"run limit must be between 0 and {MAX_RUN_LIMIT}, not {value}")
    return value


def check_flag(name: str, value: object) -> bool:
    """A yes/no argument: True or False only (None, 1 or "yes" would be a guess; SQL refuses NULL)."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be True or False, not {value!r}")
    return value


def check_read_time(value: object) -> datetime | None:
    """A read clock: None (the database's now()) or a timezone-aware datetime. A naive one would
    be read in the session's TimeZone, which differs between engines, so it is refused."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidArgument(f"at must be a datetime, not {type(value).__name__}")
    if value.utcoffset() is None:
        raise InvalidArgument("at must be a timezone-aware datetime (a naive one has no fixed instant)")
    return value


def check_seconds(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be a number of seconds from {low:g} to {high:g}, not {value!r}")
    return float(value)


class Options:
    """A projection's checked options (the constructor's keywords; see ``Projection``)."""

    def __init__(
        self,
        read_reuse: object,
        staleness_bound: object,
        pool_size: object,
        max_overflow: object,
        pool_timeout: object,
        connect_timeout: object,
        statement_timeout: object,
        refresh_timeout: object,
    ) -> None:
        self.read_reuse = check_seconds("read_reuse", read_reuse, 0, 1)
        self.staleness_bound: float | None = None
        if staleness_bound is not None:
            self.staleness_bound = check_seconds("staleness_bound", staleness_bound, 0, MAX_TIMEOUT)
            if self.staleness_bound <= self.read_reuse:
                raise InvalidArgument("staleness_bound must be larger than read_reuse")
        self.statement_timeout = check_seconds("statement_timeout", statement_timeout, 0, MAX_TIMEOUT)
        self.refresh_timeout = check_seconds("refresh_timeout", refresh_timeout, 0, MAX_TIMEOUT)
        self.pool_timeout = check_seconds("pool_timeout", pool_timeout, 0, MAX_TIMEOUT)
        counts = {"pool_size": pool_size, "max_overflow": max_overflow, "connect_timeout": connect_timeout}
        for name, count in counts.items():
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10_000:
                raise InvalidArgument(f"{name} must be a whole number from 0 to 10000, not {count!r}")
        self.pool_size, self.max_overflow, self.connect_timeout = pool_size, max_overflow, connect_timeout

    @property
    def refresh_timeout_ms(self) -> str:
        return milliseconds(self.refresh_timeout)

    def engine_options(self, url: URL) -> dict[str, Any]:
        """Keyword arguments of ``create_engine`` / ``create_async_engine`` for an engine refproj
        owns, connecting to ``url``."""
        return {
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.pool_timeout,
            "connect_args": connect_args(cast(int, self.connect_timeout), url),
        }


def failure_kind(error: BaseException) -> str:
    """What the watcher's logging treats as one state: every way of being unreachable is one."""
    return "unreachable" if isinstance(error, DatabaseUnavailable) else type(error).__name__


class Progress:
    """Whether a call's first statement has answered: a connection lost before that was found
    dead in the pool, so the call may safely run again on a fresh one."""

    reached_server = False


#: The longest the watcher waits between checks while the database keeps failing (seconds).
MAX_BACKOFF = 10.0


def backoff(interval: float, failures: int) -> float:
    """The watcher's wait after ``failures`` failed checks in a row: doubling from ``interval``,
    at most MAX_BACKOFF (and never shorter than ``interval``)."""
    return max(interval, min(interval * 2.0 ** min(failures, 30), MAX_BACKOFF))


# Every live Projection and AsyncProjection, so a forked child can reset them (below).
LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # gunicorn --preload, daemonising launchers: the child inherits the parent's pooled sockets,
    # and none of its threads. Each projection drops what is the parent's and starts afresh.
    for projection in list(LIVE):
        projection._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def watch_interval(staleness_bound: float, read_reuse: float) -> float:
    """Seconds between the watcher's checks for pending source writes.

    Worst case a write reaches readers after one poll interval, one refresh and one read reuse
    window; the interval leaves room for the other two within the bound.
    """
    return (staleness_bound - read_reuse) / 3


# -- query parameters and answers ---------------------------------------------------------------------


def overview_params(connector_id: str | None, at: datetime | None) -> dict[str, Any]:
    if connector_id is not None:
        check_identifier(connector_id, "connector id")
    return {"at": check_read_time(at), "connector_id": connector_id}


def overview_answer(row: tuple[Any, ...]) -> OverviewJson:
    status, json_text = row
    # NULL while the first build after install runs: nothing is stored yet.
    return OverviewJson(
        "[]" if json_text is None else json_text,
        instant(status["as_of"]),
        bool(status["source_changed"]),
        bool(status.get("building", False)),
    )


def detail_params(connection: str, run_limit: int, at: datetime | None) -> dict[str, Any]:
    check_identifier(connection)
    check_run_limit(run_limit)
    return {"connection": connection, "run_limit": run_limit, "at": check_read_time(at)}


def detail_text(connection: str, row: tuple[Any, ...]) -> str:
    """The detail as the JSON text the database serialised (refproj.connection_detail_json)."""
    resolution, candidate_ids, detail = row
    if resolution == "ambiguous":
        raise AmbiguousConnection(connection, candidate_ids)
    if detail is None:
        raise ConnectionNotFound(connection)
    return str(detail)


def detail_answer(connection: str, row: tuple[Any, ...]) -> Detail:
    detail = detail_text(connection, row)
    # The database serialised the detail as the overview (refproj.connection_detail_json), with
    # nothing nested 64 levels deep and no number beyond a double (refproj.jsonb_servable), so
    # orjson reads it as it reads the overview; a payload integer beyond 64 bits becomes a float,
    # as in JavaScript (the JSON text stays exact).
    try:
        answer: Detail = orjson.loads(detail)
    except orjson.JSONDecodeError as error:
        raise DatabaseError(f"the database answered JSON refproj cannot parse: {error}") from error
    return answer


def instant(text: str) -> datetime:
    """A timestamp the database rendered in the session's TimeZone, in UTC whatever that was."""
    return datetime.fromisoformat(text).astimezone(UTC)


def status_answer(row: tuple[Any, ...]) -> Status:
    data = row[0]
    return Status(
        as_of=instant(data["as_of"]),
        source_changed=data["source_changed"],
        last_refresh_ms=data["last_refresh_ms"],
        refresh_count=data["refresh_count"],
        building=bool(data.get("building", False)),
    )


def refresh_answer(row: tuple[Any, ...]) -> RefreshResult:
    data = row[0]
    return RefreshResult(
        refreshed=data["refreshed"],
        as_of=instant(data["as_of"]),
        refresh_ms=float(data["refresh_ms"]),
    )


Differences = list[dict[str, Any]]  # rows of refproj.verify_projection()


def verify_answer(row: tuple[Any, ...]) -> Differences:
    return list(row[0])


# -- errors ---------------------------------------------------------------------------------------------


class ConnectionLost(DatabaseUnavailable):
    """A pooled connection turned out dead (the server restarted, an idle session was closed):
    idempotent reads try once more on a fresh connection."""


def where(url: URL) -> str:
    """The database, for messages: a plain URL without its passwords (userinfo and query)."""
    return mask_secrets(url_text(url.set(drivername="postgresql")))


def to_refproj_error(error: BaseException, url: URL) -> RefprojError:
    """The ``RefprojError`` for an error of the pool, SQLAlchemy or psycopg (refproj.errors)."""
    if isinstance(error, exc.SQLAlchemyError) and not isinstance(error, exc.DBAPIError | exc.TimeoutError):
        return DatabaseError(f"database driver error: {first_line(error)}")
    return translate(error, where(url))


def check_engine(database: object, kind: type) -> None:
    """``database`` is a URL, None, or an SQLAlchemy engine of ``kind`` on psycopg 3."""
    if database is None or isinstance(database, str | URL):
        return
    if not isinstance(database, kind):
        raise InvalidArgument(
            f"expected a database URL or an SQLAlchemy {kind.__name__}, not {type(database).__name__}"
            " (a sync Engine goes to Projection, an AsyncEngine to AsyncProjection)"
        )
    driver = database.dialect.driver  # type: ignore[attr-defined]
    if driver != "psycopg":
        raise InvalidArgument(
            f"refproj runs on the psycopg (3) driver, not {driver}: create the engine with a"
            " postgresql+psycopg:// URL"
        )


# A read pipeline whose session turned out dead (a pooled session cut while idle) fails in its
# block, and ending it fails too; psycopg then logs "error ignored terminating <Pipeline>: the
# connection is lost" as a warning. The block's own error is the one that counts: the read is
# retried once on a fresh session (or raises DatabaseUnavailable), so that second report is
# noise. Only refproj's read pipelines, and only on a lost connection, are kept quiet.
_READ_PIPELINES: weakref.WeakSet[Any] = weakref.WeakSet()
_TERMINATING = "error ignored terminating %r: %s"


def quiet_when_lost(pipeline: Any) -> contextlib.nullcontext[None]:
    """Keep psycopg's warning about ending ``pipeline`` quiet if its connection is lost. A no-op
    context manager, so it joins the pipeline's own ``with`` (sync and async alike)."""
    _READ_PIPELINES.add(pipeline)
    return contextlib.nullcontext()


def _not_a_lost_read_pipeline(record: logging.LogRecord) -> bool:
    if record.msg != _TERMINATING or not isinstance(record.args, tuple) or not record.args:
        return True
    from psycopg import pq

    pipeline: Any = record.args[0]
    return not (pipeline in _READ_PIPELINES and pipeline.pgconn.status == pq.ConnStatus.BAD)


logging.getLogger("psycopg").addFilter(_not_a_lost_read_pipeline)
