"""The contract every serial driver keeps, as checks a test runs over each registered driver.

A driver turns one device's bytes into samples. Whatever the bytes and however
they are cut into reads, it must never raise, must account for every byte
(good frame, discarded, or still pending), must give the same samples and
counts for any chunking of the same stream, and must start clean after
:meth:`~roommon.drivers.base.Driver.reset`. ``tests/test_driver_contract.py``
runs these over every entry of :data:`roommon.drivers.DRIVERS` with real
device streams from the simulators.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from roommon.core.model import NumericReading, WaveformChunk
from roommon.drivers.base import Driver, DriverSample

DriverFactory = Callable[[], Driver]


def balanced(d: Driver) -> bool:
    """Every byte received is in a good frame, was discarded, or is still pending."""
    c = d.counters
    return c.bytes_received == c.bytes_in_good_frames + c.bytes_discarded + d.pending_bytes


def feed_in_pieces(d: Driver, data: bytes, cuts: Sequence[int]) -> list[DriverSample]:
    """Feed ``data`` cut at ``cuts`` (taken modulo its length); every sample, in order."""
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [s for a, b in itertools.pairwise(bounds) for s in d.feed(data[a:b])]


def _num(x: float) -> object:
    return "nan" if math.isnan(x) else x


def sample_key(s: DriverSample, *, with_seq: bool = True) -> tuple[object, ...]:
    """A comparable, NaN-safe description of one sample (for equality across runs).

    ``with_seq=False`` leaves out the driver's sample counter, which rightly goes
    on across a reconnect (the pipeline must not take it for a device restart).
    """
    seq = s.seq if with_seq else None
    if isinstance(s, WaveformChunk):
        values = tuple(_num(float(v)) for v in np.asarray(s.samples))
        return ("chunk", s.kind, s.fs, seq, round(s.t0, 9), values)
    assert isinstance(s, NumericReading)
    fields = tuple(sorted((k, _num(v)) for k, v in s.values.items()))
    return ("reading", s.kind, seq, round(s.t, 9), fields, tuple(sorted(s.flags)))


def check_arbitrary_bytes(make: DriverFactory, data: bytes, cuts: Sequence[int]) -> None:
    """Any bytes, any chunking: no exception, every byte accounted for."""
    d = make()
    feed_in_pieces(d, data, cuts)
    assert balanced(d), d.counters.snapshot()


def check_chunking_invariance(make: DriverFactory, stream: bytes, cuts: Sequence[int]) -> None:
    """A stream gives the same samples and counters whole or cut anywhere."""
    whole_driver, cut_driver = make(), make()
    whole = whole_driver.feed(stream)
    pieces = feed_in_pieces(cut_driver, stream, cuts)
    assert [sample_key(s) for s in pieces] == [sample_key(s) for s in whole]
    assert cut_driver.counters.snapshot() == whole_driver.counters.snapshot()
    assert balanced(cut_driver)


def check_reset_drops_the_partial_frame(make: DriverFactory, stream: bytes, cut: int) -> None:
    """After a reset (a reconnect), a half-received frame is gone and the new stream
    decodes as on a fresh driver. Frames completed before the reset are real data and
    may still come out (a packet-based driver flushes them first), never half frames."""
    fresh = make().feed(stream)
    d = make()
    d.feed(stream[: cut % max(len(stream), 1)])
    d.reset()
    assert d.pending_bytes == 0
    after = [sample_key(s, with_seq=False) for s in d.feed(stream)]
    expected = [sample_key(s, with_seq=False) for s in fresh]
    assert after[len(after) - len(expected) :] == expected
    assert balanced(d)


def check_good_stream_is_clean(make: DriverFactory, stream: bytes) -> None:
    """A device's own stream decodes with no bad frame and no discarded byte."""
    d = make()
    out = d.feed(stream)
    assert out, "a real device stream gave no samples"
    c = d.counters
    assert (dict(c.frames_bad), c.bytes_discarded) == ({}, 0), c.snapshot()
    assert balanced(d)
