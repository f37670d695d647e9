"""Typed, validated configuration loaded from a TOML file.

One pydantic model per section; every field is documented. A bad file fails
at load with :class:`~roommon.core.errors.ConfigError` carrying one
``(field path, message)`` per problem. Check settings are validated against
the settings model of the check named by the table key (see
:data:`roommon.checks.CHECKS`). Broker credentials never come from the file:
the file names the environment variables that hold them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from roommon.alerts.settings import AlarmOverride, EscalationConfig
from roommon.core.errors import ConfigError
from roommon.core.ids import Identifier
from roommon.core.model import CANONICAL_UNITS, SignalKind
from roommon.core.phases import Phase
from roommon.hl7.config import Hl7Config
from roommon.recovery.plan import RecoveryConfig
from roommon.transports.broker import BrokerConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SiteConfig(_Section):
    id: Identifier = Field(description="Site identifier; first topic level after roommon/v1.")
    name: str = Field(default="", description="Human-readable site name.")


class DaemonConfig(_Section):
    instance: Identifier = Field(default="main", description="Instance id for the status topic.")
    state_dir: Path = Field(
        default=Path("var"),
        description="Folder for the SQLite outbox and alarm log; a relative path is "
        "relative to the config file's folder.",
    )
    tick_s: float = Field(default=1.0, gt=0, le=5, description="Period of time-based checks.")
    heartbeat_s: float = Field(
        default=5.0, gt=0, le=60, description="Period of the retained status/heartbeat message."
    )
    max_payload_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Feed payloads larger than this are rejected."
    )
    inbound_queue_max: int = Field(
        default=20_000,
        ge=100,
        description="Feed messages received and not yet processed, at most; when it is full "
        "the oldest is shed (counted per feed in the status, alarm daemon.overloaded).",
    )
    overload_lag_s: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="Input lag above which a room has the alarm daemon.overloaded: how much "
        "later than its first data a feed's samples now arrive (now minus the sample time, "
        "less the feed's smallest such offset, so a gateway clock off by a constant is not "
        "lag), or how long a message waited in the inbound queue.",
    )
    display_clients: list[Identifier] = Field(
        default_factory=list,
        description="MQTT client ids of `roommon display` services. Only commands on these "
        "clients' topics may carry an `actor` (the signed-in user), which is then logged as "
        "the actor; the broker ACL must reserve these ids to the display (docs/display.md).",
    )


class MetricsConfig(_Section):
    """The operations endpoint: Prometheus metrics on ``/metrics``, health on ``/healthz``
    (docs/operations.md). Off by default; keep it on loopback and let a local Prometheus
    or a reverse proxy reach it: it has no authentication."""

    enabled: bool = Field(default=False, description="Serve /metrics and /healthz.")
    host: str = Field(default="127.0.0.1", description="Address to listen on (loopback).")
    port: int = Field(default=9464, ge=0, le=65535, description="TCP port; 0 picks a free one.")


class SerialPortConfig(_Section):
    """One RS-232 port. Feeds of one room that name the same port share it: a
    pulse oximeter sends its pleth waveform and its SpO2 numerics on one cable,
    and the driver's samples go to the room's feed of each sample's kind."""

    port: str = Field(description="Serial device path; prefer /dev/serial/by-id/... names.")
    protocol: str = Field(description="Driver name: masimo_ascii, nonin_fmt2, roommon_line.")
    baudrate: int = Field(default=9600, gt=0, le=4_000_000, description="Line speed, bit/s.")
    bytesize: Literal[7, 8] = Field(default=8, description="Data bits.")
    parity: Literal["N", "E", "O"] = Field(default="N", description="None, even or odd.")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits.")
    device_id: str | None = Field(
        default=None, description="roommon_line only: accept frames of this device id only."
    )
    reconnect_initial_s: float = Field(
        default=0.5, gt=0, description="First reopen delay after the port fails; doubles."
    )
    reconnect_max_s: float = Field(default=10.0, gt=0, description="Cap on the reopen delay.")

    @model_validator(mode="after")
    def _known_protocol(self) -> SerialPortConfig:
        from roommon.drivers import DRIVERS

        if self.protocol not in DRIVERS:
            known = ", ".join(sorted(DRIVERS))
            raise ValueError(f"protocol: unknown serial protocol {self.protocol!r} ({known})")
        return self


#: Seconds without data before a feed is alarmed as silent, by kind. Waveforms
#: stream continuously, so a few seconds is already abnormal; SpO2 numerics
#: arrive once a second; NIBP readings come every few minutes and the NIBP
#: check's "overdue" condition is the sharper alarm, so its default is long.
DEFAULT_STALE_S: Mapping[SignalKind, float] = {
    SignalKind.ECG: 3.0,
    SignalKind.PLETH: 3.0,
    SignalKind.ABP: 3.0,
    SignalKind.CEMENT_PRESSURE: 3.0,
    SignalKind.SPO2: 10.0,
    SignalKind.NIBP: 900.0,
}


