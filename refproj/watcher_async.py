"""The watcher of ``AsyncProjection``: keeps ``list()`` within the staleness bound without
anybody calling ``refresh()``.

Every writing transaction on a source table sends ``NOTIFY refproj_source_changed`` at commit,
and every refresh ``NOTIFY refproj_refreshed`` (sql/projection/12_write_notification.sql,
17_refresh.sql). The watcher learns of writes in one of two ways:

- **Listening**, on a direct session: a connection of the primary's engine taken out of its pool
  for good, ``LISTEN``ing on both channels. It checks ``projection_status()`` (and refreshes when
  a write is pending) only when woken by a write, and on a slow heartbeat against a lost
  notification; an idle Projection runs no statement between heartbeats. When the listening
  session drops (a restart, a failover), the watcher reconnects and checks once, since
  notifications sent meanwhile are lost.
- **Polling** ``projection_status()`` every interval, behind a pooler: a transaction-pooling
  PgBouncer hands each transaction to whichever server session is free, so a ``LISTEN`` stays on
  a session that is soon another client's. The watcher tells the two apart by the server
  process: psycopg's backend pid is the one the server announced at connection start, and a
  pooler announces a key of its own, so it differs from ``pg_backend_pid()``.

Either way, while the database fails the watcher backs off (doubling up to
refproj._core.MAX_BACKOFF) and logs once per change of state.

refproj/watcher.py is generated from this module (tools/async_to_sync.py), as refproj/projection.py is.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
import weakref
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import exc

from refproj import _core
from refproj._acompat import AEvent, adetached, ajoin, arelease, aspawn
from refproj.queries import QUERIES

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from refproj.projection_async import AsyncProjection

# The projection module's logger: where these lines were logged before the watcher had a module.
log = logging.getLogger("refproj.projection_async")

#: Seconds between a listening watcher's checks when no notification wakes it.
HEARTBEAT = 30.0

SOURCE_CHANGED = "refproj_source_changed"

# TCP keepalive of the listening session (seconds idle before the first probe, between probes,
# probes): the kernel's probes keep it alive through NATs and load balancers that drop idle
# connections, and a peer gone silently (a failover, a cut link) ends it within about a minute,
# so the watcher reconnects instead of waiting for notifications that cannot come. No statement.
KEEPALIVE = (30, 10, 3)

# How long close() lets the watcher finish before it is cancelled (its statement with it).
_CLOSE_GRACE = 0.5


class Wakeup:
    """The listening session of a watcher, for whoever stops it: ``close()``, the finalizer of a
    Projection dropped without it, maybe from another thread. A thread waiting for notifications
    cannot wait for an event too, so ``stop()`` shuts the session's socket down: the wait returns
    at once and the watcher, seeing it was stopped, closes the connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._stopped = False

    def hold(self, pg: psycopg.AsyncConnection[Any]) -> bool:
        """Record ``pg`` as the session to wake; False when already stopped (close ``pg`` then)."""
        with self._lock:
            if self._stopped:
                return False
            self._fd = pg.pgconn.socket
            return True

    def release(self) -> None:
        """Forget the session (before the watcher closes it, so its descriptor is never reused)."""
        with self._lock:
            self._fd = None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._fd is not None:
                try:
                    with socket.socket(fileno=os.dup(self._fd)) as sock:
                        sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed by the server: the watcher notices by itself
                    pass
                self._fd = None


def start(proj: AsyncProjection, interval: float) -> None:
    """Start the watcher of ``proj``, unless it runs already."""
    with proj._lock:
        if proj._watcher is None:
            ref = weakref.ref(proj)
            closed, wakeup = proj._closed, proj._wakeup
            proj._watcher = aspawn(lambda: watch(ref, closed, wakeup, interval), "refproj-watcher")


async def stop(proj: AsyncProjection) -> None:
    """Stop the watcher promptly: a refresh it is running is cancelled on the server (the
    database keeps the previous overview), not waited for."""
    proj._closed.set()
    proj._wakeup.stop()
    if proj._watcher is None:
        return
    pg = proj._watcher_pg
    if pg is not None:
        try:
            await pg.cancel_safe(timeout=_CLOSE_GRACE)
        except psycopg.Error as error:  # the refresh ends by itself within its timeout
            log.debug("refproj: cancelling the watcher's refresh failed: %s", error)
    await ajoin(proj._watcher, _CLOSE_GRACE)


