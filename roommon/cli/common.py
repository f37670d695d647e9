"""Pieces the subcommands share: argparse number types, config loading that prints
the config's problems one per line, the broker to talk to (config or ``--broker``
URL), and MQTT CONNACK codes worth retrying.

``roommon run``, ``check-config``, ``simulate``, ``record`` and ``replay`` all
load a config the same way and report a bad one the same way (exit 2).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Final, TextIO
from urllib.parse import urlparse

import aiomqtt

from roommon.config import Config, load_config
from roommon.core.errors import ConfigError, RoommonError

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2

#: MQTT 5 CONNACK reason codes that mean "try again later" rather than "no":
#: server unavailable, server busy, quota exceeded, connection rate exceeded.
RETRYABLE_CONNACK: Final = frozenset({3, 136, 137, 151, 159})


class UsageError(RoommonError):
    """Arguments that do not make a run; the message is for a person."""


def load_or_report(path: str, err: TextIO) -> Config | None:
    """The validated config, or None after printing one line per problem to ``err``."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=err)
        return None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number")
    return value


def positive(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number")
    return value


def non_negative(text: str) -> float:
    """argparse type: a finite number >= 0 (for ``--speed``: 0 means as fast as possible)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerTarget:
    host: str
    port: int
    tls: bool
    ca_file: str | None
    username: str | None
    password: str | None
    keepalive_s: int
    reconnect_initial_s: float
    reconnect_max_s: float

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def broker_target(config: Config, url: str | None) -> BrokerTarget:
    """The broker of the config, or of ``--broker mqtt[s]://HOST[:PORT]`` (credentials
    still from the environment variables the config names)."""
    b = config.broker
    host, port, tls = b.host, b.port, b.tls
    if url is not None:
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
            raise UsageError(f"--broker: expected mqtt://HOST:PORT or mqtts://HOST:PORT: {url!r}")
        try:
            explicit_port = parsed.port
        except ValueError as exc:
            raise UsageError(f"--broker: {exc} in {url!r}") from None
        tls = parsed.scheme == "mqtts"
        host, port = parsed.hostname, explicit_port or (8883 if tls else 1883)
    user, password = b.credentials()
    return BrokerTarget(
        host=host,
        port=port,
        tls=tls,
        ca_file=str(b.ca_file) if b.ca_file else None,
        username=user,
        password=password,
        keepalive_s=b.keepalive_s,
        reconnect_initial_s=b.reconnect_initial_s,
        reconnect_max_s=b.reconnect_max_s,
    )


def connack_code(exc: aiomqtt.MqttError) -> int | None:
    """The CONNACK reason code behind a connection error, if it carries one."""
    if not isinstance(exc, aiomqtt.MqttCodeError):
        return None
    rc = exc.rc
    if isinstance(rc, int):
        return rc
    value = getattr(rc, "value", None)
    return value if isinstance(value, int) else None
