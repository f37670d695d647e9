"""Per-feed bookkeeping of a room: arrival, silence, rejects, gaps, bad samples.

This is where "a feed that stops is a technical alarm, not silence" lives.
Each feed's health is expressed as technical conditions reported to the alarm
engine like any check's, under the check name ``feed``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from roommon.config import FeedConfig
from roommon.core.conditions import ConditionReport
from roommon.core.model import (
    PHYSICAL_RANGE,
    DataOrigin,
    FloatArray,
    NumericReading,
    SignalKind,
    WaveformChunk,
)
from roommon.core.phases import Phase
from roommon.room.conditions import (
    BAD_PAYLOAD,
    BAD_SAMPLES,
    DISCONNECTED,
    FEED_CONDITIONS,
    NEVER_SEEN,
    SEQ_GAP,
    SILENT,
    SILENT_OPTIONAL,
)
from roommon.room.sequence import SeqGate

#: A transient problem (a rejected payload, a gap) stays reported this long
#: after its last occurrence, so a burst is one alarm rather than a flicker.
TRANSIENT_HOLD_S = 10.0

#: Past this many separate bad-sample runs in one chunk the good runs between
#: them are too short to be signal: the whole chunk counts as bad.
MAX_GOOD_RUNS = 16


@dataclass(slots=True)
class FeedRuntime:
    """Live state of one configured feed."""

    room: str
    name: str
    config: FeedConfig
    last_seen_mono: float | None = None
    last_seen_t: float | None = None
    seq: SeqGate[WaveformChunk | NumericReading] = field(default_factory=SeqGate)
    received: int = 0
    bad_samples: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    #: Messages of this feed the daemon itself shed (its inbound queue was full): in all,
    #: and since the last accepted payload (what a skip in the count may be made of).
    shed: int = 0
    shed_since_accepted: int = 0
    #: When the daemon last shed one: the feed was sending then, whatever reached the room.
    last_shed_mono: float | None = None
    #: Skips in the count made only of messages the daemon shed (not feed.seq_gap).
    gaps_shed: int = 0
    transport_up: bool | None = None  # None: the transport does not report connection state
    origin: DataOrigin = DataOrigin.LIVE  # of the newest data; technical alarms inherit it
    _last_problem: dict[str, float] = field(default_factory=dict)  # code -> monotonic time
    _active: dict[str, bool] = field(default_factory=dict)
    # What the last evaluate() saw: a problem noted since, a condition present, or another
    # phase means data arriving may change something (see needs_evaluation).
    _noted: bool = True
    _n_active: int = 0
    _phase_seen: Phase | None = None

    @property
    def kind(self) -> SignalKind:
        return self.config.kind

    @property
    def last_seq(self) -> int | None:
        """Seq of the last accepted payload."""
        return self.seq.last

    @property
    def last_arrived_mono(self) -> float | None:
        """When data of this feed last arrived: accepted by the room, or shed by the daemon.

        An overloaded daemon that sheds a feed's messages has the alarm daemon.overloaded
        for that room, saying so; the feed itself is not silent (nor never seen), and a
        feed.silent or feed.never_seen of every feed of every room (at twice the load a
        daemon sustains, thousands of alarms in 30 s) would say something untrue.
        """
        seen, shed = self.last_seen_mono, self.last_shed_mono
        if seen is None or shed is None:
            return shed if seen is None else seen
        return max(seen, shed)

    def status(self, mono: float) -> str:
        arrived = self.last_arrived_mono
        if arrived is None:
            return "never_seen"
        if mono - arrived > self.config.effective_stale_s:
            return "silent"
        return "ok"

    def note_shed(self, mono: float) -> None:
        """The daemon shed a message of this feed (counted; no evaluation: it is cheap)."""
        self.shed += 1
        self.shed_since_accepted += 1
        self.last_shed_mono = mono

    def skip_is_shed(self, skipped: int) -> bool:
        """Whether a skip of ``skipped`` seqs is wholly made of messages the daemon shed
        since the last accepted payload (the queue sheds its oldest message, so those are
        the ones between the last accepted payload and this one). Only a whole match
        counts: a skip longer than what was shed lost data upstream too."""
        if 0 < skipped <= self.shed_since_accepted:
            self.gaps_shed += 1
            return True
        return False

    def note_problem(self, code: str, mono: float) -> None:
        self._last_problem[code] = mono
        self._noted = True

    def needs_evaluation(self, phase: Phase) -> bool:
        """Whether :meth:`evaluate` right after data arrived could report a change.

        Data arriving only ends conditions (silent, never seen) or follows a noted
        problem (bad samples, a gap): with no condition present, no problem noted and
        the same phase as the last evaluation, it cannot change anything, and the
        per-message cost of evaluating is saved. The tick still evaluates every feed.
        """
        return self._noted or self._n_active > 0 or phase is not self._phase_seen

    def split_good(self, samples: FloatArray) -> list[tuple[int, int]]:
        """Index ranges of samples that are finite and physically possible.

        Counts the bad ones; returns ``[(0, n)]`` for a clean chunk.
        """
        lo, hi = PHYSICAL_RANGE[self.config.kind]
        # argmin/argmax + item: min() and max() without their reduction wrappers (~1 µs
        # each, per message); a NaN is both (numpy's arg-reductions find it first)
        if (
            len(samples)
            and lo <= samples.item(samples.argmin())
            and samples.item(samples.argmax()) <= hi
        ):
            return [(0, len(samples))]  # clean (a NaN is never in range)
        good = np.isfinite(samples) & (samples >= lo) & (samples <= hi)
        n_bad = len(samples) - int(np.count_nonzero(good))
        if n_bad == 0:
            return [(0, len(samples))]
        self.bad_samples += n_bad
        edges = np.flatnonzero(np.diff(good.astype(np.int8))) + 1
        bounds = np.concatenate(([0], edges, [len(samples)]))
        runs = [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if good[a]]
        if len(runs) > MAX_GOOD_RUNS:
            self.bad_samples += sum(b - a for a, b in runs)
            return []
        return runs

    def evaluate(
        self, mono: float, started_mono: float, t: float, phase: Phase
    ) -> list[ConditionReport]:
        """Conditions whose presence changed since the last call, in the room's ``phase``.

        An optional feed silent (or disconnected) in a phase that does not need it is
        the low-priority notice feed.silent_optional, or nothing where the config says
        ``off`` for that phase: never feed.silent's medium alarm (issue 11, defect 13).
        """
        self._noted, self._phase_seen = False, phase
        stale = self.config.effective_stale_s
        arrived = self.last_arrived_mono
        silent = arrived is not None and mono - arrived > stale
        down = self.transport_up is False
        needed = self.config.needs_feed_in(phase)
        notice = self.config.silent_outside.get(phase, "low") == "low"
        present = {
            SILENT.code: silent and needed,
            NEVER_SEEN.code: self.config.required
            and arrived is None
            and mono - started_mono > stale,
            DISCONNECTED.code: down and needed,
            SILENT_OPTIONAL.code: (silent or down) and not needed and notice,
        }
        for spec in (BAD_PAYLOAD, BAD_SAMPLES, SEQ_GAP):
            seen = self._last_problem.get(spec.code)
            present[spec.code] = seen is not None and mono - seen < TRANSIENT_HOLD_S
        out = []
        for spec in FEED_CONDITIONS:
            now = present[spec.code]
            if self._active.get(spec.code, False) != now:
                self._active[spec.code] = now
                detail = {
                    SILENT.code: f"no data for more than {stale:g} s",
                    NEVER_SEEN.code: "no data since start",
                    BAD_PAYLOAD.code: ", ".join(f"{k}={v}" for k, v in self.rejected.items()),
                    BAD_SAMPLES.code: f"{self.bad_samples} bad samples so far",
                    SEQ_GAP.code: f"{self.gaps} gaps so far",
                    DISCONNECTED.code: "transport disconnected",
                    SILENT_OPTIONAL.code: f"{'disconnected' if down else 'no data'} in phase "
                    f"{phase.value}, which does not need it",
                }[spec.code]
                out.append(
                    ConditionReport(
                        room=self.room,
                        feed=self.name,
                        check="feed",
                        spec=spec,
                        active=now,
                        t=t,
                        message=detail,
                        origin=self.origin,
                    )
                )
        self._n_active = sum(self._active.values())
        return out
