"""Every registered serial driver keeps the driver contract (roommon.testing.drivers).

Parametrised over :data:`roommon.drivers.DRIVERS`: a driver added to the
registry without a device stream here fails the first test, so no driver
escapes the contract. Streams are the simulators' real device byte formats.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roommon.core.clock import VirtualClock
from roommon.core.model import DataOrigin
from roommon.drivers import DRIVERS
from roommon.drivers.base import Driver
from roommon.testing.drivers import (
    check_arbitrary_bytes,
    check_chunking_invariance,
    check_good_stream_is_clean,
    check_reset_drops_the_partial_frame,
)
from simulators.device_streams import device_streams

T0 = 1_767_225_600.0

#: Driver name -> the kinds its simulated device sends.
DEVICE_KINDS: dict[str, list[str]] = {
    "masimo_ascii": [],
    "nonin_fmt2": [],
    "roommon_line": ["ecg", "nibp", "cement_pressure"],
}


def factory(name: str) -> Callable[[], Driver]:
    def make() -> Driver:
        return DRIVERS[name](room="or1", feed="f", origin=DataOrigin.LIVE, clock=VirtualClock())

    return make


def device_bytes(name: str, *, seed: int, seconds: int = 3) -> bytes:
    streams = device_streams(
        protocol=name, kinds=DEVICE_KINDS[name], device_id="dev1", seed=seed, t0=T0
    )
    frames: list[bytes] = []
    for s in range(1, seconds + 1):
        for stream in streams:
            frames += stream.frames_until(float(s))
    return b"".join(frames)


DRIVER_NAMES = sorted(DRIVERS)


def test_every_registered_driver_has_a_device_stream_for_the_contract() -> None:
    assert set(DEVICE_KINDS) == set(DRIVERS)


@pytest.mark.parametrize("name", DRIVER_NAMES)
def test_a_device_stream_decodes_clean(name: str) -> None:
    check_good_stream_is_clean(factory(name), device_bytes(name, seed=1))


@pytest.mark.parametrize("name", DRIVER_NAMES)
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=10))
def test_arbitrary_bytes_never_raise_and_every_byte_is_accounted(
    name: str, data: bytes, cuts: list[int]
) -> None:
    check_arbitrary_bytes(factory(name), data, cuts)


@pytest.mark.parametrize("name", DRIVER_NAMES)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_any_chunking_gives_the_same_samples(name: str, seed: int, cuts: list[int]) -> None:
    check_chunking_invariance(factory(name), device_bytes(name, seed=seed), cuts)


@pytest.mark.parametrize("name", DRIVER_NAMES)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000), cut=st.integers(1, 10**6))
def test_reset_drops_the_partial_frame(name: str, seed: int, cut: int) -> None:
    check_reset_drops_the_partial_frame(factory(name), device_bytes(name, seed=seed), cut)
