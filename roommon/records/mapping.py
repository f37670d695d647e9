"""From a record's signals to a room's feeds: names to feed kinds, units, sample rates.

* **Names** (:data:`NAME_RULES`, matched case-insensitively on the whole
  name): ECG leads (``I``, ``II``, ``III``, ``aVR``/``aVL``/``aVF``, ``V``,
  ``V1``..``V6``, ``MLI``..``MLIII``, ``MCL1``.., ``ECG``, ``ECG1``, ``ECG II``,
  ``EKG``...) to ``ecg``; ``PLETH``, ``PPG``, ``PLETH1`` to ``pleth``; ``ABP``,
  ``ART``, ``AOBP``, ``IBP1``... to ``abp``. Signals roommon has no feed for
  (:data:`IGNORED`: respiration, CVP, PAP, EEG...) are left out and said so.
  Any other name is an error unless ``--map NAME=FEED`` says what it is
  (``FEED`` a feed kind, or ``none`` to leave it out).
* **Units** (:data:`UNIT_FACTORS`): converted to the feed kind's unit
  (:data:`~roommon.core.model.CANONICAL_UNITS`): ``uV``/``µV``/``mV``/``V`` to
  mV, ``mmHg``/``kPa``/``cmH2O`` to mmHg; pleth is in arbitrary units
  (``au``, ``NU``, ``%`` or none). Any other unit is an error naming the
  signal and the unit: a wrong scale would turn every check into a guess.
* **Signals a reader holds back** (:attr:`RecordSignal.unmapped_reason`: the
  PhysioNet CSV form's normalised ECG leads) are left out, with the reader's
  reason, unless ``--map`` names them; then their unit is judged as above.
* **Numerics** (a monitor's own values, :attr:`Record.numerics`,
  :data:`NUMERIC_RULES`): ``SpO2`` and ``PULSE`` become the ``spo2`` and
  ``pulse_rate`` fields of one ``spo2`` reading feed; the monitor's ``HR`` and
  ``RESP`` are left out (roommon's EKG check computes its own heart rate;
  no roommon feed takes respiration). Units as :data:`NUMERIC_UNIT_FACTORS`;
  an unknown one is an error naming the numeric. ``--map NAME=none`` leaves a
  numeric out.
* **Rates**: a signal whose rate differs from its feed's configured rate is
  resampled with polyphase filtering (:func:`scipy.signal.resample_poly`,
  anti-aliasing Kaiser window, up/down the reduced ratio of the two rates).
  Missing samples (NaN) are bridged for the filter and NaN again afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import numpy as np

from roommon.core.model import CANONICAL_UNITS, FloatArray, SignalKind
from roommon.records.record import RecordError, RecordSignal

#: ``--map NAME=none``: leave the signal out.
SKIP: Final = "none"

NAME_RULES: Final[tuple[tuple[re.Pattern[str], SignalKind], ...]] = (
    (
        re.compile(
            r"((ECG|EKG)[ _-]?)?(I|II|III|AVR|AVL|AVF|V|V[1-9]|MLI|MLII|MLIII|MCL[1-6]?|"
            r"D[1-3]|ML[1-6]?|CM[1-6]?|ECG|EKG|ECG[1-9]|EKG[1-9])",
            re.IGNORECASE,
        ),
        SignalKind.ECG,
    ),
    (re.compile(r"PLETH[1-9]?|PPG[1-9]?|PLETHYSMOGRAM", re.IGNORECASE), SignalKind.PLETH),
    (re.compile(r"ABP|ART[1-9]?|AOBP|IBP[1-9]?|FAP", re.IGNORECASE), SignalKind.ABP),
)

#: Signals with no roommon feed: left out of the room, with a note.
IGNORED: Final = re.compile(
    r"RESP.*|CVP.*|PAP.*|ICP.*|EEG.*|EMG.*|EOG.*|CO2.*|ETCO2|UAP|LAP|RAP|PAWP|"
    r"SAO2|SPO2|HR|PULSE|TEMP.*|EDF ANNOTATIONS",
    re.IGNORECASE,
)

#: (feed kind, unit) -> factor to the kind's unit; units are matched in any case.
UNIT_FACTORS: Final[dict[SignalKind, dict[str, float]]] = {
    SignalKind.ECG: {"mV": 1.0, "uV": 1e-3, "µV": 1e-3, "μV": 1e-3, "V": 1e3},
    SignalKind.ABP: {"mmHg": 1.0, "kPa": 7.500617, "cmH2O": 0.7355592},
    SignalKind.PLETH: {"au": 1.0, "NU": 1.0, "%": 1.0, "": 1.0},
}


#: Numerics by name (case-insensitive, whole name) -> (numeric feed kind, field); None:
#: left out (said so). The feed is named after its kind (``spo2``).
NUMERIC_RULES: Final[tuple[tuple[re.Pattern[str], tuple[SignalKind, str] | None], ...]] = (
    (re.compile(r"SPO2|SPO2[ _-]?%", re.IGNORECASE), (SignalKind.SPO2, "spo2")),
    (re.compile(r"PULSE|PR|PULSE[ _-]?RATE", re.IGNORECASE), (SignalKind.SPO2, "pulse_rate")),
    (re.compile(r"HR|RESP|RR|ABP.*|ART.*|CVP|PAP.*|NBP.*|TEMP.*|PVC", re.IGNORECASE), None),
)
#: (numeric field) -> unit -> factor to the field's unit (NUMERIC_FIELDS).
NUMERIC_UNIT_FACTORS: Final[dict[str, dict[str, float]]] = {
    "spo2": {"%": 1.0},
    "pulse_rate": {"bpm": 1.0, "/min": 1.0, "1/min": 1.0},
}


def kind_for(name: str, overrides: dict[str, str]) -> SignalKind | None:
    """The feed kind of signal ``name``; None to leave it out; RecordError if unknown."""
    key = name.strip()
    for pattern, target in overrides.items():
        if pattern.lower() == key.lower():
            if target == SKIP:
                return None
            return SignalKind(target)
    for rule, kind in NAME_RULES:
        if rule.fullmatch(key):
            return kind
    if IGNORED.fullmatch(key):
        return None
    raise RecordError(
        f"signal {name!r}: unknown signal name (give --map '{name}=ecg|pleth|abp|none')"
    )


def parse_map(items: list[str]) -> dict[str, str]:
    """``--map NAME=FEED`` arguments as a dict; RecordError on a malformed one."""
    out: dict[str, str] = {}
    kinds = {k.value for k in UNIT_FACTORS}
    for item in items:
        name, sep, target = item.partition("=")
        target = target.strip().lower()
        if not sep or not name.strip() or target not in (*kinds, SKIP):
            raise RecordError(
                f"--map {item!r}: give NAME=FEED, FEED one of {', '.join(sorted(kinds))}, none"
            )
        out[name.strip()] = target
    return out


def to_feed_unit(signal: RecordSignal, kind: SignalKind) -> FloatArray:
    """The signal's samples in ``kind``'s unit; RecordError naming signal and unit if unknown."""
    factors = UNIT_FACTORS.get(kind, {})
    unit = signal.unit.strip().lower()
    factor = next((f for u, f in factors.items() if u.lower() == unit), None)
    if factor is None:
        known = ", ".join(u or "(none)" for u in factors)
        raise RecordError(
            f"signal {signal.name!r}: unknown unit {signal.unit!r} for feed kind {kind} "
            f"(known: {known}; {kind} is carried in {CANONICAL_UNITS[kind]})"
        )
    return signal.samples if factor == 1.0 else signal.samples * factor


def resample(samples: FloatArray, *, fs_in: float, fs_out: float) -> FloatArray:
    """``samples`` at ``fs_in`` resampled to ``fs_out`` (polyphase; NaN gaps kept as NaN)."""
    if fs_in == fs_out:
        return samples
    from scipy.signal import resample_poly  # scipy loads on first use (see roommon.cli)

    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    if abs(float(ratio) * fs_in - fs_out) > 1e-6 * fs_out:
        raise RecordError(f"cannot resample {fs_in:g} Hz to {fs_out:g} Hz by a rational ratio")
    up, down = ratio.numerator, ratio.denominator
    missing = ~np.isfinite(samples)
    x = samples
    if missing.any():
        if missing.all():
            n_out = -(-samples.shape[0] * up // down)
            return np.full(n_out, np.nan)
        idx = np.arange(samples.shape[0])
        x = samples.copy()
        x[missing] = np.interp(idx[missing], idx[~missing], samples[~missing])
    out = np.asarray(resample_poly(x, up, down), dtype=np.float64)
    if missing.any():
        src = np.minimum((np.arange(out.shape[0]) * down) // up, samples.shape[0] - 1)
        out[missing[src]] = np.nan
    return out


@dataclass(frozen=True, slots=True)
class MappedSignal:
    """A record signal assigned to a feed: samples in the feed's unit, at the signal's rate."""

    signal: RecordSignal
    kind: SignalKind
    feed: str
    samples: FloatArray


def feed_name(name: str, taken: set[str]) -> str:
    """A feed identifier made from a signal name (``MLII`` -> ``mlii``; repeats get ``_2``)."""
    base = re.sub(r"[^a-z0-9_-]+", "_", name.strip().lower()).strip("_") or "signal"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate)
    return candidate


def map_signals(
    signals: tuple[RecordSignal, ...], overrides: dict[str, str]
) -> tuple[list[MappedSignal], list[str]]:
    """The record's signals that go to feeds, and the names of those left out."""
    mapped: list[MappedSignal] = []
    left_out: list[str] = []
    taken: set[str] = set()
    named = {n.lower() for n in overrides}
    for sig in signals:
        if sig.unmapped_reason and sig.name.strip().lower() not in named:
            left_out.append(sig.name)
            continue
        kind = kind_for(sig.name, overrides)
        if kind is None:
            left_out.append(sig.name)
            continue
        mapped.append(
            MappedSignal(
                signal=sig,
                kind=kind,
                feed=feed_name(sig.name, taken),
                samples=to_feed_unit(sig, kind),
            )
        )
    if not mapped:
        names = ", ".join(repr(s.name) for s in signals) or "none"
        raise RecordError(f"no signal of the record maps to a feed (signals: {names})")
    return mapped, left_out


