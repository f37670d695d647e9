"""Pacing of simulated devices: simulated seconds against a clock at N times real time."""

from __future__ import annotations

from roommon.core.clock import Clock


class Pacer:
    """Deadlines for consecutive simulated steps at ``speed`` x real time on ``clock``.

    Deadlines are absolute (``start + k * step / speed``) so the pace does not
    drift. ``catch_up`` decides what a stall (a broker outage, a receiver
    reading slower than the device writes) means: with it, the missed steps
    are then produced as fast as possible, keeping simulated time locked to
    the clock (right when the data carries its own time stamps, as MQTT
    payloads do); without it, the pace restarts from now (right when the
    receiver stamps data on arrival, as serial hosts do, where a burst would
    squeeze time).
    """

    __slots__ = ("_catch_up", "_clock", "_next", "_step", "speed")

    def __init__(self, *, clock: Clock, speed: float, step_s: float, catch_up: bool) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        if step_s <= 0:
            raise ValueError(f"step_s must be > 0, got {step_s}")
        self.speed = speed
        self._clock = clock
        self._step = step_s
        self._catch_up = catch_up
        self._next = clock.monotonic()

    async def wait(self) -> None:
        """Wait until the end of the next step (only a yield at speed 0)."""
        if self.speed == 0:
            await self._clock.sleep(0)
            return
        interval = self._step / self.speed
        self._next += interval
        now = self._clock.monotonic()
        if not self._catch_up and now - self._next > interval:
            self._next = now
        await self._clock.sleep_until(self._next)
