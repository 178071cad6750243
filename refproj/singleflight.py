"""Single flight: concurrent calls with the same key share one execution and its outcome.

Modelled on Go's golang.org/x/sync/singleflight (``do`` and ``forget``), plus a short reuse
window: a successful result may be served again for ``reuse_seconds`` after it completed. A
failure is never reused: every caller waiting on it gets the error, and the next call runs again.

The rules live once, in ``_Flights`` (which call a new caller joins, when a finished call stops
being served); ``SingleFlight`` runs the leader's function in the leader's thread and
``AsyncSingleFlight`` runs it as an asyncio task that is cancelled when every caller awaiting it
has been cancelled (a shared statement keeps running while anyone still waits).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class _Call(Generic[V]):
    __slots__ = ("done", "error", "finished", "finished_at", "sharers", "task", "value", "waiters")

    def __init__(self) -> None:
        self.finished = False
        self.value: V | None = None
        self.error: BaseException | None = None
        self.finished_at = 0.0
        self.sharers = 0  # callers that joined instead of running their own call
        self.done = threading.Event()  # sync flavour: set when finished
        self.task: asyncio.Task[V] | None = None  # async flavour: the running function
        self.waiters = 0  # async flavour: callers currently awaiting the task

    def outcome(self) -> V:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class _Flights(Generic[V]):
    """The bookkeeping both flavours share; every method is short and never blocks or awaits."""

    def __init__(self, reuse_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._reuse = reuse_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call[V]] = {}
        self.joined = 0  # callers that shared a call instead of running their own, ever

    def _join(self, key: Hashable) -> tuple[_Call[V], bool]:
        """The call for ``key`` a caller shares, and whether the caller must lead (run) it."""
        with self._lock:
            call = self._calls.get(key)
            if call is None or (call.finished and self._clock() - call.finished_at >= self._reuse):
                call = self._calls[key] = _Call()
                return call, True
            call.sharers += 1
            self.joined += 1
            return call, False

    def _finish(self, key: Hashable, call: _Call[V], value: V | None, error: BaseException | None) -> None:
        with self._lock:
            call.value, call.error = value, error
            call.finished, call.finished_at = True, self._clock()
            if (error is not None or self._reuse <= 0) and self._calls.get(key) is call:
                del self._calls[key]

    def sharers(self, key: Hashable) -> int:
        """How many callers joined the current call for ``key`` instead of running their own."""
        with self._lock:
            call = self._calls.get(key)
            return 0 if call is None else call.sharers

    def forget(self, key: Hashable | None = None) -> None:
        """Go's Forget: the next call for ``key`` (every key when None) runs anew instead of
        joining or reusing; callers already sharing a call in flight still get its outcome."""
        with self._lock:
            if key is None:
                self._calls.clear()
            else:
                self._calls.pop(key, None)


class SingleFlight(_Flights[V]):
    """Thread flavour: the first caller runs ``fn`` in its own thread, the others wait for it."""

    def do(self, key: Hashable, fn: Callable[[], V]) -> V:
        """Run ``fn`` unless a call for ``key`` is in flight or fresh enough; share its outcome."""
        call, leader = self._join(key)
        if leader:
            value: V | None = None
            error: BaseException | None = None
            try:
                value = fn()
            except BaseException as raised:
                error = raised
            finally:
                self._finish(key, call, value, error)
                call.done.set()
        else:
            call.done.wait()
        return call.outcome()


class AsyncSingleFlight(_Flights[V]):
    """asyncio flavour: ``fn()`` runs as a task that every caller awaits (``asyncio.shield``), so
    one caller's cancellation leaves the others served; when the last caller still awaiting is
    cancelled, the task is cancelled too (psycopg then cancels its statement on the server)."""

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[V]]) -> V:
        """Await ``fn()`` unless a call for ``key`` is in flight or fresh enough; share its outcome."""
        call, leader = self._join(key)
        if leader:
            call.task = asyncio.ensure_future(fn())
            call.task.add_done_callback(lambda task: self._finish_task(key, call, task))
        task = call.task
        assert task is not None
        if call.finished:
            return call.outcome()
        call.waiters += 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                call.waiters -= 1
                if call.waiters == 0:
                    self.forget_call(key, call)
                    task.cancel()
            raise
        finally:
            if task.done():
                call.waiters -= 1

    def _finish_task(self, key: Hashable, call: _Call[V], task: asyncio.Task[V]) -> None:
        if task.cancelled():
            self._finish(key, call, None, asyncio.CancelledError())
        elif (error := task.exception()) is not None:
            self._finish(key, call, None, error)
        else:
            self._finish(key, call, task.result(), None)

    def forget_call(self, key: Hashable, call: _Call[V]) -> None:
        """Stop new callers joining ``call`` (and only that call) for ``key``."""
        with self._lock:
            if self._calls.get(key) is call:
                del self._calls[key]