#: Phases that need an optional feed of a kind, where its config does not say: the
#: cement-pressure line is connected only for the injection ("only connected during the
#: injection phase"); other optional feeds are needed throughout.
DEFAULT_NEEDED_IN: Mapping[SignalKind, frozenset[Phase]] = {
    SignalKind.CEMENT_PRESSURE: frozenset({Phase.CEMENT_INJECTION}),
}


class FeedConfig(_Section):
    kind: SignalKind = Field(description="Signal kind carried by the feed.")
    transport: Literal["mqtt", "serial"] = Field(default="mqtt", description="How it arrives.")
    unit: str | None = Field(
        default=None, description="Unit of the values; defaults to the kind's canonical unit."
    )
    fs: float = Field(
        default=0.0, ge=0, le=2000, description="Expected sample rate in Hz (waveforms only)."
    )
    stale_s: float | None = Field(
        default=None, gt=0, description="Seconds without data before 'feed silent' is raised."
    )
    required: bool = Field(
        default=True, description="A required feed that never connects is a technical alarm."
    )
    needed_in: list[Phase] | None = Field(
        default=None,
        description="Optional feeds only: the procedure phases that need the feed. Silent or "
        "disconnected in one of them: feed.silent / feed.disconnected (medium); in any other "
        "phase at most the low-priority notice feed.silent_optional. Default: cement_injection "
        "for a cement_pressure feed, every phase for other kinds.",
    )
    silent_outside: dict[Phase, Literal["low", "off"]] = Field(
        default_factory=dict,
        description="Optional feeds only: per phase outside needed_in, 'low' (the default) "
        "raises the notice feed.silent_optional when the feed is silent, 'off' nothing.",
    )
    serial: SerialPortConfig | None = Field(default=None, description="Serial port settings.")

    @model_validator(mode="after")
    def _consistent(self) -> FeedConfig:
        if self.kind.is_waveform and self.fs <= 0:
            raise ValueError(f"fs: a {self.kind} waveform feed needs a sample rate > 0")
        if not self.kind.is_waveform and self.fs != 0:
            raise ValueError(f"fs: a {self.kind} numeric feed takes no sample rate")
        canonical = CANONICAL_UNITS[self.kind]
        if self.unit is not None and self.unit != canonical:
            raise ValueError(f"unit: {self.kind} is carried in {canonical!r}, not {self.unit!r}")
        if self.required and (self.needed_in is not None or self.silent_outside):
            field = "needed_in" if self.needed_in is not None else "silent_outside"
            raise ValueError(f"{field}: only for an optional feed (required = false)")
        if self.needed_in is not None:
            overlap = sorted(p.value for p in set(self.silent_outside) & set(self.needed_in))
            if overlap:
                raise ValueError(
                    f"silent_outside: {', '.join(overlap)} is in needed_in (a silence there "
                    "is feed.silent)"
                )
        if self.transport == "serial" and self.serial is None:
            raise ValueError("serial: transport 'serial' needs a [serial] table")
        if self.transport == "mqtt" and self.serial is not None:
            raise ValueError("serial: only allowed with transport = 'serial'")
        return self

    @property
    def effective_unit(self) -> str:
        return CANONICAL_UNITS[self.kind]

    def needs_feed_in(self, phase: Phase) -> bool:
        """Whether a silence in ``phase`` is a feed.silent alarm (else a notice at most)."""
        if self.required:
            return True
        if self.needed_in is not None:
            return phase in self.needed_in
        return phase in DEFAULT_NEEDED_IN.get(self.kind, frozenset(Phase))

    @property
    def effective_stale_s(self) -> float:
        return self.stale_s if self.stale_s is not None else DEFAULT_STALE_S[self.kind]


class RoomConfig(_Section):
    name: str = Field(default="", description="Human-readable room name.")
    feeds: dict[Identifier, FeedConfig] = Field(description="Feeds by feed id.")
    checks: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Check settings by check name; an empty table runs it with defaults.",
    )
    alarms: dict[str, AlarmOverride] = Field(
        default_factory=dict, description="Overrides of alarm defaults by condition code."
    )
    escalation: EscalationConfig = Field(
        default_factory=EscalationConfig, description="Who is told of the room's alarms."
    )
    audio_pause_s: float = Field(
        default=120.0, gt=0, le=900, description="Audio pause length (IEC 60601-1-8 typical 2 min)."
    )
    alarm_pause_max_s: float = Field(
        default=300.0, gt=0, le=3600, description="Longest allowed technical alarm pause."
    )
    profiles: dict[Phase, dict[str, AlarmOverride]] = Field(
        default_factory=dict,
        description="Alarm overrides per procedure phase, by condition code or 'prefix.*'; "
        "they take precedence over [alarms] while the room is in that phase.",
    )
    recovery: RecoveryConfig = Field(
        default_factory=RecoveryConfig, description="Bed-rest timer after the last injection."
    )
    idle_after_s: float = Field(
        default=600.0,
        gt=0,
        description="Every feed silent this long after a patient was connected (or after "
        "recovery ended): the room returns to the idle phase.",
    )
    procedure: str | None = Field(
        default=None, description="Procedure type selecting a recovery plan (default if unset)."
    )

    @model_validator(mode="after")
    def _has_feeds(self) -> RoomConfig:
        if not self.feeds:
            raise ValueError("feeds: a room needs at least one feed")
        ports: dict[str, SerialPortConfig] = {}
        for name, feed in self.feeds.items():
            if feed.serial is None:
                continue
            first = ports.setdefault(feed.serial.port, feed.serial)
            if first != feed.serial:
                raise ValueError(
                    f"feeds: feed {name!r} shares port {feed.serial.port} with another feed "
                    "but not its settings; feeds on one port need identical [serial] tables"
                )
        return self


