"""``Projection``: the console backend's handle on the connection summary.

The database computes everything; this module only coalesces: concurrent identical reads share
one statement, concurrent refreshes share refreshes, and a watcher keeps the overview within a
staleness bound without anybody calling ``refresh()``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import create_engine, exc
from sqlalchemy.engine import URL, Connection, Engine

from refproj.errors import (
    AmbiguousConnection,
    ConnectionNotFound,
    DatabaseError,
    DatabaseUnavailable,
    InvalidArgument,
    InvalidIdentifier,
    PoolExhausted,
    RefprojError,
    first_line,
    translate,
)
from refproj.queries import QUERIES
from refproj.settings import database_url
from refproj.singleflight import SingleFlight, _Call

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_IDENTIFIER_LENGTH = 1000
MAX_RUN_LIMIT = 2**31 - 1  # connection_detail's p_run_limit is an int4


class Overview(list[dict[str, Any]]):
    """The overview rows (JSON-ready dicts, in overview order) plus how current they are.

    It is a plain list to ``json.dumps``; ``as_of`` is when the stored evidence was computed and
    ``source_changed`` says whether a source table was written since. Shared between concurrent
    callers: treat it as read-only.
    """

    as_of: datetime
    source_changed: bool

    def __init__(self, rows: list[dict[str, Any]], as_of: datetime, source_changed: bool) -> None:
        super().__init__(rows)
        self.as_of = as_of
        self.source_changed = source_changed

    def envelope(self) -> dict[str, Any]:
        """``{"as_of", "source_changed", "connections"}``, JSON-ready."""
        return {
            "as_of": self.as_of.isoformat(),
            "source_changed": self.source_changed,
            "connections": list(self),
        }


@dataclass(frozen=True)
class Status:
    as_of: datetime
    source_changed: bool
    last_refresh_ms: float | None
    refresh_count: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["as_of"] = self.as_of.isoformat()
        return out


@dataclass(frozen=True)
class RefreshResult:
    refreshed: bool  # whether this call's SQL ran the refresh (False: it shared another's)
    as_of: datetime  # when the refresh that satisfied this call took its snapshot
    refresh_ms: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["as_of"] = self.as_of.isoformat()
        return out


def check_identifier(value: object, what: str = "connection id") -> str:
    """A caller-supplied id as text: any characters PostgreSQL text can hold, bounded length."""
    if not isinstance(value, str):
        raise InvalidIdentifier(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidIdentifier(f"{what} must not be empty")
    if "\x00" in value:
        raise InvalidIdentifier(f"{what} must not contain NUL characters")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifier(f"{what} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    return value


def check_run_limit(value: object) -> int:
    """A detail's run limit: a whole number from 0 to 2**31 - 1 (the SQL int4)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"run limit must be a whole number, not {type(value).__name__}")
    if not 0 <= value <= MAX_RUN_LIMIT:
        raise InvalidArgument(f"run limit must be between 0 and {MAX_RUN_LIMIT}, not {value}")
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


