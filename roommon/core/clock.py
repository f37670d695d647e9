"""Time for every component: "now" and waiting both go through a :class:`Clock`.

No other module reads the wall clock or calls ``asyncio.sleep`` for timing.
:class:`RealClock` is used by the daemon; :class:`VirtualClock` is advanced
explicitly by tests, replay and the fast demo, so a three-hour recovery runs
in seconds and every run is repeatable.

Two readings are offered: ``now()`` is UTC epoch seconds (for timestamps on
messages and absolute deadlines) and ``monotonic()`` is for intervals. On the
virtual clock they move together; on the real clock a wall-clock jump moves
``now()`` but not ``monotonic()``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


def iso(t: float) -> str:
    """UTC epoch seconds as ISO 8601 with milliseconds."""
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds")


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """UTC time as epoch seconds."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    async def sleep_until(self, monotonic_deadline: float) -> None:
        """Wait until ``monotonic()`` reaches ``monotonic_deadline``."""
        ...

    def call_at(self, monotonic_deadline: float, callback: Callable[[], None]) -> Cancellable:
        """Call ``callback`` from the event loop when ``monotonic()`` reaches the deadline.

        Where a sleeping task would resume a turn of the loop after its timer, and wake
        another task a turn after that, a callback runs in the timer's own turn: on a
        busy daemon each turn is a slice of input work (the deadline task's alarms).
        """
        ...


class Cancellable(Protocol):
    def cancel(self) -> object: ...


class RealClock:
    """The system clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, monotonic_deadline: float) -> None:
        await asyncio.sleep(max(0.0, monotonic_deadline - time.monotonic()))

    def call_at(self, monotonic_deadline: float, callback: Callable[[], None]) -> Cancellable:
        loop = asyncio.get_running_loop()
        # The loop's own clock is monotonic too, but not necessarily time.monotonic().
        return loop.call_at(loop.time() + (monotonic_deadline - time.monotonic()), callback)


class VirtualClock:
    """A clock that only moves when told to.

    ``await clock.advance(dt)`` moves time forward, waking each sleeper at its
    own deadline in order and letting the event loop run the woken tasks
    before time moves on, so timers fire in the same order as on a real clock.
    """

    __slots__ = ("_epoch", "_seq", "_sleepers", "_t")

    def __init__(self, *, start: float = 1_767_225_600.0) -> None:
        # Default start: 2026-01-01T00:00:00Z, so timestamps look real in logs.
        self._epoch = start
        self._t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._epoch + self._t

    def monotonic(self) -> float:
        return self._t

    def jump_wall(self, seconds: float) -> None:
        """Move ``now()`` (the wall reading) without moving ``monotonic()``."""
        self._epoch += seconds

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._t + max(0.0, seconds))

    async def sleep_until(self, monotonic_deadline: float) -> None:
        if monotonic_deadline <= self._t:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (monotonic_deadline, next(self._seq), fut))
        await fut

    def call_at(self, monotonic_deadline: float, callback: Callable[[], None]) -> Cancellable:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: None if f.cancelled() else callback())
        if monotonic_deadline <= self._t:
            fut.set_result(None)
        else:
            heapq.heappush(self._sleepers, (monotonic_deadline, next(self._seq), fut))
        return fut

    @property
    def pending(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def settle(self, rounds: int = 20) -> None:
        """Let ready tasks run without moving time."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float, *, rounds: int = 20) -> None:
        """Move time forward by ``seconds``, firing timers in deadline order.

        After each timer the event loop turns ``rounds`` times before time moves on: a
        test can ask for none and turn the loop itself, to show that what a timer starts
        is done within so many turns (each turn of a busy daemon is a slice of work).
        """
        target = self._t + seconds
        await self.settle(rounds)
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            if fut.done():  # the sleeper was cancelled
                continue
            self._t = max(self._t, deadline)
            fut.set_result(None)
            await self.settle(rounds)
        self._t = target
        await self.settle(rounds)

    async def run_for(self, seconds: float, *, step: float = 1.0) -> None:
        """Advance in steps of ``step`` (lets periodic producers interleave)."""
        end = self._t + seconds
        while self._t + step < end:
            await self.advance(step)
        await self.advance(end - self._t)