class Config(_Section):
    site: SiteConfig = Field(description="Who this daemon is.")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="The MQTT broker.")
    daemon: DaemonConfig = Field(default_factory=DaemonConfig, description="The daemon itself.")
    rooms: dict[Identifier, RoomConfig] = Field(description="Procedure rooms by room id.")
    hl7: Hl7Config | None = Field(
        default=None, description="HL7 v2 (IHE PCD-01/PCD-04) over MLLP; docs/hl7.md."
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Metrics and health over HTTP."
    )

    @model_validator(mode="after")
    def _has_rooms(self) -> Config:
        if not self.rooms:
            raise ValueError("rooms: at least one room is needed")
        return self


def _hl7_problems(config: Config) -> list[tuple[str, str]]:
    if config.hl7 is None:
        return []
    problems = []
    for name, receiver in config.hl7.receivers.items():
        for i, room in enumerate(receiver.rooms):
            if room not in config.rooms:
                problems.append((_loc(("hl7", "receivers", name, "rooms", i)), f"no room {room!r}"))
    for room in config.hl7.locations:
        if room not in config.rooms:
            problems.append((_loc(("hl7", "locations", room)), f"no room {room!r}"))
    return problems


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _problems(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        # A model-level validator names the field itself as "field: message".
        head, sep, rest = msg.partition(": ")
        if sep and head.isidentifier() and err["type"] == "value_error":
            loc, msg = (*loc, head), rest
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append((_loc(loc), msg))
    return out


def _check_problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Validate each room's check tables against the named check's settings model.

    Works on the raw mapping so these problems are reported together with the
    rest of the file's, not only once everything else is fixed.
    """
    from roommon.checks import CHECKS

    problems: list[tuple[str, str]] = []
    rooms = data.get("rooms")
    if not isinstance(rooms, Mapping):
        return problems
    for room_id, room in rooms.items():
        if not isinstance(room, Mapping) or not isinstance(room.get("checks"), Mapping):
            continue
        feeds = room.get("feeds")
        if not isinstance(feeds, Mapping):
            feeds = {}
        kinds = {f.get("kind") for f in feeds.values() if isinstance(f, Mapping)}
        for name, raw in room["checks"].items():
            path: tuple[int | str, ...] = ("rooms", room_id, "checks", name)
            check = CHECKS.declared(name)
            if check is None:
                known = ", ".join(sorted(CHECKS)) or "none"
                problems.append((_loc(path), f"unknown check (known: {known})"))
                continue
            try:
                check.settings_model.model_validate(raw)
            except ValidationError as exc:
                problems.extend(_problems(exc, path))
                continue
            if check.needs and not {k.value for k in check.needs} & kinds:
                names = ", ".join(sorted(k.value for k in check.needs))
                problems.append((_loc(path), f"needs a feed of kind {names}; the room has none"))
    return problems


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    """Validate a parsed TOML mapping; raise ConfigError listing every problem."""
    problems: list[tuple[str, str]] = []
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += _problems(exc)
    problems += _check_problems(data)
    if config is not None:
        problems += _hl7_problems(config)
        for room_id, room in config.rooms.items():
            for code in room.alarms:
                if "." not in code:
                    path = _loc(("rooms", room_id, "alarms", code))
                    problems.append((path, "expected a condition code like 'spo2.desat'"))
    if problems or config is None:
        raise ConfigError(source, problems)
    return config


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [("(file)", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [("(toml)", str(exc))]) from exc
    _state_dir_beside(data, p)
    return parse_config(data, source=str(p))


def _state_dir_beside(data: dict[str, Any], path: Path) -> None:
    """A relative ``daemon.state_dir`` (and the default ``var``) is relative to the config
    file's folder, not to wherever the command happens to be run from."""
    daemon = data.setdefault("daemon", {})
    if not isinstance(daemon, dict):
        return  # validation reports what is wrong with it
    state_dir = daemon.get("state_dir", "var")
    if isinstance(state_dir, str) and not Path(state_dir).expanduser().is_absolute():
        daemon["state_dir"] = str(path.resolve().parent / state_dir)
