"""Alarm settings of a room: per-condition overrides, escalation chains, pauses.

The config file's ``[rooms.ROOM.alarms]``, ``[rooms.ROOM.escalation]`` and
``[rooms.ROOM.profiles]`` tables are these models (see
:class:`roommon.config.RoomConfig`); the alarm engine reads them through
:class:`AlarmRoomSettings`, so it depends on what it uses, not on the whole
config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from roommon.core.conditions import Priority
from roommon.core.ids import Identifier
from roommon.core.phases import Phase


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class AlarmOverride(_Settings):
    """Per-room override of a condition's alarm defaults (keyed by condition code)."""

    delay_s: float | None = Field(
        default=None, ge=0, le=300, description="Seconds the condition lasts before it alarms."
    )
    clear_delay_s: float | None = Field(
        default=None, ge=0, le=300, description="Seconds the condition is gone before it clears."
    )
    latching: bool | None = Field(
        default=None, description="The alarm stays until reset after its condition ends."
    )
    priority: Literal["low", "medium", "high"] | None = Field(
        default=None, description="Alarm priority instead of the condition's own."
    )
    enabled: bool = Field(default=True, description="false: the condition never alarms here.")


class EscalationStep(_Settings):
    after_s: float = Field(gt=0, description="Seconds unacknowledged before this step.")
    to: Identifier = Field(description="Recipient id; published on roommon/v1/SITE/notify/TO.")


class EscalationConfig(_Settings):
    """Who hears an alarm first, and who next while nobody acknowledges it."""

    notify: list[Identifier] = Field(
        default_factory=list, description="Recipients told of every new alarm of the room."
    )
    low: list[EscalationStep] = Field(
        default_factory=list, description="Steps for low-priority alarms, by after_s."
    )
    medium: list[EscalationStep] = Field(
        default_factory=list, description="e.g. [{after_s = 60, to = 'charge-nurse'}]"
    )
    high: list[EscalationStep] = Field(
        default_factory=list, description="Steps for high-priority alarms, by after_s."
    )
    route_simulated: bool = Field(
        default=False,
        description="Route alarms from simulated or replayed data to recipients (off: never).",
    )

    def chain(self, priority: Priority) -> list[EscalationStep]:
        steps = {Priority.LOW: self.low, Priority.MEDIUM: self.medium, Priority.HIGH: self.high}
        return sorted(steps[priority], key=lambda s: s.after_s)


class AlarmRoomSettings(Protocol):
    """What the alarm engine reads of a room's configuration."""

    @property
    def alarms(self) -> Mapping[str, AlarmOverride]: ...
    @property
    def profiles(self) -> Mapping[Phase, Mapping[str, AlarmOverride]]: ...
    @property
    def escalation(self) -> EscalationConfig: ...
    @property
    def audio_pause_s(self) -> float: ...
    @property
    def alarm_pause_max_s(self) -> float: ...
    @property
    def feeds(self) -> Mapping[str, object]: ...
