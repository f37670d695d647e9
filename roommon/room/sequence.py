"""A feed's sequence numbers: which payloads go on, which wait, which are refused.

Sits in a room's pipeline between decoding and the checks. A device counts its
chunks (or readings); the count says whether data was lost (a skip), repeated
(QoS 1 redelivery) or late. It must not be a lever: one plausible payload
with ``"seq": 9007199254740991`` used to become the feed's position, and every
real chunk after it was refused as ``out_of_order`` until the device rebooted
(issue 11, defect 8). So:

* the next seq, or a skip forward the device's rate allows in the time since
  the last accepted payload, is accepted (a skip is a gap: lost data);
* a jump further than that is **held**, not accepted: the following payload
  confirms it (it continues from the jump: the device really jumped, both are
  accepted in order) or refutes it (it continues the old count: the held one
  is refused as ``seq_jump``); a held payload nobody confirms within
  :data:`HOLD_S` is refused too;
* a restart at 0 is a device reboot and accepted at once;
* a run of :data:`RESYNC_AFTER` consecutive payloads behind the position (a
  device whose counter went back without passing 0) becomes the position:
  the feed never locks out the device that is really sending.

The gate is a plain state machine with time passed in; it never sees samples,
only opaque items it hands back in the order they are to be processed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from roommon.core.errors import ProtocolError

T = TypeVar("T")

#: Skips forward up to this many are accepted whatever the time since the last payload.
JUMP_SLACK = 32
#: The device may send this many times its nominal rate before a skip is implausible.
RATE_MARGIN = 2.0
#: A held jump not confirmed by the next payload within this many seconds is refused.
HOLD_S = 10.0
#: Consecutive payloads counting on behind the position that resynchronise the feed.
RESYNC_AFTER = 3


@dataclass(slots=True)
class SeqDecision(Generic[T]):
    """What to do with an offered payload (and any payload held before it)."""

    #: Items to process now, in this order (a confirmed held one comes first).
    accepted: list[T] = field(default_factory=list)
    #: Items refused, with the reason (a duplicate, a late one, an unconfirmed jump).
    rejected: list[tuple[T, ProtocolError]] = field(default_factory=list)
    #: Data was lost or the count moved: a ``feed.seq_gap``; the string says how.
    gap: str = ""
    #: Of a gap that skipped forward, how many seqs are missing (0 for any other gap).
    skipped: int = 0
    #: The item is held, waiting for the next payload to confirm its jump.
    held: bool = False


@dataclass(slots=True)
class SeqGate(Generic[T]):
    """Sequence bookkeeping of one feed (see the module docstring)."""

    last: int | None = None
    last_mono: float | None = None
    _pending: tuple[int, T, float] | None = None  # seq, item, when offered
    _behind: tuple[int, int] | None = None  # last seq behind the position, run length

    @property
    def holding(self) -> int | None:
        """Seq of the held payload, if one is held."""
        return None if self._pending is None else self._pending[0]

    def allowance(self, mono: float, rate_hz: float) -> int:
        """Largest skip forward the device could have made since the last accepted payload."""
        elapsed = 0.0 if self.last_mono is None else max(0.0, mono - self.last_mono)
        return JUMP_SLACK + math.ceil(RATE_MARGIN * rate_hz * elapsed)

    def take_next(self, seq: int, mono: float) -> bool:
        """Accept ``seq`` at once when it simply continues the count and nothing is held
        (True), as :meth:`offer` would; else (False) nothing changed and :meth:`offer`
        judges it. The common case, decided without building a :class:`SeqDecision`."""
        if self._pending is None and (self.last is None or seq == self.last + 1):
            self.last, self.last_mono = seq, mono
            self._behind = None
            return True
        return False

    def offer(
        self, seq: int, item: T, *, mono: float, rate_hz: float, shed: int = 0
    ) -> SeqDecision[T]:
        """Judge one payload of sequence number ``seq`` arriving at monotonic ``mono``.

        ``rate_hz`` is the device's nominal payload rate (chunks or readings per second);
        ``shed``: payloads of this feed the daemon itself shed since the last accepted
        one, which a skip forward may be made of (plausible whatever the rate says).
        """
        d: SeqDecision[T] = SeqDecision()
        if self.last is None or seq == self.last + 1:
            self._refute_pending(d, f"the count went on at {seq}")
            self._accept(d, seq, item, mono)
            return d
        if self._pending is not None and seq == self._pending[0] + 1:
            held_seq, held, _ = self._pending
            self._pending = None
            d.gap = f"jump from {self.last} to {held_seq}, confirmed by {seq}"
            d.skipped = held_seq - self.last - 1
            self._accept(d, held_seq, held, mono)
            self._accept(d, seq, item, mono)
            return d
        if seq == self.last or seq == self.holding:
            d.rejected.append((item, ProtocolError("duplicate", f"seq {seq} again")))
            return d
        if 0 < seq < self.last:
            run = (
                self._behind[1] + 1
                if self._behind is not None and seq == self._behind[0] + 1
                else 1
            )
            self._behind = (seq, run)
            if run < RESYNC_AFTER:
                err = ProtocolError("out_of_order", f"seq {seq} after {self.last}")
                d.rejected.append((item, err))
                return d
            self._refute_pending(d, f"the feed resynchronised at {seq}")
            d.gap = f"count went back from {self.last} to {seq}: resynchronised"
            self._accept(d, seq, item, mono)
            return d
        if seq == 0:
            self._refute_pending(d, "the device restarted at 0")
            d.gap = f"restart at 0 after {self.last}"
            self._accept(d, seq, item, mono)
            return d
        allowed = self.allowance(mono, rate_hz) + shed
        if seq - self.last > allowed:
            self._refute_pending(d, f"another jump, to {seq}, came instead")
            self._pending = (seq, item, mono)
            d.held = True
            return d
        self._refute_pending(d, f"the count went on at {seq}")
        d.gap = f"skip from {self.last} to {seq}"
        d.skipped = seq - self.last - 1
        self._accept(d, seq, item, mono)
        return d

    def expire(self, mono: float) -> SeqDecision[T]:
        """Refuse a held payload that no following one confirmed within :data:`HOLD_S`."""
        d: SeqDecision[T] = SeqDecision()
        if self._pending is not None and mono - self._pending[2] >= HOLD_S:
            self._refute_pending(d, f"no payload confirmed it within {HOLD_S:g} s")
        return d

    def _accept(self, d: SeqDecision[T], seq: int, item: T, mono: float) -> None:
        self.last, self.last_mono = seq, mono
        self._behind = None
        d.accepted.append(item)

    def _refute_pending(self, d: SeqDecision[T], why: str) -> None:
        if self._pending is None:
            return
        seq, item, _ = self._pending
        self._pending = None
        err = ProtocolError(
            "seq_jump", f"seq {seq} jumped too far from {self.last} and was not confirmed: {why}"
        )
        d.rejected.append((item, err))
