"""The display fed by a daemon in the same process (``roommon demo``): no broker.

:class:`DisplayOutput` is a :class:`~roommon.pipeline.RoomOutput`: it gets
exactly what the daemon would publish, as the same JSON the topics carry.
Feed samples reach it through :meth:`DisplayOutput.sample` from whoever feeds
the pipeline. :class:`DaemonCommands` hands a signed-in user's command to
the daemon's own command handler, under the display's client id with the
user as ``actor``: the same checks and the same reply as over MQTT.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from roommon.alerts.engine import Outgoing
from roommon.core.model import NumericReading, WaveformChunk
from roommon.web.site import Message, SiteView
from roommon.wire.payloads import RoomEventMessage, RoomStateMessage
from roommon.wire.timer import TimerEventMessage, TimerMessage

if TYPE_CHECKING:
    from roommon.runtime.daemon import Daemon


class DisplayOutput:
    """Room output into a :class:`SiteView` (in-process display)."""

    def __init__(self, view: SiteView) -> None:
        self._view = view

    def alarms(self, outgoing: list[Outgoing]) -> None:
        for o in outgoing:
            self._view.on_alarm(o.event.model_dump(mode="json"))

    def room_event(self, message: RoomEventMessage) -> None:
        self._view.on_room_event(message.model_dump(mode="json"))

    def state(self, message: RoomStateMessage) -> None:
        self._view.on_state(message.model_dump(mode="json"))

    def timer_events(self, messages: list[TimerEventMessage]) -> None:
        for m in messages:
            self._view.on_timer_event(m.model_dump(mode="json"))

    def timer(self, message: TimerMessage) -> None:
        self._view.on_timer(message.model_dump(mode="json"))

    def sample(self, sample: WaveformChunk | NumericReading) -> None:
        if isinstance(sample, WaveformChunk):
            self._view.on_wave(
                room=sample.room,
                feed=sample.feed,
                kind=sample.kind.value,
                fs=sample.fs,
                t0=sample.t0,
                samples=sample.samples,
                origin=sample.origin.value,
            )
        else:
            self._view.on_reading(sample.room, sample.origin.value)

    def status(self, payload: bytes) -> None:
        """The daemon's status payload, as the broker would have retained it."""
        self._view.on_status(json.loads(payload))


class DaemonCommands:
    """Commands straight into an in-process daemon's command handler."""

    def __init__(self, daemon: Daemon, *, client_id: str) -> None:
        self._daemon = daemon
        self.client_id = client_id
        self._n = 0

    async def command(self, room: str, command: Message, *, actor: str) -> Message:
        self._n += 1
        cmd_id = f"d-{self._n}"
        pipeline = self._daemon.pipelines.get(room)
        if pipeline is None:
            return {"ok": False, "reason": "wrong_room", "detail": f"no room {room!r}"}
        payload: dict[str, Any] = {**command, "v": 1, "id": cmd_id, "room": room, "actor": actor}
        reply = self._daemon.handle_command(pipeline, self.client_id, json.dumps(payload).encode())
        return reply.model_dump(mode="json")
