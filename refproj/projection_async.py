"""``AsyncProjection``: the console backend's handle on the connection summary, for asyncio.

The database computes everything; this module only coalesces: concurrent identical reads share
one statement, concurrent refreshes share refreshes, and a watcher keeps the overview within a
staleness bound without anybody calling ``refresh()``.

refproj/projection_async.py is the source of both twins: tools/async_to_sync.py generates
refproj/projection.py from it, as psycopg generates its sync classes, so a rule is written once.
What does no I/O lives in refproj/_core.py; the waiting primitives that differ live in
refproj/_acompat.py and refproj/_compat.py under the same names.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from sqlalchemy import exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from refproj import _core
from refproj._acompat import AEvent, adriver, ajoin, aspawn
from refproj._core import DEFAULT_REFRESH_TIMEOUT, ConnectionLost
from refproj.paging import OverviewPage, page_params
from refproj.queries import QUERIES
from refproj.rows import Detail, Overview, OverviewJson, RefreshResult, Status
from refproj.settings import database_url
from refproj.singleflight import AsyncSingleFlight

log = logging.getLogger(__name__)

T = TypeVar("T")

_REFRESH = "refresh"  # the single-flight key of explicit refreshes
_PARSE_IN_THREAD = 256 * 1024  # characters of overview JSON (about 200 rows): parse larger ones in a thread


class AsyncProjection:
    """Serve the connection overview and detail from one PostgreSQL database.

    ``database`` is a URL (``postgresql://...``), an SQLAlchemy ``AsyncEngine`` on psycopg the
    application already has, or None for ``$DATABASE_URL``; with neither, ``InvalidDatabaseUrl``
    is raised (the library never guesses a database).

    ``read_reuse``: seconds a completed ``list()`` answer may be served again (0 disables reuse;
    concurrent identical calls still share one statement). ``staleness_bound``: seconds within
    which a committed source write reaches ``list()`` readers without an explicit ``refresh()``;
    None disables the watcher that guarantees it.

    Every wait is bounded: ``pool_timeout`` for a pooled connection, ``connect_timeout`` to
    connect, ``statement_timeout`` for reads (set on connections of the engine refproj creates;
    an application's engine keeps its own settings) and ``refresh_timeout`` for a refresh,
    waiting behind other refreshes and for table locks included.

    Every error raised is a ``RefprojError`` (``InvalidArgument`` for a bad option, or an engine
    of the wrong kind or driver).
    """

    def __init__(
        self,
        database: str | URL | AsyncEngine | None = None,
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
        options = _core.Options(
            read_reuse,
            staleness_bound,
            pool_size,
            max_overflow,
            pool_timeout,
            connect_timeout,
            statement_timeout,
            refresh_timeout,
        )
        _core.check_engine(database, AsyncEngine)
        if isinstance(database, AsyncEngine):
            self._engine = database
            self._owns_engine = False
        else:
            url = database_url(database, default=None)
            self._engine = create_async_engine(url, **options.engine_options())
            self._owns_engine = True
        self._read_reuse = options.read_reuse
        self._reads: AsyncSingleFlight[OverviewJson] = AsyncSingleFlight(options.read_reuse)
        self._pages: AsyncSingleFlight[OverviewPage] = AsyncSingleFlight(options.read_reuse)
        self._refreshes: AsyncSingleFlight[RefreshResult] = AsyncSingleFlight(0)
        self._staleness_bound = options.staleness_bound
        self._refresh_timeout_ms = options.refresh_timeout_ms
        self._lock = threading.Lock()  # guards the watcher's start; never held across a wait
        self._closed = AEvent()
        self._watcher: Any = None

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    # -- reads -----------------------------------------------------------------------------------

    async def list(self, connector_id: str | None = None, *, at: datetime | None = None) -> Overview:
        """The overview (every visible connection, or one connector's), from stored evidence:
        an ``Overview`` of ``OverviewRow``s, read-only and shared with concurrent callers.

        Freshness and health are computed for ``at`` (default: the database's now()).
        """
        answer = await self.list_json(connector_id, at=at)
        if True:  # ASYNC
            if not answer.parsed and len(answer.json_text) > _PARSE_IN_THREAD:
                # Parsing and freezing 1,000 rows takes tens of milliseconds of CPU: in a thread
                # the event loop still gets the interpreter every switch interval (5 ms).
                return await asyncio.to_thread(answer.overview)
        return answer.overview()

    async def list_json(self, connector_id: str | None = None, *, at: datetime | None = None) -> OverviewJson:
        """The same answer as ``list()``, unparsed: an ``OverviewJson`` whose ``json_text`` is the
        rows as the database serialised them, for writing a response body as is. Shares the
        statement (and the reuse window) with ``list()`` calls of the same arguments.
        """
        params = _core.overview_params(connector_id, at)
        self._ensure_watcher()
        return await self._reads.do(
            (connector_id, at), lambda: self._one("overview", params, _core.overview_answer)
        )

    async def list_page(
        self,
        connector_id: str | None = None,
        *,
        at: datetime | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> OverviewPage:
        """The overview, or one keyset page of it (``limit`` rows after the cursor ``after``, a
        ``next_after`` of an earlier page), as the JSON bytes the database serialised, never
        parsed: what an HTTP response writes out (``OverviewPage.body``, ``.etag``). Shares
        statements and the reuse window like ``list()``.

        Raises ``InvalidArgument`` for a bad connector id, read time, limit (1 to 10,000) or cursor.
        """
        params = page_params(connector_id, at, limit, after)
        self._ensure_watcher()
        return await self._pages.do(
            (connector_id, at, limit, after),
            lambda: self._one(
                "overview_page", params, lambda row: OverviewPage.from_row(row, connector_id, limit, after)
            ),
        )

    async def get(self, connection: str, *, run_limit: int = 20, at: datetime | None = None) -> Detail:
        """Live detail of one connection, by connection id or by a connector id with exactly one
        visible connection. Never served from a cache; the caller's own dict.

        ``run_limit``: at most this many ``recent_runs`` (0 to 2**31 - 1). Raises
        ``ConnectionNotFound``, ``AmbiguousConnection`` (``candidate_ids``), ``InvalidArgument``.
        """
        params = _core.detail_params(connection, run_limit, at)
        return await self._one("detail", params, lambda row: _core.detail_answer(connection, row))

    def stats(self) -> dict[str, int]:
        """Counters for metrics: ``coalesced_reads``, the overview reads answered by another
        read's statement (joined in flight or reused) since this object was created, and
        ``pool_in_use``, the connections checked out of the engine's pool right now."""
        pool: Any = self._engine.pool
        return {
            "coalesced_reads": self._reads.joined + self._pages.joined,
            "pool_in_use": int(pool.checkedout()) if hasattr(pool, "checkedout") else 0,
        }

    async def status(self) -> Status:
        """How current the stored overview is (one statement, never cached)."""
        return await self._one("status", {}, _core.status_answer)

    # -- refresh ---------------------------------------------------------------------------------

    async def refresh(self) -> RefreshResult:
        """Return once a refresh that started after this call has committed.

        Read-your-writes across callers and processes: the database function orders callers by
        tickets (see sql/projection/10_refresh.sql). In process, callers join a pending call only
        while its leader is still waiting for a pooled connection, i.e. before the call reaches
        the database and draws its ticket (the leader forgets the call once it has a connection),
        so joining never weakens the guarantee.
        """
        result = await self._refreshes.do(_REFRESH, self._explicit_refresh)
        self._reads.forget()
        self._pages.forget()
        return result

    async def _explicit_refresh(self) -> RefreshResult:
        return await self._refresh(only_if_changed=False)

    async def _refresh(self, *, only_if_changed: bool) -> RefreshResult:
        async with self._connection() as pg:
            if not only_if_changed:
                self._refreshes.forget(_REFRESH)
            async with pg.transaction():
                await pg.execute(QUERIES["refresh_timeout"], {"milliseconds": self._refresh_timeout_ms})
                cursor = await pg.execute(QUERIES["refresh"], {"only_if_changed": only_if_changed})
                row = await cursor.fetchone()
        assert row is not None
        return _core.refresh_answer(row)

    # -- automatic freshness ---------------------------------------------------------------------

    def _ensure_watcher(self) -> None:
        if self._staleness_bound is None or self._watcher is not None or self._closed.is_set():
            return
        with self._lock:
            if self._watcher is None:
                self._watcher = aspawn(self._watch, "refproj-watcher")

    async def _watch(self) -> None:
        """Refresh when a source write is pending, checking a few times per staleness bound."""
        assert self._staleness_bound is not None
        interval = _core.watch_interval(self._staleness_bound, self._read_reuse)
        while not await self._closed.wait_timeout(interval):
            try:
                status = await self.status()
                if status.source_changed:
                    result = await self._refresh(only_if_changed=True)
                    if result.refreshed:
                        self._reads.forget()
                        self._pages.forget()
            except Exception as error:  # the next poll tries again; readers keep being served
                log.warning("refproj watcher: %s", error)

    # -- plumbing --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the watcher and, when this object created the engine, close its pool."""
        self._closed.set()
        if self._watcher is not None:
            await ajoin(self._watcher)
        if self._owns_engine:
            await self._engine.dispose()

    async def __aenter__(self) -> AsyncProjection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _one(self, query: str, params: dict[str, Any], answer: Callable[[tuple[Any, ...]], T]) -> T:
        """One read statement, in autocommit mode (a single round trip), and its answer.

        Reads are idempotent: when the pooled connection turned out dead (say, after a database
        restart), one more try on a fresh connection is safe.
        """
        try:
            return answer(await self._fetch(query, params))
        except ConnectionLost:
            return answer(await self._fetch(query, params))

    async def _fetch(self, query: str, params: dict[str, Any]) -> tuple[Any, ...]:
        async with self._connection() as pg:
            cursor = await pg.execute(QUERIES[query], params)
            row: tuple[Any, ...] | None = await cursor.fetchone()
        assert row is not None
        return row

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The psycopg connection under a pooled SQLAlchemy connection, in autocommit mode;
        pool and driver errors as ``RefprojError``s.

        Statements go to psycopg directly, not through SQLAlchemy: when an interrupted statement
        is cancelled, psycopg cancels it on the server and the connection returns to the pool,
        where SQLAlchemy would discard it.
        """
        try:
            async with self._engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                pg = await adriver(conn)
                try:
                    yield pg
                except psycopg.Error as error:
                    if pg.broken:
                        await conn.invalidate()
                        lost = _core.to_refproj_error(error, self._engine.url)
                        raise ConnectionLost(str(lost)) from error
                    raise
        except (exc.SQLAlchemyError, psycopg.Error) as error:
            raise _core.to_refproj_error(error, self._engine.url) from error
