"""The MQTT topic layout (documented in docs/topics.md).

Every identifier that becomes a topic level has been validated by
:func:`roommon.core.ids.validate_identifier`, so none can contain ``/``, ``+``
or ``#``. Version ``v1`` is the first level after the prefix so a future
payload contract can live beside this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PREFIX = "roommon/v1"


@dataclass(frozen=True, slots=True)
class Topics:
    site: str

    def feed(self, room: str, feed: str) -> str:
        return f"{PREFIX}/{self.site}/{room}/feed/{feed}"

    def feed_filter(self, room: str = "+") -> str:
        """Every room's feeds, or (``room``) one room's: a daemon subscribes per room."""
        return f"{PREFIX}/{self.site}/{room}/feed/+"

    def alarm(self, room: str) -> str:
        return f"{PREFIX}/{self.site}/{room}/alarm"

    def state(self, room: str) -> str:
        return f"{PREFIX}/{self.site}/{room}/state"

    def event(self, room: str) -> str:
        return f"{PREFIX}/{self.site}/{room}/event"

    def command(self, room: str, client: str) -> str:
        """Commands are published under the sender's MQTT client id (see docs/topics.md)."""
        return f"{PREFIX}/{self.site}/{room}/command/{client}"

    def command_filter(self, room: str = "+") -> str:
        return f"{PREFIX}/{self.site}/{room}/command/+"

    def daemon_filters(self, rooms: Sequence[str], *, feeds: bool = True) -> list[str]:
        """What a daemon serving ``rooms`` subscribes to: per room and topic kind, never
        the whole site, so several daemons share a site without seeing each other's rooms
        (docs/deployment.md, "Sharding")."""
        out = []
        for room in rooms:
            if feeds:
                out.append(self.feed_filter(room))
            out.append(self.command_filter(room))
        return out

    def reply(self, room: str, client: str) -> str:
        return f"{PREFIX}/{self.site}/{room}/reply/{client}"

    def timer(self, room: str) -> str:
        return f"{PREFIX}/{self.site}/{room}/timer"

    def timer_filter(self) -> str:
        """Every room's retained timer message (not the events)."""
        return f"{PREFIX}/{self.site}/+/timer"

    def timer_event(self, room: str) -> str:
        return f"{PREFIX}/{self.site}/{room}/timer/event"

    def notify(self, recipient: str) -> str:
        return f"{PREFIX}/{self.site}/notify/{recipient}"

    def status(self, instance: str) -> str:
        return f"{PREFIX}/{self.site}/status/{instance}"

    def recording_filters(self, rooms: Sequence[str] | None, *, everything: bool) -> list[str]:
        """Topic filters of a recording: the feeds, or every topic, of all or some rooms."""
        base = f"{PREFIX}/{self.site}"
        if rooms is None:
            return [f"{base}/#"] if everything else [self.feed_filter()]
        if not everything:
            return [f"{base}/{r}/feed/+" for r in rooms]
        # Notifications and daemon status are per site, not per room: kept whole.
        return [*(f"{base}/{r}/#" for r in rooms), f"{base}/notify/+", f"{base}/status/+"]

    def parse_room_topic(self, topic: str) -> tuple[str, list[str]] | None:
        """Split ``roommon/v1/SITE/ROOM/rest...`` into (room, rest); None if not ours."""
        parts = topic.split("/")
        if len(parts) < 5 or "/".join(parts[:2]) != PREFIX or parts[2] != self.site:
            return None
        return parts[3], parts[4:]
