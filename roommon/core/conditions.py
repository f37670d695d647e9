"""The interface between checks and the alarm engine.

A check declares the conditions it can report (:class:`ConditionSpec`) and
reports their presence over time (:class:`ConditionReport`). It never decides
whether an alarm sounds: delays, latching, acknowledgement and escalation are
the engine's (IEC 60601-1-8 separates the *alarm condition* from the *alarm
signal* the same way).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from roommon.core.model import DataOrigin


class Priority(enum.IntEnum):
    """IEC 60601-1-8 alarm priorities; higher value is more urgent."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class AlarmKind(enum.StrEnum):
    PHYSIOLOGICAL = "physiological"
    TECHNICAL = "technical"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionSpec:
    """A condition a check can report, with its alarm defaults.

    ``code`` is the stable name (``"ecg.asystole"``) used in config overrides,
    logs and the alarm identity. Defaults are starting points; each room's
    config may override delay, latching and priority per code.
    """

    code: str
    kind: AlarmKind
    priority: Priority
    description: str
    delay_s: float = 0.0
    clear_delay_s: float = 0.0  # hysteresis in time: condition must be absent this long
    latching: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionReport:
    """A check's statement that a condition is (or is no longer) present at time ``t``.

    Checks report on change and may repeat themselves; the engine keys alarms on
    ``(room, feed, code)`` so repeats are one alarm, never a stream of duplicates.
    """

    room: str
    feed: str
    check: str
    spec: ConditionSpec
    active: bool
    t: float
    value: float | None = None
    limit: float | None = None
    message: str = ""
    origin: DataOrigin = DataOrigin.LIVE

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.room, self.feed, self.spec.code)