async def watch(ref: weakref.ref[AsyncProjection], closed: AEvent, wakeup: Wakeup, interval: float) -> None:
    """Run until ``closed`` is set or the Projection is collected.

    It holds its Projection only weakly, and only during a step, so a Projection nobody
    references any more is collected (its finalizer then sets ``closed`` and stops ``wakeup``).
    ``interval`` is the polling period, and while listening the least time between two checks,
    so a burst of writes costs one refresh per interval, as when polling.
    """
    state: str | None = None  # the kind of the last failure; None while all is well
    failures = 0
    listener: psycopg.AsyncConnection[Any] | None = None
    polling = False  # known to be behind a pooler
    last_check = time.monotonic()
    wait = interval
    try:
        while True:
            heard: set[str] | None = None  # channels heard; None: check status anyway
            if listener is not None and failures == 0:
                try:
                    heard = await _notifications(listener, max(HEARTBEAT, interval), stop_after=1)
                    if SOURCE_CHANGED in heard:
                        pause = interval - (time.monotonic() - last_check)
                        if pause > 0 and await closed.wait_timeout(pause):
                            return
                        heard |= await _notifications(listener, 0, stop_after=None)
                    elif not heard:
                        heard = None  # the heartbeat
                except psycopg.Error as error:
                    # Notifications sent while nobody listens are lost: reconnect, check once.
                    await _hang_up(listener, wakeup, error)
                    listener = None
                if closed.is_set():
                    return
            else:
                if await closed.wait_timeout(wait):
                    return
                if listener is not None:
                    # Failing, but still reading what arrived: a listener that never reads holds
                    # the server's notification queue back, and a full queue fails writers' commits.
                    try:
                        await _notifications(listener, 0, stop_after=None)
                    except psycopg.Error as error:
                        await _hang_up(listener, wakeup, error)
                        listener = None
            proj = ref()
            if proj is None:
                return
            try:
                if listener is None and not polling:
                    listener = await _listen(proj)
                    polling = listener is None
                    if listener is not None and not wakeup.hold(listener):
                        return
                if heard is not None and SOURCE_CHANGED not in heard:
                    proj._forget_reads()  # another process refreshed: no statement needed
                else:
                    last_check = time.monotonic()
                    await _catch_up(proj)
            except Exception as error:  # readers keep being served; the watcher tries again later
                if closed.is_set():
                    # close() cancelled this step (a refresh waiting for a lock): nothing to retry.
                    log.debug("refproj watcher: stopped during a check: %s", error)
                    return
                failures += 1
                wait = _core.backoff(interval, failures)
                kind = _core.failure_kind(error)
                if kind != state:
                    log.warning(
                        "refproj watcher: %s (retrying with back-off up to %.0f s)", error, _core.MAX_BACKOFF
                    )
                    state = kind
                else:
                    log.debug("refproj watcher: still failing, next try in %.2f s: %s", wait, error)
            else:
                if state is not None:
                    log.warning(
                        "refproj watcher: the database answers again after %d failed checks", failures
                    )
                state, failures, wait = None, 0, interval
            finally:
                del proj
    finally:
        if listener is not None:
            wakeup.release()
            await listener.close()


async def _hang_up(listener: psycopg.AsyncConnection[Any], wakeup: Wakeup, error: psycopg.Error) -> None:
    """Close a listening session that failed; the watcher reconnects at its next step."""
    log.debug("refproj watcher: the listening session ended: %s", error)
    wakeup.release()
    await listener.close()


async def _catch_up(proj: AsyncProjection) -> None:
    """The watcher's step: refresh when a source write is pending."""
    status = await proj.status()
    if status.source_changed:
        # A first build after install scans all history: a timeout would only roll it back.
        result = await proj._refresh(None, unbounded=status.building)
        if result.refreshed:
            proj._forget_reads()


async def _listen(proj: AsyncProjection) -> psycopg.AsyncConnection[Any] | None:
    """A direct session of the primary listening on the watcher's channels, or None behind a
    pooler or where LISTEN is refused (a hot standby): the watcher polls then.

    The session is one of the engine's own, opened as the engine opens its sessions, then taken
    out of its pool for good; the watcher closes it."""
    try:
        pg = await adetached(proj.engine)
    except (exc.SQLAlchemyError, psycopg.Error) as error:
        raise _core.to_refproj_error(error, proj.engine.url) from error
    try:
        await pg.set_autocommit(True)
        cursor = await pg.execute(QUERIES["backend_pid"])
        row = await cursor.fetchone()
        if row is None or row[0] != pg.info.backend_pid:
            await pg.close()
            return None
        await pg.execute(QUERIES["listen"])
        _keep_alive(pg.pgconn.socket)
    except psycopg.Error as error:
        await pg.close()
        if isinstance(error, psycopg.OperationalError):
            raise _core.to_refproj_error(error, proj.engine.url) from error
        log.info("refproj watcher: cannot LISTEN here (%s); polling instead", error)
        return None
    return pg


async def _notifications(
    pg: psycopg.AsyncConnection[Any], timeout: float, stop_after: int | None
) -> set[str]:
    """The channels of the notifications that arrive within ``timeout`` seconds (up to
    ``stop_after`` of them, and whatever came in the same packet)."""
    return {note.channel async for note in pg.notifies(timeout=timeout, stop_after=stop_after)}


def on_collected(closed: AEvent, wakeup: Wakeup, engines: list[AsyncEngine], name: str) -> None:
    """Finalizer of a Projection dropped without close(): stop its watcher, free its pools."""
    closed.set()
    wakeup.stop()
    for engine in engines:
        arelease(engine)
    warnings.warn(
        f"a {name} was garbage-collected without close(): its connections are closed and its watcher"
        " stopped now; call close() or use it as a context manager",
        ResourceWarning,
        stacklevel=1,
    )


def _keep_alive(fd: int) -> None:
    """TCP keepalive on the session's socket (KEEPALIVE); nothing on a Unix-domain socket."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    names = ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")  # Linux; macOS has TCP_KEEPALIVE
    options += [
        (socket.IPPROTO_TCP, getattr(socket, name), value)
        for name, value in zip(names, KEEPALIVE, strict=True)
        if hasattr(socket, name)
    ]
    with socket.socket(fileno=os.dup(fd)) as sock:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        for level, option, value in options:
            try:
                sock.setsockopt(level, option, value)
            except OSError as error:  # best effort: the heartbeat still bounds a lost session
                log.debug("refproj watcher: cannot set TCP keepalive option %s: %s", option, error)
