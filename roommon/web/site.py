"""What the display knows about the site, and the messages it pushes to browsers.

:class:`SiteView` is synchronous and never awaits, like the room pipeline:
its sources (the MQTT subscriber, or an in-process daemon's output) hand it
parsed payloads (``dict``, the documented JSON) and waveform chunks; it keeps
the latest of each per room, turns every change into one browser message
and gives it to its listeners (the WebSocket hub). Waveforms are kept in
short numpy rings per feed, so the strip around an alarm's onset (10 s
before, 5 s after) can be cut and kept for an hour (alarm recall).

Health, the part of the display a person must be able to trust: the broker
link (up or down, and since when no message came), each daemon's status
(offline, or a heartbeat older than three periods) and which rooms are then
not monitored; these are computed here on the site clock and pushed every
tick.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from roommon.config import Config
from roommon.core.clock import Clock
from roommon.core.log import get_logger
from roommon.core.model import SignalKind
from roommon.web.texts import alarm_text

log = get_logger(__name__)

Message = dict[str, Any]
Listener = Callable[[Message], None]

#: Seconds of every waveform kept per feed: enough for a recall strip (15 s) and lateness.
RING_S = 30.0
RECALL_BEFORE_S = 10.0
RECALL_AFTER_S = 5.0
#: Recall strips and the alarm history are kept this long (site clock).
KEEP_S = 3600.0
#: A room state older than this (it is published at least every 5 s) is stale.
STATE_STALE_S = 15.0
_PRIORITY = {"high": 3, "medium": 2, "low": 1}
_GONE = frozenset({"cleared", "reset"})

#: Measurement -> (check, low-limit setting, high-limit setting): the limits a numeric shows.
LIMIT_SETTINGS: dict[str, tuple[str, str | None, str | None]] = {
    "heart_rate": ("ecg", "brady_bpm", "tachy_bpm"),
    "spo2": ("spo2", "desat_pct", None),
    "nibp_systolic": ("nibp", "systolic_low_mmhg", "systolic_high_mmhg"),
    "nibp_mean": ("nibp", "mean_low_mmhg", "mean_high_mmhg"),
    "abp_systolic": ("abp", "systolic_low_mmhg", "systolic_high_mmhg"),
    "abp_mean": ("abp", "mean_low_mmhg", "mean_high_mmhg"),
    "cement_pressure": ("cement", None, "max_pressure_kpa"),
}


class WaveRing:
    """The last :data:`RING_S` seconds of one waveform feed (preallocated float32)."""

    __slots__ = ("_buf", "_n", "_pos", "fs", "kind", "t_end")

    def __init__(self, *, fs: float, kind: str) -> None:
        self.fs = fs
        self.kind = kind
        self._buf = np.zeros(max(16, round(RING_S * fs)), dtype=np.float32)
        self._pos = 0  # next write index
        self._n = 0  # valid samples
        self.t_end = -math.inf  # time just after the newest sample

    def append(self, t0: float, samples: np.ndarray[Any, np.dtype[Any]]) -> None:
        cap = len(self._buf)
        x = samples[-cap:].astype(np.float32, copy=False)
        if self._n and abs(t0 - self.t_end) > 2.0 / self.fs:
            self._n = 0  # a gap or a jump: never draw two stretches as one
        first = self._pos
        end = first + len(x)
        if end <= cap:
            self._buf[first:end] = x
        else:
            split = cap - first
            self._buf[first:] = x[:split]
            self._buf[: end - cap] = x[split:]
        self._pos = end % cap
        self._n = min(cap, self._n + len(x))
        self.t_end = t0 + len(samples) / self.fs

    def window(self, t_from: float, t_to: float) -> tuple[float, np.ndarray[Any, np.dtype[Any]]]:
        """(time of the first sample, samples) of what the ring holds in [t_from, t_to)."""
        t_start = self.t_end - self._n / self.fs
        i0 = max(0, math.ceil((t_from - t_start) * self.fs))
        i1 = min(self._n, math.floor((t_to - t_start) * self.fs))
        if i1 <= i0:
            return t_from, np.zeros(0, dtype=np.float32)
        cap = len(self._buf)
        start = (self._pos - self._n) % cap
        idx = (start + np.arange(i0, i1)) % cap
        return t_start + i0 / self.fs, self._buf[idx]


@dataclass(slots=True)
class PendingRecall:
    alarm_id: str
    room: str
    onset: float
    header: Message


@dataclass(slots=True)
class RoomView:
    room: str
    name: str
    limits: dict[str, dict[str, float]] = field(default_factory=dict)
    state: Message | None = None
    timer: Message | None = None
    alarms: dict[str, Message] = field(default_factory=dict)
    origin: str = "live"
    updated: float | None = None  # site time of the last message about this room
    history: deque[Message] = field(default_factory=lambda: deque(maxlen=200))
    waves: dict[str, WaveRing] = field(default_factory=dict)

    def snapshot(self) -> Message:
        return {
            "room": self.room,
            "name": self.name,
            "limits": self.limits,
            "state": self.state,
            "timer": self.timer,
            "alarms": sorted_alarms(self.alarms.values()),
            "origin": self.origin,
            "updated": self.updated,
            "history": list(self.history),
            "waves": sorted(self.waves),
        }


def sorted_alarms(alarms: Iterable[Message]) -> list[Message]:
    """Highest priority first, then the most recent."""
    return sorted(alarms, key=lambda a: (-_PRIORITY.get(a["priority"], 0), -a["since"]))


def _with_text(alarm: Message) -> Message:
    return {**alarm, "text": alarm_text(str(alarm.get("code", "")))}


class SiteView:
    """The latest of everything about a site, and a message per change to its listeners."""

    def __init__(self, *, site: str, clock: Clock, config: Config | None = None) -> None:
        self.site = site
        self._clock = clock
        self.rooms: dict[str, RoomView] = {}
        self.daemons: dict[str, Message] = {}
        self.listeners: list[Listener] = []
        self.wave_listeners: dict[str, list[Listener]] = {}
        #: Told the set of rooms some page shows, whenever it changes (the MQTT source
        #: then follows those rooms' waveform feeds).
        self.watch_listeners: list[Callable[[set[str]], None]] = []
        self.recalls: dict[str, Message] = {}
        self._pending: list[PendingRecall] = []
        self.link_connected = False
        self.link_name = "broker"
        self.last_message: float | None = None  # site time of the newest message from the site
        self.bad_messages = 0
        if config is not None:
            for room_id, room in config.rooms.items():
                self.rooms[room_id] = RoomView(
                    room=room_id, name=room.name or room_id, limits=_limits(room.checks)
                )

    # ------------------------------------------------------------------ fan-out

    def _push(self, message: Message) -> None:
        for listener in list(self.listeners):
            listener(message)

    def _room(self, room: str) -> RoomView:
        view = self.rooms.get(room)
        if view is None:
            view = self.rooms[room] = RoomView(room=room, name=room)
        view.updated = self.last_message = self._clock.now()
        return view

    def watch(self, room: str, listener: Listener) -> None:
        self.wave_listeners.setdefault(room, []).append(listener)
        self._watched_changed()

    def unwatch(self, room: str, listener: Listener) -> None:
        listeners = self.wave_listeners.get(room, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            self.wave_listeners.pop(room, None)
        self._watched_changed()

    def shown_rooms(self) -> set[str]:
        return set(self.wave_listeners)

    def _watched_changed(self) -> None:
        shown = self.shown_rooms()
        for listener in list(self.watch_listeners):
            listener(shown)

    # ------------------------------------------------------------------ inputs

    def on_state(self, state: Message) -> None:
        view = self._room(str(state["room"]))
        view.state = state
        if state.get("name"):
            view.name = str(state["name"])
        view.alarms = {a["alarm_id"]: _with_text(a) for a in state.get("alarms", [])}
        if any(a.get("origin") != "live" for a in view.alarms.values()):
            view.origin = next(a["origin"] for a in view.alarms.values() if a["origin"] != "live")
        self._push(
            {
                "type": "state",
                "room": view.room,
                "name": view.name,
                "state": state,
                "alarms": sorted_alarms(view.alarms.values()),
                "origin": view.origin,
            }
        )

    def on_alarm(self, event: Message) -> None:
        view = self._room(str(event["room"]))
        view.origin = str(event.get("origin", view.origin))
        alarm = _with_text(event)
        if event["transition"] in _GONE:
            view.alarms.pop(event["alarm_id"], None)
        else:
            view.alarms[event["alarm_id"]] = alarm
        if event["transition"] == "raised":
            header = {
                "alarm_id": event["alarm_id"],
                "room": view.room,
                "code": event["code"],
                "text": alarm["text"],
                "priority": event["priority"],
                "onset": event["since"],
                "origin": event.get("origin", "live"),
            }
            self._pending.append(
                PendingRecall(event["alarm_id"], view.room, event["since"], header)
            )
        self._note(view, {"kind": "alarm", **alarm})
        self._push(
            {
                "type": "alarm",
                "room": view.room,
                "event": alarm,
                "alarms": sorted_alarms(view.alarms.values()),
                "origin": view.origin,
            }
        )

    def on_room_event(self, event: Message) -> None:
        view = self._room(str(event["room"]))
        view.origin = str(event.get("origin", view.origin))
        if event.get("name") != "cement.phase":
            self._note(view, {"kind": "event", **event})
        self._push({"type": "event", "room": view.room, "event": event})

    def on_timer(self, timer: Message) -> None:
        view = self._room(str(timer["room"]))
        view.timer = timer
        self._push({"type": "timer", "room": view.room, "timer": timer})

    def on_timer_event(self, event: Message) -> None:
        view = self._room(str(event["room"]))
        self._note(view, {"kind": "timer", **event})
        self._push({"type": "timer_event", "room": view.room, "event": event})

    def on_status(self, status: Message) -> None:
        self.last_message = self._clock.now()
        self.daemons[str(status["instance"])] = status
        self._push({"type": "health", **self.health()})

    def on_reading(self, room: str, origin: str) -> None:
        view = self._room(room)
        view.origin = origin

    def on_wave(
        self,
        *,
        room: str,
        feed: str,
        kind: str,
        fs: float,
        t0: float,
        samples: np.ndarray[Any, np.dtype[Any]],
        origin: str,
    ) -> None:
        view = self._room(room)
        view.origin = origin
        ring = view.waves.get(feed)
        if ring is None or ring.fs != fs:
            ring = view.waves[feed] = WaveRing(fs=fs, kind=kind)
        ring.append(t0, samples)
        listeners = self.wave_listeners.get(room)
        if listeners:
            message = {
                "type": "wave",
                "room": room,
                "feed": feed,
                "kind": kind,
                "fs": fs,
                "t0": t0,
                "samples": np.round(samples.astype(np.float64), 3).tolist(),
            }
            for listener in list(listeners):
                listener(message)
        if self._pending:
            self._cut_recalls(final=False)

    def bad_message(self, topic: str, reason: str) -> None:
        self.bad_messages += 1
        log.warning("display_bad_message", topic=topic, reason=reason)

    def set_link(self, connected: bool, name: str = "broker") -> None:
        self.link_connected = connected
        self.link_name = name
        self._push({"type": "health", **self.health()})

    # ------------------------------------------------------------------ recall

    def _cut_recalls(self, *, final: bool) -> None:
        """Cut every pending strip whose 5 s after onset are in (or, if final, overdue)."""
        now = self._clock.now()
        waiting: list[PendingRecall] = []
        for p in self._pending:
            view = self.rooms.get(p.room)
            rings = view.waves if view is not None else {}
            t_to = p.onset + RECALL_AFTER_S
            ready = all(r.t_end >= t_to for r in rings.values())
            late = now > t_to + 5.0
            if not (ready or late or final):
                waiting.append(p)
                continue
            strips = {}
            for feed, ring in rings.items():
                t_first, x = ring.window(p.onset - RECALL_BEFORE_S, t_to)
                strips[feed] = {
                    "kind": ring.kind,
                    "fs": ring.fs,
                    "t0": t_first,
                    "samples": np.round(x.astype(np.float64), 3).tolist(),
                }
            self.recalls[p.alarm_id] = {
                **p.header,
                "from": p.onset - RECALL_BEFORE_S,
                "to": t_to,
                "feeds": strips,
            }
            self._push({"type": "recall", "room": p.room, "alarm_id": p.alarm_id})
        self._pending = waiting
        cutoff = now - KEEP_S
        for alarm_id in [k for k, r in self.recalls.items() if r["onset"] < cutoff]:
            del self.recalls[alarm_id]

    def recall_list(self, room: str) -> list[Message]:
        return sorted(
            (
                {k: v for k, v in r.items() if k != "feeds"}
                for r in self.recalls.values()
                if r["room"] == room
            ),
            key=lambda r: -float(r["onset"]),
        )

    # ------------------------------------------------------------------ health

    def health(self) -> Message:
        """Broker link, daemons, and the rooms nobody monitors, as of now (site clock)."""
        now = self._clock.now()
        daemons = []
        monitored: set[str] = set()
        for instance, s in sorted(self.daemons.items()):
            age = now - float(s["t"])
            alive = s["status"] == "online" and age <= 3 * float(s["heartbeat_s"])
            if alive:
                monitored.update(s.get("rooms", []))
            daemons.append(
                {
                    "instance": instance,
                    "alive": alive,
                    "status": s["status"],
                    "reason": s.get("reason", ""),
                    "age_s": age,
                    "rooms": s.get("rooms", []),
                }
            )
        return {
            "now": now,
            "link": {
                "name": self.link_name,
                "connected": self.link_connected,
                "last_message": self.last_message,
                "age_s": None if self.last_message is None else now - self.last_message,
            },
            "daemons": daemons,
            "unmonitored": sorted(set(self.rooms) - monitored),
        }

    def tick(self) -> Message:
        """Called about once a second: cut late recall strips, forget old history."""
        if self._pending:
            self._cut_recalls(final=False)
        cutoff = self._clock.now() - KEEP_S
        for view in self.rooms.values():
            while view.history and float(view.history[0].get("t", 0.0)) < cutoff:
                view.history.popleft()
        return {"type": "health", **self.health()}

    def snapshot(self) -> Message:
        return {
            "type": "snapshot",
            "site": self.site,
            "rooms": {r: v.snapshot() for r, v in sorted(self.rooms.items())},
            **self.health(),
        }

    def _note(self, view: RoomView, entry: Message) -> None:
        view.history.append(entry)


def _limits(checks: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The alarm limits each numeric of a room shows, from its checks' settings."""
    from roommon.checks import CHECKS

    out: dict[str, dict[str, float]] = {}
    for measurement, (check, low, high) in LIMIT_SETTINGS.items():
        if check not in checks or check not in CHECKS:
            continue
        settings = CHECKS[check].settings_model.model_validate(checks[check])
        limits = {}
        if low is not None:
            limits["low"] = float(getattr(settings, low))
        if high is not None:
            limits["high"] = float(getattr(settings, high))
        out[measurement] = limits
    return out


def wave_kind(kind: str) -> bool:
    try:
        return SignalKind(kind).is_waveform
    except ValueError:
        return False
