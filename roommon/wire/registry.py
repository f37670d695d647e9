"""The one place that knows which payload model (and JSON Schema) each topic carries.

Schemas in ``roommon/wire/schemas/`` (documented in docs/topics.md) are
generated from the pydantic models named here: ``python -m
roommon.wire.registry`` rewrites them, and a test fails when a committed
schema drifts from its model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from roommon.core.model import SignalKind
from roommon.wire.commands import CommandPayload, CommandReply
from roommon.wire.payloads import (
    AlarmEventMessage,
    NotifyMessage,
    ReadingPayload,
    RoomEventMessage,
    RoomStateMessage,
    StatusMessage,
    WaveformPayload,
)
from roommon.wire.timer import NurseCommand, TimerEventMessage, TimerMessage
from roommon.wire.topics import PREFIX

SCHEMA_DIR: Final = Path(__file__).with_name("schemas")

#: Payloads others send to roommon: schemas describe what validation accepts.
INBOUND_MODELS: Final[dict[str, type[BaseModel]]] = {
    "feed_waveform": WaveformPayload,
    "feed_reading": ReadingPayload,
    "command": CommandPayload,
    "recovery_command": NurseCommand,
}
#: Payloads roommon publishes: schemas describe what serialisation produces.
OUTBOUND_MODELS: Final[dict[str, type[BaseModel]]] = {
    "alarm_event": AlarmEventMessage,
    "notify": NotifyMessage,
    "room_state": RoomStateMessage,
    "status": StatusMessage,
    "room_event": RoomEventMessage,
    "timer": TimerMessage,
    "timer_event": TimerEventMessage,
    "command_reply": CommandReply,
}

#: Room topic suffix (after ``roommon/v1/SITE/ROOM/``) -> schema name.
_ROOM_SUFFIX: Final[dict[tuple[str, ...], str]] = {
    ("alarm",): "alarm_event",
    ("state",): "room_state",
    ("event",): "room_event",
    ("timer",): "timer",
    ("timer", "event"): "timer_event",
}


def all_models() -> dict[str, type[BaseModel]]:
    return {**INBOUND_MODELS, **OUTBOUND_MODELS}


def schema_path(name: str) -> Path:
    return SCHEMA_DIR / f"{name}.schema.json"


def topic_schema(topic: str, *, site: str, feed_kind: SignalKind | None = None) -> str | None:
    """Name of the schema of a topic's payloads, or None where there is no single one.

    A command topic carries both ``command`` and ``recovery_command``; a feed
    topic's schema depends on its kind (``feed_kind``; None: unknown feed).
    """
    parts = topic.split("/")
    if "/".join(parts[:3]) != f"{PREFIX}/{site}":
        return None
    rest = parts[3:]
    if len(rest) == 3 and rest[1] == "feed":
        if feed_kind is None:
            return None
        return "feed_waveform" if feed_kind.is_waveform else "feed_reading"
    if len(rest) >= 2 and tuple(rest[1:]) in _ROOM_SUFFIX:
        return _ROOM_SUFFIX[tuple(rest[1:])]
    if len(rest) == 3 and rest[1] == "reply":
        return "command_reply"
    if len(rest) == 2 and rest[0] == "notify":
        return "notify"
    if len(rest) == 2 and rest[0] == "status":
        return "status"
    return None


def schema_text(model: type[BaseModel]) -> str:
    inbound = model in INBOUND_MODELS.values()
    schema = model.model_json_schema(mode="validation" if inbound else "serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas() -> list[Path]:
    SCHEMA_DIR.mkdir(exist_ok=True)
    written = []
    for name, model in all_models().items():
        path = schema_path(name)
        path.write_text(schema_text(model), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_schemas():
        print(p)
