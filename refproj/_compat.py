"""Thread flavour of the few waiting primitives the twins use (see refproj/_acompat.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy.engine import Connection, Engine


class Event(threading.Event):
    def wait_timeout(self, timeout: float) -> bool:
        """Wait until set or ``timeout`` seconds passed; whether it is set."""
        return self.wait(timeout)


def spawn(fn: Callable[[], None], name: str) -> threading.Thread:
    """Run ``fn()`` in the background: a daemon thread."""
    thread = threading.Thread(target=fn, name=name, daemon=True)
    thread.start()
    return thread


def join(thread: threading.Thread, timeout: float) -> None:
    """Wait for the thread to end, at most ``timeout`` seconds (a thread cannot be cancelled;
    the caller cancels its statement first)."""
    if thread is not threading.current_thread():
        thread.join(timeout)


def release(engine: Engine) -> None:
    """Close an engine's pooled connections (from a garbage-collection finalizer)."""
    engine.dispose()


def pool(engine: Engine) -> Engine:
    """The synchronous engine that owns the pool: the engine itself."""
    return engine


def driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a pooled SQLAlchemy connection."""
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    return driver


def detached(engine: Engine) -> psycopg.Connection[Any]:
    """A psycopg connection of the engine (pooled or new, opened as the engine opens its own),
    taken out of the pool for good: the caller closes it."""
    raw = engine.raw_connection()
    driver: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
    raw.detach()  # (after which the pool entry no longer knows its driver connection)
    return driver
