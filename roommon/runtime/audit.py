"""Alarm audit: the alarms a replayed record raised against its reference annotations.

Run at the end of a record replay (``roommon replay RECORD``) when the record
has reference annotations (:class:`~roommon.records.record.Reference`).

**Alarm types** (:data:`ALARM_TYPES`): each is a set of alarm codes the room
may raise and the annotation labels that make a reference episode of it.
Codes that do not exist in this roommon (e.g. ``ecg.vf`` before the VF check)
simply never appear: they count as not raised.

**Scoring**, per type, inside the replayed window:

* episodes of a type that overlap or touch are one episode;
* an alarm (a ``raised`` event of one of the type's codes) is *true* when it is
  raised between ``EARLY_S`` before an episode's start and ``LATE_S`` after its
  end (annotation times are not exact, and detection takes time), else *false*;
* an episode is *detected* when a true alarm falls in that span, else *missed*;
  its time to alarm is the first such alarm's time minus the episode's start.

**Beats**: each EKG feed's detected beats (the room's own QRS detector) are
scored against the reference beats with
:func:`roommon.ecg.offline.match_beats` (150 ms window), as ``ecg-beats`` is:
sensitivity (Se) and positive predictivity (+P). The first and last
``BEAT_EDGE_S`` of the window are left out (a beat there may not be confirmed
yet), and so are ventricular flutter/fibrillation episodes, on both sides
(the EC57 convention: there is no QRS complex to detect).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from roommon.core.model import FloatArray
from roommon.ecg.offline import match_beats
from roommon.records.record import Episode, Reference
from roommon.wire.payloads import AlarmEventMessage

EARLY_S: Final = 2.0
LATE_S: Final = 10.0
BEAT_EDGE_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class AlarmType:
    name: str
    codes: frozenset[str]
    labels: frozenset[str]  # annotation labels, upper case, without the leading "("


#: Ventricular flutter/fibrillation: no QRS complexes to detect, left out of beat scoring.
VF_LABELS: Final = frozenset({"VF", "VFIB", "VFL"})

ALARM_TYPES: Final = (
    AlarmType("asystole", frozenset({"ecg.asystole"}), frozenset({"ASYS", "ASYSTOLE"})),
    AlarmType(
        "brady",
        frozenset({"ecg.brady", "ecg.brady_extreme"}),
        frozenset({"SBR", "BRADY", "BRADYCARDIA"}),
    ),
    AlarmType(
        "tachy",
        frozenset({"ecg.tachy", "ecg.tachy_extreme"}),
        frozenset({"SVTA", "TACHY", "TACHYCARDIA", "STACH"}),
    ),
    AlarmType("vf", frozenset({"ecg.vf"}), VF_LABELS),
    AlarmType("vt", frozenset({"ecg.vt"}), frozenset({"VT"})),
    AlarmType(
        "desaturation",
        frozenset({"spo2.desat", "spo2.desat_critical"}),
        frozenset({"DESAT", "DESATURATION", "HYPOXEMIA"}),
    ),
    AlarmType(
        "hypotension",
        frozenset({"abp.hypotension", "abp.map_low", "nibp.hypotension", "nibp.map_low"}),
        frozenset({"HYPOTENSION", "HYPO"}),
    ),
)


@dataclass(frozen=True, slots=True)
class TypeAudit:
    name: str
    codes: tuple[str, ...]
    alarms: int
    true_alarms: int
    false_alarms: int
    episodes: int
    detected: int
    missed: int
    times_to_alarm_s: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        tta = list(self.times_to_alarm_s)
        return {
            "codes": list(self.codes),
            "alarms": self.alarms,
            "true_alarms": self.true_alarms,
            "false_alarms": self.false_alarms,
            "episodes": self.episodes,
            "detected": self.detected,
            "missed": self.missed,
            "times_to_alarm_s": tta,
            "median_time_to_alarm_s": float(np.median(tta)) if tta else None,
        }


@dataclass(frozen=True, slots=True)
class BeatAudit:
    feed: str
    reference: int
    detected: int
    true_pos: int
    false_neg: int
    false_pos: int
    #: Every beat the room detected in the window, as sample numbers at the feed's rate
    #: from the record's start (the edges included).
    detected_samples: tuple[int, ...] = ()

    @property
    def sensitivity(self) -> float:
        total = self.true_pos + self.false_neg
        return self.true_pos / total if total else 1.0

    @property
    def positive_predictivity(self) -> float:
        total = self.true_pos + self.false_pos
        return self.true_pos / total if total else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "detected_samples": list(self.detected_samples),
            "reference": self.reference,
            "detected": self.detected,
            "true_pos": self.true_pos,
            "false_neg": self.false_neg,
            "false_pos": self.false_pos,
            "se": self.sensitivity,
            "ppv": self.positive_predictivity,
        }


@dataclass(frozen=True, slots=True)
class Audit:
    source: str
    from_s: float
    to_s: float
    types: tuple[TypeAudit, ...]
    beats: tuple[BeatAudit, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference": self.source,
            "window_s": [self.from_s, self.to_s],
            "early_s": EARLY_S,
            "late_s": LATE_S,
            "types": {t.name: t.as_dict() for t in self.types},
            "beats": {b.feed: b.as_dict() for b in self.beats},
        }

    def lines(self) -> list[str]:
        out = [f"Alarm audit against {self.source} ({self.from_s:.0f}-{self.to_s:.0f} s):"]
        out.append(
            f"  {'type':<13}{'alarms':>7}{'true':>6}{'false':>6}{'episodes':>9}"
            f"{'detected':>9}{'missed':>7}  time to alarm (median)"
        )
        for t in self.types:
            tta = t.as_dict()["median_time_to_alarm_s"]
            out.append(
                f"  {t.name:<13}{t.alarms:>7}{t.true_alarms:>6}{t.false_alarms:>6}"
                f"{t.episodes:>9}{t.detected:>9}{t.missed:>7}  "
                + ("-" if tta is None else f"{tta:.1f} s")
            )
        for b in self.beats:
            out.append(
                f"  beats {b.feed}: {b.reference} annotated, {b.detected} detected, "
                f"Se {100 * b.sensitivity:.2f} %, +P {100 * b.positive_predictivity:.2f} %"
            )
        return out


def merged_episodes(
    episodes: Iterable[Episode], *, lo: float, hi: float
) -> list[tuple[float, float]]:
    """Episodes clipped to ``[lo, hi]``, overlapping or touching ones merged."""
    spans = sorted((max(e.start_s, lo), min(e.end_s, hi)) for e in episodes)
    out: list[tuple[float, float]] = []
    for s, e in spans:
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def audit_type(
    kind: AlarmType, episodes: list[tuple[float, float]], raised_s: list[float]
) -> TypeAudit:
    """Score the raise times (seconds from the record's start) against the episodes."""
    true = 0
    first: list[float] = [math.inf] * len(episodes)
    for t in raised_s:
        hit = False
        for i, (s, e) in enumerate(episodes):
            if s - EARLY_S <= t <= e + LATE_S:
                hit = True
                first[i] = min(first[i], t)
        true += hit
    detected = [f - s for f, (s, _) in zip(first, episodes, strict=True) if math.isfinite(f)]
    return TypeAudit(
        name=kind.name,
        codes=tuple(sorted(kind.codes)),
        alarms=len(raised_s),
        true_alarms=true,
        false_alarms=len(raised_s) - true,
        episodes=len(episodes),
        detected=len(detected),
        missed=len(episodes) - len(detected),
        times_to_alarm_s=tuple(round(x, 3) for x in detected),
    )


def audit(
    reference: Reference,
    events: Iterable[AlarmEventMessage],
    *,
    record_start_epoch: float,
    from_s: float,
    to_s: float,
    beats: Mapping[str, tuple[FloatArray, float]] | None = None,
) -> Audit:
    """The audit of one replay. ``events``: the replay's alarm log; ``beats``: per EKG
    feed, the detected beat times (UTC seconds) and the feed's rate."""
    raised: dict[str, list[float]] = {}
    for ev in events:
        if ev.transition == "raised":
            raised.setdefault(ev.code, []).append(ev.t - record_start_epoch)
    types = []
    for kind in ALARM_TYPES:
        eps = [e for e in reference.episodes if e.label.upper() in kind.labels]
        spans = merged_episodes(eps, lo=from_s, hi=to_s)
        times = sorted(t for code in kind.codes for t in raised.get(code, []))
        types.append(audit_type(kind, spans, times))
    beat_audits = []
    if reference.has_beats and beats:
        lo, hi = from_s + BEAT_EDGE_S, to_s - BEAT_EDGE_S
        flutter = merged_episodes(
            (e for e in reference.episodes if e.label.upper() in VF_LABELS), lo=lo, hi=hi
        )

        def scored(t: FloatArray) -> FloatArray:
            keep = (t >= lo) & (t < hi)
            for s, e in flutter:
                keep &= (t < s) | (t >= e)
            return t[keep]

        ref = scored(reference.beats_s)
        for feed in sorted(beats):
            detected_t, fs = beats[feed]
            rel = detected_t - record_start_epoch
            det = scored(rel)
            m = match_beats(
                np.round(ref * fs).astype(np.int64), np.round(det * fs).astype(np.int64), fs=fs
            )
            beat_audits.append(
                BeatAudit(
                    feed=feed,
                    reference=int(ref.shape[0]),
                    detected=int(det.shape[0]),
                    true_pos=m.true_pos,
                    false_neg=m.false_neg,
                    false_pos=m.false_pos,
                    detected_samples=tuple(np.round(rel * fs).astype(np.int64).tolist()),
                )
            )
    return Audit(
        source=reference.source,
        from_s=from_s,
        to_s=to_s,
        types=tuple(types),
        beats=tuple(beat_audits),
    )