def _check_seconds(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be a number of seconds from {low:g} to {high:g}, not {value!r}")
    return float(value)


DEFAULT_REFRESH_TIMEOUT = 120.0  # seconds; a full rebuild after a bulk load at M takes about 15


class Projection:
    """Serve the connection overview and detail from one PostgreSQL database.

    ``database`` is a URL (``postgresql://...``), an SQLAlchemy ``Engine`` the application
    already has, or None for ``$DATABASE_URL``; with neither, :class:`InvalidDatabaseUrl` is
    raised (the library never guesses a database).

    ``read_reuse``: seconds a completed ``list()`` answer may be served again (0 disables reuse;
    concurrent identical calls still share one statement). ``staleness_bound``: seconds within
    which a committed source write reaches ``list()`` readers without an explicit ``refresh()``;
    None disables the watcher that guarantees it.

    Every wait is bounded: ``pool_timeout`` for a pooled connection, ``connect_timeout`` to
    connect, ``statement_timeout`` for reads (set on connections of the engine refproj creates;
    an application's engine keeps its own settings) and ``refresh_timeout`` for a refresh,
    waiting behind other refreshes and for table locks included.

    Every error raised is a :class:`RefprojError` (``InvalidArgument`` for a bad option).
    """

    def __init__(
        self,
        database: str | URL | Engine | None = None,
        *,
        read_reuse: float = 0.5,
        staleness_bound: float | None = 2.0,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 10.0,
        connect_timeout: int = 5,
        statement_timeout: float = 30.0,
        refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT,
    ) -> None:
        read_reuse = _check_seconds("read_reuse", read_reuse, 0, 1)
        if staleness_bound is not None:
            staleness_bound = _check_seconds("staleness_bound", staleness_bound, 0, 86_400)
            if staleness_bound <= read_reuse:
                raise InvalidArgument("staleness_bound must be larger than read_reuse")
        statement_timeout = _check_seconds("statement_timeout", statement_timeout, 0, 86_400)
        refresh_timeout = _check_seconds("refresh_timeout", refresh_timeout, 0, 86_400)
        pool_timeout = _check_seconds("pool_timeout", pool_timeout, 0, 86_400)
        counts = {"pool_size": pool_size, "max_overflow": max_overflow, "connect_timeout": connect_timeout}
        for name, count in counts.items():
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10_000:
                raise InvalidArgument(f"{name} must be a whole number from 0 to 10000, not {count!r}")
        if isinstance(database, Engine):
            self._engine = database
            self._owns_engine = False
        else:
            url = database_url(database, default=None)
            self._engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_timeout=pool_timeout,
                connect_args={
                    "connect_timeout": connect_timeout,
                    "options": f"-c TimeZone=UTC -c statement_timeout={int(statement_timeout * 1000)}",
                },
            )
            self._owns_engine = True
        self._read_reuse = read_reuse
        self._reads: SingleFlight[Overview] = SingleFlight(read_reuse)
        self._refresh_lock = threading.Lock()
        self._pending_refresh: _Call[RefreshResult] | None = None
        self._staleness_bound = staleness_bound
        self._refresh_timeout_ms = str(int(refresh_timeout * 1000))
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- reads -----------------------------------------------------------------------------------

    def list(self, connector_id: str | None = None, *, at: datetime | None = None) -> Overview:
        """The overview (every visible connection, or one connector's), from stored evidence.

        Freshness and health are computed for ``at`` (default: the database's now()).
        """
        if connector_id is not None:
            check_identifier(connector_id, "connector id")
        at = check_read_time(at)
        self._ensure_watcher()
        return self._reads.do((connector_id, at), lambda: self._fetch_overview(connector_id, at))

    def _fetch_overview(self, connector_id: str | None, at: datetime | None) -> Overview:
        row = self._one("overview", {"at": at, "connector_id": connector_id})
        status = row[0]
        rows = _parse_json(row[1])
        return Overview(rows, datetime.fromisoformat(status["as_of"]), bool(status["source_changed"]))

    def get(self, connection: str, *, run_limit: int = 20, at: datetime | None = None) -> dict[str, Any]:
        """Live detail of one connection, by connection id or by a connector id with exactly one
        visible connection. Never served from a cache.

        ``run_limit``: at most this many ``recent_runs`` (0 to 2**31 - 1). Raises
        ``ConnectionNotFound``, ``AmbiguousConnection`` (``candidate_ids``), ``InvalidArgument``."""
        check_identifier(connection)
        check_run_limit(run_limit)
        at = check_read_time(at)
        resolution, candidate_ids, detail = self._one(
            "detail", {"connection": connection, "run_limit": run_limit, "at": at}
        )
        if resolution == "ambiguous":
            raise AmbiguousConnection(connection, candidate_ids)
        if detail is None:
            raise ConnectionNotFound(connection)
        return dict(detail)

    def status(self) -> Status:
        data = self._one("status", {})[0]
        return Status(
            as_of=datetime.fromisoformat(data["as_of"]),
            source_changed=data["source_changed"],
            last_refresh_ms=data["last_refresh_ms"],
            refresh_count=data["refresh_count"],
        )

    # -- refresh ---------------------------------------------------------------------------------

    def refresh(self) -> RefreshResult:
        """Return once a refresh that started after this call has committed.

        Read-your-writes across threads and processes: the database function orders callers by
        tickets (see sql/projection/10_refresh.sql). In process, callers join a pending call only while
        its leader is still waiting for a pooled connection, i.e. before the call reaches the
        database and draws its ticket, so joining never weakens the guarantee.
        """
        result = self._refresh(only_if_changed=False)
        self._reads.forget()
        return result

    def _refresh(self, *, only_if_changed: bool) -> RefreshResult:
        with self._refresh_lock:
            call = self._pending_refresh
            leader = call is None or only_if_changed
            if call is None or only_if_changed:
                call = _Call()
                if not only_if_changed:
                    self._pending_refresh = call
            else:
                call.sharers += 1
        if not leader:
            return call.outcome()
        try:
            with self._connection() as conn:
                with self._refresh_lock:
                    if self._pending_refresh is call:
                        self._pending_refresh = None
                conn.execute(QUERIES["refresh_timeout"], {"milliseconds": self._refresh_timeout_ms})
                row = conn.execute(QUERIES["refresh"], {"only_if_changed": only_if_changed}).one()
                conn.commit()
            data = row[0]
            call.value = RefreshResult(
                refreshed=data["refreshed"],
                as_of=datetime.fromisoformat(data["as_of"]),
                refresh_ms=float(data["refresh_ms"]),
            )
        except BaseException as error:
            call.error = error
        finally:
            with self._refresh_lock:
                if self._pending_refresh is call:
                    self._pending_refresh = None
            call.done.set()
        return call.outcome()

    # -- automatic freshness ---------------------------------------------------------------------

    def _ensure_watcher(self) -> None:
        if self._staleness_bound is None or self._watcher is not None or self._closed.is_set():
            return
        with self._refresh_lock:
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="refproj-watcher", daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        """Refresh when a source write is pending, checking a few times per staleness bound.

        Worst case a write reaches readers after one poll interval, one refresh and one read
        reuse window; the interval leaves room for the other two within the bound.
        """
        assert self._staleness_bound is not None
        interval = (self._staleness_bound - self._read_reuse) / 3
        while not self._closed.wait(interval):
            try:
                if self.status().source_changed and self._refresh(only_if_changed=True).refreshed:
                    self._reads.forget()
            except Exception as error:  # the next poll tries again; readers keep being served
                log.warning("refproj watcher: %s", error)

    # -- plumbing --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the watcher and, when this Projection created the engine, close its pool."""
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join()
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> Projection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _one(self, query: str, params: dict[str, Any]) -> Any:
        """One read statement, in autocommit mode: a single round trip, no BEGIN/ROLLBACK."""

        def run() -> Any:
            with self._connection() as conn:
                reader = conn.execution_options(isolation_level="AUTOCOMMIT")
                return reader.execute(QUERIES[query], params).one()

        return _retry_once_if_reconnected(run)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except exc.TimeoutError as error:
            raise PoolExhausted(f"no database connection free within the pool timeout ({error})") from error
        except exc.DBAPIError as error:
            raise _translate(error, self._engine) from error
        except exc.SQLAlchemyError as error:
            raise DatabaseError(f"database driver error: {first_line(error)}") from error


def _parse_json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:  # the SQL caps depth and numbers; say so if it did not
        raise DatabaseError(f"the database answered JSON refproj cannot parse: {error}") from error


def _retry_once_if_reconnected(fn: Callable[[], T]) -> T:
    """Reads are idempotent: when the pool found its connection dead (say, after a database
    restart) and discarded it, one more try on a fresh connection is safe."""
    try:
        return fn()
    except DatabaseUnavailable as error:
        cause = error.__cause__
        if isinstance(cause, exc.DBAPIError) and cause.connection_invalidated:
            return fn()
        raise


def _translate(error: exc.DBAPIError, engine: Engine) -> RefprojError:
    where = engine.url.set(drivername="postgresql").render_as_string(hide_password=True)
    return translate(error, where)
