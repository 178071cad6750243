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
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from sqlalchemy import exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from refproj import _core
from refproj._acompat import AEvent, adriver, apool
from refproj._core import DEFAULT_REFRESH_TIMEOUT, ConnectionLost
from refproj.errors import ProjectionClosed
from refproj.paging import OverviewPage, page_params
from refproj.queries import QUERIES
from refproj.rows import Detail, Overview, OverviewJson, RefreshResult, Status
from refproj.settings import DEFAULT_CONNECT_TIMEOUT, database_url, session_settings
from refproj.singleflight import AsyncSingleFlight
from refproj.watcher_async import Wakeup, on_collected, start, stop

log = logging.getLogger(__name__)

T = TypeVar("T")

_REFRESH, _REFRESH_FULL = "refresh", "refresh-full"  # single-flight keys of explicit refreshes
_PARSE_IN_THREAD = 256 * 1024  # characters of overview JSON (about 200 rows): parse larger ones in a thread


class AsyncProjection:
    """Serve the connection overview and detail from one PostgreSQL database.

    ``database`` is a URL (``postgresql://...``), an SQLAlchemy ``AsyncEngine`` on psycopg the
    application already has, or None for ``$DATABASE_URL``; with neither, ``InvalidDatabaseUrl``
    is raised (the library never guesses a database). ``replica``: the same, for list() and get().

    All times are in seconds. ``read_reuse``: how long a completed ``list()`` answer may be served
    again (0 to 1; 0 disables reuse; concurrent identical calls still share one statement).
    ``staleness_bound``: within it a committed source write reaches ``list()`` readers without an
    explicit ``refresh()``; None disables the watcher that guarantees it. Every wait is bounded:
    ``pool_timeout`` for a pooled connection, ``connect_timeout`` (a whole number) to connect
    (a URL's own ``?connect_timeout=`` wins),
    ``statement_timeout`` per read (0: none; set per read, with TimeZone UTC, on the engine refproj
    creates: nothing is set at connection start, so a transaction-pooling PgBouncer works; an
    application's engine keeps its own settings) and ``refresh_timeout`` per refresh (0: none),
    waiting behind other refreshes and for table locks included.

    Every error raised is a ``RefprojError`` (refproj.errors): ``InvalidArgument`` for a bad option
    or an engine of the wrong kind or driver. Every read and refresh may raise
    ``DatabaseUnavailable`` (``PoolExhausted`` past ``pool_timeout``), ``StatementCanceled`` (past
    its timeout, or canceled), ``MigrationsNotApplied``, ``PermissionDenied``, ``DatabaseError``
    and, after ``aclose()``, ``ProjectionClosed``; each method names only the errors it adds.
    """

    def __init__(
        self,
        database: str | URL | AsyncEngine | None = None,
        *,
        replica: str | URL | AsyncEngine | None = None,
        read_reuse: float = 0.5,
        staleness_bound: float | None = 2.0,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 10.0,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
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
        _core.check_engine(replica, AsyncEngine)
        self._engine, self._owns_engine = _engine(database, options)
        self._replica, self._owns_replica = self._engine, False
        if replica is not None:
            self._replica, self._owns_replica = _engine(replica, options)
        # Set per read on the engines refproj owns (refproj.settings); None: the application's.
        self._settings = session_settings(options.statement_timeout) if self._owns_engine else None
        self._replica_settings = self._settings
        if replica is not None:
            self._replica_settings = (
                session_settings(options.statement_timeout) if self._owns_replica else None
            )
        self._read_reuse = options.read_reuse
        self._staleness_bound = options.staleness_bound
        self._refresh_timeout_ms = options.refresh_timeout_ms
        self._start_process_state()
        _core.LIVE.add(self)

    def _start_process_state(self) -> None:
        """What one process owns: in-flight calls, the watcher and its stop signal, the
        finalizer that releases the pools of a Projection dropped without close()."""
        self._reads: AsyncSingleFlight[OverviewJson] = AsyncSingleFlight(self._read_reuse)
        self._pages: AsyncSingleFlight[OverviewPage] = AsyncSingleFlight(self._read_reuse)
        self._refreshes: AsyncSingleFlight[RefreshResult] = AsyncSingleFlight(0)
        self._lock = threading.Lock()  # guards the watcher's start; never held across a wait
        self._closed = AEvent()
        self._wakeup = Wakeup()  # ends the watcher's wait for notifications
        self._watcher: Any = None
        self._watcher_pg: Any = None  # the connection of the watcher's refresh, while it runs
        # The last status() answer (the watcher asks after every source write): what metrics
        # report without a statement of their own, even while the database is down.
        self.last_status: Status | None = None
        owned = [
            e for e, owns in ((self._engine, self._owns_engine), (self._replica, self._owns_replica)) if owns
        ]
        self._finalizer = weakref.finalize(
            self, on_collected, self._closed, self._wakeup, owned, type(self).__name__
        )
        self._finalizer.atexit = False

    def _after_fork_in_child(self) -> None:
        """Called in a forked child (refproj._core): the parent's pooled connections, watcher
        and locks are the parent's. Drop them without closing anything (closing would end the
        parent's sessions) and start afresh; the next list() starts this process's watcher."""
        self._finalizer.detach()
        closed = self._closed.is_set()
        for engine in {id(e): e for e in (self._engine, self._replica)}.values():
            apool(engine).dispose(close=False)
        self._start_process_state()
        if closed:
            self._closed.set()

    @property
    def engine(self) -> AsyncEngine:
        """The primary's engine: refreshes, status and the watcher (and reads without a replica)."""
        return self._engine

    @property
    def replica_engine(self) -> AsyncEngine:
        """The engine list() and get() read from: the replica's, else the primary's."""
        return self._replica

    # -- reads -----------------------------------------------------------------------------------

    async def list(self, connector_id: str | None = None, *, at: datetime | None = None) -> Overview:
        """The overview (every visible connection, or one connector's), from stored evidence:
        an ``Overview`` of ``OverviewRow``s, read-only and shared with concurrent callers.
        Freshness and health are computed for ``at`` (default: the database's now()).
        Raises ``InvalidArgument`` for a bad connector id or read time."""
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
        statement (and the reuse window) with ``list()`` calls of the same arguments; raises as it."""
        params = _core.overview_params(connector_id, at)
        self._ensure_watcher()
        return await self._reads.do(
            (connector_id, at), lambda: self._one("overview", params, _core.overview_answer, replica=True)
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
                "overview_page",
                params,
                lambda row: OverviewPage.from_row(row, connector_id, limit, after),
                replica=True,
            ),
        )

    async def get(self, connection: str, *, run_limit: int = 20, at: datetime | None = None) -> Detail:
        """Live detail of one connection, by connection id or by a connector id with exactly one
        visible connection. Never served from a cache; the caller's own dict.

        ``run_limit``: at most this many ``recent_runs`` (0 to 2**31 - 1). Raises
        ``ConnectionNotFound``, ``AmbiguousConnection`` (``candidate_ids``), ``InvalidArgument``.
        """
        params = _core.detail_params(connection, run_limit, at)
        return await self._one(
            "detail", params, lambda row: _core.detail_answer(connection, row), replica=True
        )

    async def get_json(self, connection: str, *, run_limit: int = 20, at: datetime | None = None) -> str:
        """``get()``'s detail as the JSON text the database serialised, unparsed: in the same form
        as the overview's ``json_text`` (the HTTP service sends it as is). Raises as ``get()``."""
        params = _core.detail_params(connection, run_limit, at)
        return await self._one("detail", params, lambda row: _core.detail_text(connection, row), replica=True)

    def stats(self) -> dict[str, int]:
        """Counters for metrics: ``coalesced_reads`` (overview reads answered by another read's
        statement, joined or reused, since creation); ``pool_in_use`` (connections checked out now)."""
        pool: Any = self._engine.pool
        return {
            "coalesced_reads": self._reads.joined + self._pages.joined,
            "pool_in_use": int(pool.checkedout()) if hasattr(pool, "checkedout") else 0,
        }

    async def status(self) -> Status:
        """How current the stored overview is: a ``Status`` (one statement, never cached)."""
        status: Status = await self._one("status", {}, _core.status_answer)
        self.last_status = status
        return status

    # -- refresh ---------------------------------------------------------------------------------

    async def refresh(self, *, full: bool = False) -> RefreshResult:
        """Return once a refresh (``full``: a full rebuild, for writes no trigger saw) that started
        after this call has committed. Read-your-writes across callers and processes: the database
        function orders callers by tickets (sql/projection/17_refresh.sql); in process, callers join
        a pending call only while its leader still waits for a pooled connection, before the call
        draws its ticket, so joining never weakens the guarantee. Returns a ``RefreshResult``:
        ``refreshed`` (this call's statement ran it, else it shared one), ``as_of`` (that refresh's
        snapshot), ``refresh_ms``. Raises ``StatementCanceled`` past ``refresh_timeout`` (the served
        overview stays as it was), ``ReadOnlyServer`` on a standby, ``InvalidArgument`` when
        ``full`` is not True or False."""
        key = _REFRESH_FULL if _core.check_flag("full", full) else _REFRESH
        result = await self._refreshes.do(key, lambda: self._refresh(key))
        self._forget_reads()
        return result

    async def verify(self) -> _core.Differences:
        """The rows of ``refproj.verify_projection()`` as dicts with keys ``connector_instance_id``,
        ``overview`` (the view or ``trigger``), ``difference`` (missing, unexpected, differs, ...),
        ``fields`` (a list): empty when the overview is exact (docs in the function's comment)."""
        return await self._one("verify", {}, _core.verify_answer)

    async def _refresh(self, key: str | None, unbounded: bool = False) -> RefreshResult:
        """One refresh (``key``: an explicit one's single-flight key; None: the watcher's, only if a
        write is pending), once more on a fresh connection when the pooled one was dead before its
        first statement answered (closed while idle: idle_session_timeout, a load balancer, a
        failover). A connection lost after that may have been mid-refresh: the caller's error."""
        progress = _core.Progress()
        try:
            return await self._refresh_on_a_connection(key, progress, unbounded)
        except ConnectionLost:
            if progress.reached_server:
                raise
            return await self._refresh_on_a_connection(key, progress, unbounded)

    async def _refresh_on_a_connection(
        self, key: str | None, progress: _core.Progress, unbounded: bool = False
    ) -> RefreshResult:
        async with self._connection() as pg:
            if key is not None:
                self._refreshes.forget(key)
            else:
                self._watcher_pg = pg  # close() cancels the watcher's refresh through it
            try:
                async with pg.transaction():
                    await pg.execute(QUERIES["read_committed"])
                    limit = {"milliseconds": "0" if unbounded else self._refresh_timeout_ms}
                    await pg.execute(QUERIES["refresh_timeout"], limit)
                    progress.reached_server = True
                    params = {"only_if_changed": key is None, "full": key == _REFRESH_FULL}
                    cursor = await pg.execute(QUERIES["refresh"], params)
                    row = await cursor.fetchone()
            finally:
                if key is None:
                    self._watcher_pg = None
        assert row is not None
        return _core.refresh_answer(row)

    # -- automatic freshness (refproj/watcher_async.py) --------------------------------------------

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise ProjectionClosed(f"this {type(self).__name__} was closed; create a new one")

    def _ensure_watcher(self) -> None:
        self._check_open()  # also before a read answered from the reuse window
        if self._staleness_bound is not None and self._watcher is None and not self._closed.is_set():
            start(self, _core.watch_interval(self._staleness_bound, self._read_reuse))

    def _forget_reads(self) -> None:
        """The next reads go to the database: the stored overview changed."""
        self._reads.forget()
        self._pages.forget()

    # -- plumbing --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the watcher and close the pools of the engines this object created. Returns
        promptly: a refresh the watcher is running is cancelled on the server (the database keeps
        the previous overview), not waited for."""
        self._finalizer.detach()
        await stop(self)
        if self._owns_engine:
            await self._engine.dispose()
        if self._owns_replica:
            await self._replica.dispose()

    async def __aenter__(self) -> AsyncProjection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _one(
        self,
        query: str,
        params: dict[str, Any],
        answer: Callable[[tuple[Any, ...]], T],
        *,
        replica: bool = False,
    ) -> T:
        """One read statement, in autocommit mode (a single round trip), and its answer. Reads
        are idempotent: when the pooled connection turned out dead (say, after a database
        restart), one more try on a fresh connection is safe."""
        try:
            return answer(await self._fetch(query, params, replica))
        except ConnectionLost:
            return answer(await self._fetch(query, params, replica))

    async def _fetch(self, query: str, params: dict[str, Any], replica: bool) -> tuple[Any, ...]:
        settings = self._replica_settings if replica else self._settings
        async with self._connection(self._replica if replica else self._engine) as pg:
            if settings is None:
                cursor = await pg.execute(QUERIES[query], params)
            else:
                # One round trip, one implicit transaction: the settings hold for this read only.
                async with pg.pipeline() as pipeline, _core.quiet_when_lost(pipeline):
                    await pg.execute(QUERIES["session_settings"], settings)
                    cursor = await pg.execute(QUERIES[query], params)
            row: tuple[Any, ...] | None = await cursor.fetchone()
        assert row is not None
        return row

    @asynccontextmanager
    async def _connection(
        self, engine: AsyncEngine | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The psycopg connection under a pooled SQLAlchemy connection, in autocommit mode;
        pool and driver errors as ``RefprojError``s. Statements go to psycopg directly, not
        through SQLAlchemy: when an interrupted statement is cancelled, psycopg cancels it on the
        server and the connection returns to the pool, where SQLAlchemy would discard it."""
        engine = self._engine if engine is None else engine
        self._check_open()
        try:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                pg = await adriver(conn)
                try:
                    yield pg
                except psycopg.Error as error:
                    if pg.broken:
                        await conn.invalidate()
                        lost = _core.to_refproj_error(error, engine.url)
                        raise ConnectionLost(str(lost)) from error
                    raise
        except (exc.SQLAlchemyError, psycopg.Error) as error:
            raise _core.to_refproj_error(error, engine.url) from error


def _engine(database: str | URL | AsyncEngine | None, options: _core.Options) -> tuple[AsyncEngine, bool]:
    """The engine for ``database`` and whether this object owns it (created it from a URL)."""
    if isinstance(database, AsyncEngine):
        return database, False
    url = database_url(database, default=None)
    return create_async_engine(url, **options.engine_options(url)), True
