"""The single-flight rules, in both flavours, without a database (refproj/singleflight.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from refproj.singleflight import AsyncSingleFlight, SingleFlight
from tests.world import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_async_waiters_share_one_run_and_its_error_which_is_never_reused() -> None:
    flights: AsyncSingleFlight[int] = AsyncSingleFlight(reuse_seconds=1.0)
    release = asyncio.Event()
    runs = 0

    async def failing() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        raise KeyError("boom")

    callers = [asyncio.create_task(flights.do("k", failing)) for _ in range(3)]
    while flights.sharers("k") < 2:
        await asyncio.sleep(0)
    release.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert runs == 1
    assert all(isinstance(o, KeyError) for o in outcomes) and outcomes[0] is outcomes[1] is outcomes[2]

    async def succeeding() -> int:
        nonlocal runs
        runs += 1
        return 7

    assert await flights.do("k", succeeding) == 7  # the failure was not reused
    assert runs == 2


async def test_async_reuse_window_and_forget() -> None:
    clock = Clock()
    flights: AsyncSingleFlight[int] = AsyncSingleFlight(reuse_seconds=0.5, clock=clock)
    runs = 0

    async def run() -> int:
        nonlocal runs
        runs += 1
        return runs

    assert await flights.do("k", run) == 1
    clock.now += 0.4
    assert await flights.do("k", run) == 1  # reused within the window
    clock.now += 0.1
    assert await flights.do("k", run) == 2  # expired
    flights.forget("k")
    assert await flights.do("k", run) == 3
    assert await flights.do("other", run) == 4  # keys are separate


async def test_async_forget_stops_joining_a_call_in_flight() -> None:
    flights: AsyncSingleFlight[int] = AsyncSingleFlight()
    release = asyncio.Event()
    runs = 0

    async def run() -> int:
        nonlocal runs
        runs += 1
        mine = runs
        await release.wait()
        return mine

    first = asyncio.create_task(flights.do("k", run))
    while runs < 1:
        await asyncio.sleep(0)
    flights.forget("k")  # e.g. a refresh committed: later readers must not join the older read
    second = asyncio.create_task(flights.do("k", run))
    while runs < 2:
        await asyncio.sleep(0)
    release.set()
    assert (await first, await second) == (1, 2)


async def test_async_cancelling_some_waiters_keeps_the_run_and_all_cancels_it() -> None:
    flights: AsyncSingleFlight[str] = AsyncSingleFlight()
    release = asyncio.Event()
    started = 0
    cancelled = 0

    async def run() -> str:
        nonlocal started, cancelled
        started += 1
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return "done"

    callers = [asyncio.create_task(flights.do("k", run)) for _ in range(3)]
    while flights.sharers("k") < 2:
        await asyncio.sleep(0)
    callers[0].cancel()
    callers[1].cancel()
    await asyncio.gather(callers[0], callers[1], return_exceptions=True)
    assert callers[0].cancelled() and callers[1].cancelled() and cancelled == 0
    release.set()
    assert await callers[2] == "done"
    assert started == 1

    release.clear()
    callers = [asyncio.create_task(flights.do("k", run)) for _ in range(2)]
    while flights.sharers("k") < 1:
        await asyncio.sleep(0)
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    while cancelled < 1:  # the run itself is cancelled once nobody waits
        await asyncio.sleep(0)
    assert flights.sharers("k") == 0
    release.set()
    assert await flights.do("k", run) == "done"  # a new run, not the cancelled one
    assert started == 3


def test_threads_share_one_run_and_its_error() -> None:
    flights: SingleFlight[int] = SingleFlight()
    release = threading.Event()
    runs = 0
    outcomes: list[BaseException | int] = []

    def failing() -> int:
        nonlocal runs
        runs += 1
        release.wait()
        raise KeyError("boom")

    def call() -> None:
        try:
            outcomes.append(flights.do("k", failing))
        except KeyError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: flights.sharers("k") == 3, what="three callers to join")
    release.set()
    for thread in threads:
        thread.join()
    assert runs == 1 and len(outcomes) == 4
    assert all(o is outcomes[0] for o in outcomes) and isinstance(outcomes[0], KeyError)
    with pytest.raises(KeyError):
        flights.do("k", failing)  # not reused: it ran again (and failed again)
    assert runs == 2
