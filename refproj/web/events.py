"""One ``LISTEN refproj_refreshed`` per process, fanned out to every event-stream subscriber.

Each refresh that ran sends ``NOTIFY refproj_refreshed`` with ``{"as_of", "refresh_ms"}`` at
commit (sql/projection/10_refresh.sql), whichever process or psql session ran it. This process
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

log = logging.getLogger(__name__)

CHANNEL = "refproj_refreshed"


@dataclass(frozen=True)
class Refreshed:
    as_of: str  # ISO-8601, UTC
    refresh_ms: float


class Subscription:
    """The newest refresh a subscriber has not taken yet."""

    def __init__(self) -> None:
        self._pending: Refreshed | None = None
        self._ready = asyncio.Event()

    def offer(self, event: Refreshed) -> None:
        self._pending = event
        self._ready.set()

    async def next(self) -> Refreshed:
        await self._ready.wait()
        self._ready.clear()
        event, self._pending = self._pending, None
        assert event is not None
        return event


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
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
                    self.connections_opened += 1
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    async for notice in conn.notifies():
                        self._dispatch(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database went away: subscribers wait, we reconnect
                log.warning("refproj listener: %s; reconnecting in %.1f s", error, self._retry)
            finally:
                self.listening.clear()
            await asyncio.sleep(self._retry)

    def _dispatch(self, payload: str) -> None:
        try:
            data = orjson.loads(payload)
            as_of = datetime.fromisoformat(str(data["as_of"])).astimezone(UTC).isoformat()
            event = Refreshed(as_of=as_of, refresh_ms=float(data["refresh_ms"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("refproj listener: ignoring payload %r", payload[:200])
            return
        if self._on_refresh is not None:
            self._on_refresh(event)
        for subscription in list(self._subscribers):
            subscription.offer(event)
