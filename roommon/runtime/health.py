"""Is the daemon doing its job? The one judgement behind ``/healthz`` and the systemd watchdog.

Healthy means: the broker link is connected (when the daemon uses a broker),
the alarm store takes writes, and every room is being processed: the ticker
finished a pass over the rooms within the last :data:`STALL_TICKS` periods,
and no room or check of it is failing (``room.failed``, ``check.failed``).
A room whose feeds are silent is not unhealthy here: an empty room is
normal, and a silent feed is the room's own technical alarm.

Pure reads of the daemon's state, no I/O, no heavy imports: the systemd
notifier uses it on every watchdog period and the HTTP endpoint on every
request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from roommon.room.conditions import CHECK_FAILED, ROOM_FAILED

if TYPE_CHECKING:
    from roommon.runtime.daemon import Daemon

#: The rooms count as not processed when no pass over them ended for this many tick periods.
STALL_TICKS = 5

_FAILING_CODES = frozenset({ROOM_FAILED.code, CHECK_FAILED.code})


@dataclass(frozen=True, slots=True)
class Health:
    """What is wrong with the daemon ("" / empty: nothing)."""

    broker: str = ""
    store: str = ""
    #: "" while the rooms are processed, else why not (the ticker is stalled).
    processing: str = ""
    #: Room id -> what is wrong with it (every room is listed).
    rooms: dict[str, list[str]] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not (self.broker or self.store or self.processing) and not any(
            self.rooms.values()
        )

    def problems(self) -> list[str]:
        out = [
            f"{what}: {text}"
            for what, text in (
                ("broker", self.broker),
                ("store", self.store),
                ("processing", self.processing),
            )
            if text
        ]
        out += [f"room {room}: {p}" for room, ps in self.rooms.items() for p in ps]
        return out

    def body(self) -> dict[str, Any]:
        """The JSON body of ``/healthz``."""
        return {
            "healthy": self.healthy,
            "problems": self.problems(),
            "broker": {"ok": not self.broker, "detail": self.broker},
            "store": {"ok": not self.store, "detail": self.store},
            "processing": {"ok": not self.processing, "detail": self.processing},
            "rooms": {room: {"ok": not ps, "problems": ps} for room, ps in self.rooms.items()},
        }


def processing_problem(daemon: Daemon) -> str:
    """Why the rooms are not being processed, or "" when a tick pass ended recently."""
    last = daemon.last_tick_mono
    if last is None:
        return "no pass over the rooms yet"
    tick_s = daemon.config.daemon.tick_s
    age = daemon.clock.monotonic() - last
    if age > STALL_TICKS * tick_s:
        return f"no pass over the rooms for {age:.1f} s (expected every {tick_s:g} s)"
    return ""


def daemon_health(daemon: Daemon) -> Health:
    broker = ""
    link = daemon.link
    if link is not None:
        if not link.healthy:
            broker = f"the link to {daemon.broker.url} has failed"
        elif not link.connected.is_set():
            broker = f"not connected to {daemon.broker.url} (reconnecting)"
    store = f"not writable: {daemon.store.failure}" if daemon.store.degraded else ""
    rooms: dict[str, list[str]] = {}
    for room_id, pipeline in daemon.pipelines.items():
        rooms[room_id] = [
            f"{alarm.spec.code} ({alarm.message})" if alarm.message else alarm.spec.code
            for alarm in pipeline.engine.alarms()
            if alarm.spec.code in _FAILING_CODES and alarm.condition_present
        ]
    return Health(broker=broker, store=store, processing=processing_problem(daemon), rooms=rooms)
