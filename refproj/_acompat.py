"""asyncio flavour of the few waiting primitives the twins use (see refproj/_compat.py).

tools/async_to_sync.py maps each name here to its namesake without the ``a``/``A`` prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class AEvent(asyncio.Event):
    async def wait_timeout(self, timeout: float) -> bool:
        """Wait until set or ``timeout`` seconds passed; whether it is set."""
        try:
            async with asyncio.timeout(timeout):
                await self.wait()
        except TimeoutError:
            pass
        return self.is_set()


def aspawn(fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> asyncio.Task[None]:
    """Run ``fn()`` in the background: a task of the running event loop."""
    return asyncio.create_task(fn(), name=name)


async def ajoin(task: asyncio.Task[None], timeout: float) -> None:
    """Wait for the task to end, at most ``timeout`` seconds; then cancel it and wait for that
    (psycopg cancels a statement in flight on the server)."""
    if task.done() or asyncio.current_task() is task:
        return
    _, pending = await asyncio.wait({task}, timeout=timeout)
    if pending:
        task.cancel()
        await asyncio.wait({task})


def arelease(engine: AsyncEngine) -> None:
    """Drop an engine's pooled connections without awaiting anything (a garbage-collection
    finalizer cannot await): each psycopg connection closes its session as it is collected."""
    engine.sync_engine.dispose(close=False)


def apool(engine: AsyncEngine) -> Engine:
    """The synchronous engine that owns the pool."""
    return engine.sync_engine


async def adriver(conn: AsyncConnection) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under a pooled SQLAlchemy connection."""
    raw = await conn.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    return driver


async def adetached(engine: AsyncEngine) -> psycopg.AsyncConnection[Any]:
    """A psycopg connection of the engine (pooled or new, opened as the engine opens its own),
    taken out of the pool for good: the caller closes it. Its SQLAlchemy wrapper is dropped
    unclosed, since closing it would close the connection."""
    conn = await engine.connect()
    raw = await conn.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    raw.detach()  # (after which the pool entry no longer knows its driver connection)
    return driver
