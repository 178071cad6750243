"""Single flight: concurrent calls with the same key share one execution and its outcome.

Modelled on Go's golang.org/x/sync/singleflight, plus a short reuse window: a successful result
may be served again for ``reuse_seconds`` after it completed. A failure is never reused: every
caller waiting on it gets the error, and the next call runs again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class _Call(Generic[V]):
    __slots__ = ("done", "error", "finished_at", "sharers", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None
        self.finished_at = 0.0
        self.sharers = 0

    def outcome(self) -> V:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class SingleFlight(Generic[V]):
    def __init__(self, reuse_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._reuse = reuse_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call[V]] = {}

    def do(self, key: Hashable, fn: Callable[[], V]) -> V:
        """Run ``fn`` unless a call for ``key`` is in flight or fresh enough; share its outcome."""
        with self._lock:
            call = self._calls.get(key)
            if call is None or (call.done.is_set() and self._clock() - call.finished_at >= self._reuse):
                call = self._calls[key] = _Call()
                leader = True
            else:
                call.sharers += 1
                leader = False
        if not leader:
            return call.outcome()
        try:
            call.value = fn()
        except BaseException as error:
            call.error = error
        finally:
            with self._lock:
                call.finished_at = self._clock()
                if (call.error is not None or self._reuse <= 0) and self._calls.get(key) is call:
                    del self._calls[key]
            call.done.set()
        return call.outcome()

    def sharers(self, key: Hashable) -> int:
        """How many callers joined the current call for ``key`` instead of running their own."""
        with self._lock:
            call = self._calls.get(key)
            return 0 if call is None else call.sharers

    def forget(self, key: Hashable | None = None) -> None:
        """Stop reusing the result for ``key`` (every key when None); calls in flight finish."""
        with self._lock:
            if key is None:
                self._calls = {k: c for k, c in self._calls.items() if not c.done.is_set()}
            elif (call := self._calls.get(key)) is not None and call.done.is_set():
                del self._calls[key]
