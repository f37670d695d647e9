"""A room output that keeps what a room publishes, for tests without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from roommon.alerts.engine import Outgoing
from roommon.wire.payloads import AlarmEventMessage, RoomEventMessage, RoomStateMessage
from roommon.wire.timer import TimerEventMessage, TimerMessage


class CaptureOutput:
    """A RoomOutput that keeps everything a pipeline publishes, for assertions."""

    def __init__(self) -> None:
        self.outgoing: list[Outgoing] = []
        self.room_events: list[RoomEventMessage] = []
        self.states: list[RoomStateMessage] = []
        self.timer_messages: list[TimerEventMessage] = []
        self.timers: list[TimerMessage] = []
        self._changed: asyncio.Event | None = None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_for(
        self, predicate: Callable[[CaptureOutput], bool], *, within: float = 10.0
    ) -> None:
        """Wait until ``predicate(self)`` holds (``within`` is only a safety net)."""
        async with asyncio.timeout(within):
            while not predicate(self):
                self._changed = asyncio.Event()
                await self._changed.wait()

    @property
    def events(self) -> list[AlarmEventMessage]:
        return [o.event for o in self.outgoing]

    def alarms(self, outgoing: list[Outgoing]) -> None:
        self.outgoing.extend(outgoing)
        self._notify()

    def room_event(self, message: RoomEventMessage) -> None:
        self.room_events.append(message)
        self._notify()

    def state(self, message: RoomStateMessage) -> None:
        self.states.append(message)
        self._notify()

    def timer_events(self, messages: list[TimerEventMessage]) -> None:
        self.timer_messages.extend(messages)
        self._notify()

    def timer(self, message: TimerMessage) -> None:
        self.timers.append(message)
        self._notify()

    def transitions(self, code: str | None = None) -> list[tuple[str, str]]:
        return [(e.code, e.transition) for e in self.events if code is None or e.code == code]
