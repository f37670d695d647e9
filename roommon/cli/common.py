"""Pieces the subcommands share: argparse number types, config loading that prints
the config's problems one per line, the broker to talk to (config or ``--broker``
URL), and MQTT CONNACK codes worth retrying.

``roommon run``, ``check-config``, ``simulate``, ``record`` and ``replay`` all
load a config the same way and report a bad one the same way (exit 2).
"""

from __future__ import annotations

import argparse
import math
from typing import Final, TextIO

import aiomqtt

from roommon.config import Config, load_config
from roommon.core.errors import ConfigError
from roommon.transports.broker import BrokerEndpoint

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2

#: MQTT 5 CONNACK reason codes that mean "try again later" rather than "no":
#: server unavailable, server busy, quota exceeded, connection rate exceeded.
RETRYABLE_CONNACK: Final = frozenset({3, 136, 137, 151, 159})


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


def broker_target(config: Config, url: str | None) -> BrokerEndpoint:
    """The config's broker, or ``--broker mqtt[s]://HOST[:PORT]`` (credentials still from
    the environment variables the config names); a malformed URL is a UsageError."""
    return BrokerEndpoint.from_config(config.broker, url=url)


def connack_code(exc: aiomqtt.MqttError) -> int | None:
    """The CONNACK reason code behind a connection error, if it carries one."""
    if not isinstance(exc, aiomqtt.MqttCodeError):
        return None
    rc = exc.rc
    if isinstance(rc, int):
        return rc
    value = getattr(rc, "value", None)
    return value if isinstance(value, int) else None