@dataclass(frozen=True, slots=True)
class MappedNumeric:
    """A record's numeric series assigned to a field of a numeric feed, in the field's unit."""

    signal: RecordSignal
    kind: SignalKind
    field: str
    feed: str
    values: FloatArray


def map_numerics(
    numerics: tuple[RecordSignal, ...], overrides: dict[str, str]
) -> tuple[list[MappedNumeric], list[str]]:
    """The record's numerics that go to numeric feeds, and the names of those left out.

    RecordError for a numeric of unknown name (unless ``--map NAME=none``) or unit, or
    two numerics for one field.
    """
    mapped: list[MappedNumeric] = []
    left_out: list[str] = []
    fields: dict[tuple[SignalKind, str], str] = {}
    skip = {n.lower() for n, target in overrides.items() if target == SKIP}
    for sig in numerics:
        key = sig.name.strip()
        if key.lower() in skip:
            left_out.append(sig.name)
            continue
        rule = next((r for r in NUMERIC_RULES if r[0].fullmatch(key)), None)
        if rule is None:
            raise RecordError(
                f"numeric {sig.name!r}: unknown numeric name (give --map '{sig.name}=none' "
                "to leave it out)"
            )
        if rule[1] is None:
            left_out.append(sig.name)
            continue
        kind, field = rule[1]
        factors = NUMERIC_UNIT_FACTORS[field]
        unit = sig.unit.strip().lower()
        factor = next((f for u, f in factors.items() if u.lower() == unit), None)
        if factor is None:
            raise RecordError(
                f"numeric {sig.name!r}: unknown unit {sig.unit!r} for {kind} field {field} "
                f"(known: {', '.join(factors)})"
            )
        other = fields.get((kind, field))
        if other is not None:
            raise RecordError(
                f"numerics {other!r} and {sig.name!r} both map to {kind} field {field} "
                f"(give --map '{sig.name}=none')"
            )
        fields[(kind, field)] = sig.name
        values = sig.samples if factor == 1.0 else sig.samples * factor
        mapped.append(
            MappedNumeric(signal=sig, kind=kind, field=field, feed=kind.value, values=values)
        )
    return mapped, left_out
