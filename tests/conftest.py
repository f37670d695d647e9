"""Shared fixtures: a private Mosquitto broker, virtual clock, configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from roommon.core.clock import VirtualClock
from roommon.testing import MosquittoBroker

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = ROOT / "config" / "example-room.toml"


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    b = MosquittoBroker()
    b.start()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """CLI entry points configure structlog for the process, bound to the stderr of the
    moment (under pytest, one test's capture); later tests must not inherit that."""
    yield
    structlog.reset_defaults()
