"""One ``LISTEN refproj_refreshed`` per process, fanned out to every event-stream subscriber.

Each refresh that ran sends ``NOTIFY refproj_refreshed`` with ``{"as_of", "refresh_ms"}`` at
commit (sql/projection/17_refresh.sql), whichever process or psql session ran it. This process
holds one dedicated connection listening on that channel, whatever the number of subscribers,
and hands each notification to every subscriber. A subscriber only needs the newest ``as_of``
(each event means "the overview changed, fetch it again"), so a slow subscriber keeps one
pending value, never a growing queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import psycopg

from refproj.errors import first_line, mask_secrets

log = logging.getLogger(__name__)

CHANNEL = "refproj_refreshed"

#: The listening connection's application_name, to find it in pg_stat_activity.
APPLICATION_NAME = "refproj events"

#: The longest the listener waits between reconnection attempts (seconds).
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class Refreshed:
    as_of: str  # ISO-8601, UTC
    refresh_ms: float


class Subscription:
    """The newest refresh a subscriber has not taken yet."""

    def __init__(self) -> None:
        self._pending: Refreshed | None = None
        self._ready = asyncio.Event()
        self._closed = False

    def offer(self, event: Refreshed) -> None:
        self._pending = event
        self._ready.set()

    def close(self) -> None:
        """The server is shutting down: ``next()`` returns None from now on."""
        self._closed = True
        self._ready.set()

    async def next(self) -> Refreshed | None:
        await self._ready.wait()
        self._ready.clear()
        event, self._pending = self._pending, None
        return None if self._closed else event


class Listener:
    """Keeps one listening connection while the app runs; reconnects after failures."""

    def __init__(
        self,
        conninfo: str,
        *,
        on_refresh: Callable[[Refreshed], None] | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        self._conninfo = conninfo
        self._on_refresh = on_refresh
        self._retry = retry_seconds
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while LISTEN is in effect (tests wait for it)
        self.connections_opened = 0
        self.waits: list[float] = []  # the waits of the current run of failures (tests read them)
        self.last_as_of: str | None = None  # the as_of of the last event delivered (or first read)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="refproj-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        subscription = Subscription()
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def _run(self) -> None:
        failures = 0
        failing: str | None = None  # the kind of failure last logged; None while connected
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name=APPLICATION_NAME
                ) as conn:
                    self.connections_opened += 1
                    await conn.execute(f"LISTEN {CHANNEL}")
                    # A refresh committed while no LISTEN was in effect sent its NOTIFY to nobody:
                    # read the as_of now (after LISTEN, so nothing falls in between) and catch up.
                    cursor = await conn.execute("SELECT as_of FROM refproj.projection_status()")
                    row = await cursor.fetchone()
                    if row is not None and row[0] is not None:
                        self._catch_up(_iso(row[0]))
                    self.listening.set()
                    if failing is not None:
                        log.warning("refproj listener: listening again after %d failed attempts", failures)
                    failures, failing, self.waits = 0, None, []
                    async for notice in conn.notifies():
                        self._dispatch(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database went away: subscribers wait, we reconnect
                failures += 1
                wait = min(self._retry * 2.0 ** min(failures - 1, 30), MAX_BACKOFF)
                if len(self.waits) < 32:  # bounded, however long the outage
                    self.waits.append(wait)
                if type(error).__name__ != failing:  # one line per change of state, like the watcher
                    failing = type(error).__name__
                    log.warning(
                        "refproj listener: %s (reconnecting with back-off up to %.0f s)",
                        mask_secrets(first_line(error)),
                        MAX_BACKOFF,
                    )
                else:
                    log.debug("refproj listener: still failing, next try in %.1f s: %s", wait, error)
            else:
                wait = self._retry
            finally:
                self.listening.clear()
            await asyncio.sleep(wait)

    def _catch_up(self, as_of: str) -> None:
        if self.last_as_of is None:
            self.last_as_of = as_of  # the first LISTEN: subscribers compare with Last-Event-ID
        elif as_of != self.last_as_of:
            self._deliver(Refreshed(as_of=as_of, refresh_ms=0.0))

    def _dispatch(self, payload: str) -> None:
        try:
            data = orjson.loads(payload)
            as_of = _iso(datetime.fromisoformat(str(data["as_of"])))
            event = Refreshed(as_of=as_of, refresh_ms=float(data["refresh_ms"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("refproj listener: ignoring payload %r", payload[:200])
            return
        if self._on_refresh is not None:
            self._on_refresh(event)
        self._deliver(event)

    def _deliver(self, event: Refreshed) -> None:
        self.last_as_of = event.as_of
        for subscription in list(self._subscribers):
            subscription.offer(event)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()
