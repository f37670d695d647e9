"""Benchmark: the EKG check's beats and alarms over every shared PhysioNet record.

Each record's channel 0 is replayed in 1 s chunks through a real room pipeline
(EKG check with default settings, alarm engine, virtual clock; nothing
acknowledged, so latching alarms re-raise when their condition returns). Two
tables, then the noise-stress table and the throughput:

**Beat table**: Se / +P of the streaming detector per record and gross, scored
as ``bench/ecg_accuracy.py`` does, by a port of WFDB's ``bxb`` (150 ms window and
bxb's pairing, the 19 beat labels; inside the ``[`` .. ``]`` flutter /
fibrillation episodes reference beats are skipped and unpaired detections not
counted; ``~`` unreadable stretches are scored, as bxb does); records without
beat annotations (vfdb) have no row. The EC57 columns start at 5 minutes,
bxb's default (the learning period); the others score the whole record. Gross
is given for MIT-BIH (mitdb, svdb: EC57's QRS databases), with and without the
paced records, for cudb and for all.

**Alarm table**, per record and in total:

- false asystole: an ``ecg.asystole`` raise with an annotated beat in the 3.5 s
  before it (records without beat annotations: any raise outside an annotated
  ``(ASYS`` stretch); raises inside annotated VF are listed apart (``asysVF``);
- false brady / tachy (with the extreme ones): a raise while the reference rate
  (the same 12-beat rule over the annotated beats) stayed on the right side of the
  limit for the whole 15 s before it (records with beat annotations only);
- false VF / VT: a raise farther than 10 s from any annotated ventricular event
  (VF / flutter, ``(VT``, a run of 3+ ventricular beats);
- VF episodes longer than 10 s: alarmed (a VF or VT alarm on within 10 s of the
  onset) and time to alarm (negative: already on at onset); ``VF only`` counts
  the VF alarm alone;
- VT runs (6+ consecutive ventricular beats above ``vt_bpm``, or an annotated
  ``(VT`` stretch of 3 s+ where there are no beat labels): alarmed within 10 s;
- wrong rate: share of seconds (with a reference rate, outside VF) where the room
  showed a rate off the reference by more than max(5 bpm, 10 %);
- noise declared: share of the seconds annotated noisy (channel 0) with
  ``ecg.noisy`` alarmed, and of the other seconds (``clean noisy``).

**Noise stress**: clean mitdb records plus the nstdb noise records (bw, ma) at
24, 18, 12, 6 and 0 dB, mixed the way the database's ``nst`` does (signal power
from the QRS peak-to-peak amplitude, S = pp^2 / 8; noise scaled to S / 10^(SNR/10)),
noise on 60-180 s and 240-360 s of a 6-minute excerpt (faded in and out over
1 s). Per SNR: wrong rate shown and noise declared, over the noisy stretches;
false alarms; Se / +P.

**Throughput**: the EKG check alone (``on_chunk`` + ``on_tick`` + context drain),
1 s chunks, samples per second of this process's CPU time (one core); one
warm-up pass, then the best of five (the median and worst printed beside it).
CPU time, not wall time, since the machine is shared and wall time would measure
the neighbours too.

One process; about a few minutes. Usage:
``python bench/ecg_alarms.py [--only PREFIX ...] [--no-stress] [--no-beats]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import pathlib
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import structlog

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from roommon.checks.base import CheckContext, FeedView
from roommon.checks.declarations.ecg import EcgSettings
from roommon.checks.ecg import EcgCheck
from roommon.core.model import SignalKind, WaveformChunk
from roommon.ecg.heart_rate import HeartRate
from roommon.ecg.offline import (
    EC57_START_S,
    MatchResult,
    detect_samples,
    match_beats,
    reference_vf,
)
from roommon.ecg.reference import Reference, Span, read_reference, underlying_rhythms
from roommon.records.physionet import SHARED_DIR, read_channel
from roommon.testing.ecg_replay import EcgRoomRun, replay_ecg_through_room

PACED = {"mitdb/102", "mitdb/104", "mitdb/107", "mitdb/217"}
DBS = ("mitdb", "svdb", "vfdb", "cudb")
STRESS_RECORDS = ("100", "101", "106", "112", "119", "201", "208", "220")
SNRS = (24, 18, 12, 6, 0)
VT_BPM = 120.0  # the reference's VT rate limit (the check's own default is printed)
SETTINGS = EcgSettings()


def _pct(x: float) -> str:
    return f"{100.0 * x:6.2f}" if math.isfinite(x) else "   n/a"


def _in_spans(t: float, spans: list[Span], margin: float = 0.0) -> bool:
    return any(a - margin <= t <= b + margin for a, b in spans)


def _reference_rate(ref: Reference, seconds: int, latency_s: float) -> list[float | None]:
    """Per second, the rate the 12-beat rule gives over the annotated beats."""
    out: list[float | None] = []
    hr = HeartRate()
    t_beats = (ref.beats / ref.fs).tolist()
    k = 0
    for s in range(1, seconds + 1):
        now = s - latency_s
        while k < len(t_beats) and t_beats[k] <= now:
            hr.add_beat(t_beats[k])
            k += 1
        out.append(hr.rate(now) if ref.has_beats else None)
    return out


@dataclass
class AlarmScore:
    hours: float = 0.0
    false_asys: int = 0
    asys_in_vf: int = 0
    false_brady: int = 0
    false_tachy: int = 0
    false_vf: int = 0
    false_vt: int = 0
    vf_eps: int = 0
    vf_alarmed: int = 0
    vf_only: int = 0
    vf_tta: list[float] = field(default_factory=list)
    vt_eps: int = 0
    vt_alarmed: int = 0
    vt_tta: list[float] = field(default_factory=list)
    rate_s: int = 0
    wrong_s: int = 0
    noise_s: int = 0
    noise_declared: int = 0
    clean_s: int = 0
    clean_declared: int = 0

    def add(self, o: AlarmScore) -> None:
        for name in self.__dataclass_fields__:
            a, b = getattr(self, name), getattr(o, name)
            setattr(self, name, a + b)


def _first_on(spans: list[Span], onset: float, within: float = 10.0) -> float | None:
    """Time to alarm of an episode starting at ``onset``: the earliest alarm on by onset+within."""
    best: float | None = None
    for a, b in spans:
        if b < onset or a > onset + within:
            continue
        tta = a - onset
        if best is None or tta < best:
            best = tta
    return best


def score_alarms(
    run: EcgRoomRun, ref: Reference, *, noisy_spans: list[Span] | None = None
) -> AlarmScore:
    sc = AlarmScore()
    end = ref.duration_s
    sc.hours = end / 3600.0
    t_beats = ref.beats / ref.fs
    ref_rate = _reference_rate(ref, len(run.shown_rate), 0.5)
    rhythms = underlying_rhythms(ref.rhythms)  # (NOISE continues the rhythm under it
    asys_rhythm = [
        (t0, rhythms[k + 1][0] if k + 1 < len(rhythms) else end)
        for k, (t0, lab) in enumerate(rhythms)
        if lab == "(ASYS"
    ]
    for t in run.raised("ecg.asystole"):
        if _in_spans(t, ref.vf, 2.0):
            sc.asys_in_vf += 1
        elif ref.has_beats:
            i = np.searchsorted(t_beats, t)
            if i > 0 and t - t_beats[i - 1] < 3.5:
                sc.false_asys += 1
        elif not _in_spans(t, asys_rhythm, 2.0):
            sc.false_asys += 1
    if ref.has_beats:
        for codes, limit, below in (
            (("ecg.brady", "ecg.brady_extreme"), SETTINGS.brady_bpm, True),
            (("ecg.tachy", "ecg.tachy_extreme"), SETTINGS.tachy_bpm, False),
        ):
            for code in codes:
                lim = (
                    limit
                    if code in ("ecg.brady", "ecg.tachy")
                    else (SETTINGS.brady_extreme_bpm if below else SETTINGS.tachy_extreme_bpm)
                )
                for t in run.raised(code):
                    if _in_spans(t, ref.vf, 10.0):
                        continue
                    window = [
                        r for r in ref_rate[max(0, int(t) - 15) : int(t) + 1] if r is not None
                    ]
                    if not window:
                        continue
                    ok = min(window) < lim if below else max(window) > lim
                    if not ok:
                        if below:
                            sc.false_brady += 1
                        else:
                            sc.false_tachy += 1
    ventricular = ref.vf + ref.vt_rhythm + ref.ventricular_runs(min_beats=3)
    for t in run.raised("ecg.vf"):
        if not _in_spans(t, ventricular, 10.0):
            sc.false_vf += 1
    for t in run.raised("ecg.vt"):
        if not _in_spans(t, ventricular, 10.0):
            sc.false_vt += 1
    vf_on = run.on_spans("ecg.vf", end)
    vent_on = sorted(vf_on + run.on_spans("ecg.vt", end))
    for a, b in ref.vf:
        if b - a <= 10.0:
            continue
        sc.vf_eps += 1
        tta = _first_on(vent_on, a)
        if tta is not None:
            sc.vf_alarmed += 1
            sc.vf_tta.append(tta)
        if _first_on(vf_on, a) is not None:
            sc.vf_only += 1
    if ref.has_beats:
        vt_eps = ref.ventricular_runs(min_beats=6, min_bpm=VT_BPM)
    else:
        vt_eps = [(a, b) for a, b in ref.vt_rhythm if b - a >= 3.0]
    for a, _ in vt_eps:
        sc.vt_eps += 1
        tta = _first_on(vent_on, a)
        if tta is not None:
            sc.vt_alarmed += 1
            sc.vt_tta.append(tta)
    noise = ref.noise if noisy_spans is None else noisy_spans
    noisy_on = run.on_spans("ecg.noisy", end)
    for s, shown in enumerate(run.shown_rate):
        t = s + 0.5
        if t < 10.0:
            continue
        if _in_spans(t, ref.vf, 2.0):
            continue
        in_noise = _in_spans(t, noise)
        declared = _in_spans(t + 0.5, noisy_on)
        if in_noise:
            sc.noise_s += 1
            sc.noise_declared += declared
        else:
            sc.clean_s += 1
            sc.clean_declared += declared
        r = ref_rate[s]
        if r is None or _in_spans(t, ref.vf, 3.0) or (noisy_spans is not None and not in_noise):
            continue
        sc.rate_s += 1
        if shown is not None and abs(shown - r) > max(5.0, 0.1 * r):
            sc.wrong_s += 1
    return sc


def _per_hour(n: int, hours: float) -> str:
    return f"{n:4d} ({n / hours:5.2f}/h)" if hours else f"{n:4d}"


def _tta(xs: list[float]) -> str:
    if not xs:
        return "     -"
    return f"{np.median(xs):5.1f}/{max(xs):4.1f}"


ALARM_HEADER = (
    f"{'record':<12}{'hours':>6} | {'asys':>4}{'asysVF':>7}{'brady':>6}{'tachy':>6}"
    f"{'fVF':>5}{'fVT':>5} | {'VF ep':>6}{'alarm':>6}{'VFonly':>7}{'tta med/max':>12}"
    f" | {'VT ep':>6}{'alarm':>6}{'tta med/max':>12} | {'wrong%':>7}{'noise%':>7}{'clean%':>7}"
)


def alarm_row(name: str, sc: AlarmScore) -> str:
    return (
        f"{name:<12}{sc.hours:>6.2f} | {sc.false_asys:>4}{sc.asys_in_vf:>7}{sc.false_brady:>6}"
        f"{sc.false_tachy:>6}{sc.false_vf:>5}{sc.false_vt:>5} | {sc.vf_eps:>6}{sc.vf_alarmed:>6}"
        f"{sc.vf_only:>7}{_tta(sc.vf_tta):>12} | {sc.vt_eps:>6}{sc.vt_alarmed:>6}"
        f"{_tta(sc.vt_tta):>12} | "
        f"{_pct(sc.wrong_s / sc.rate_s if sc.rate_s else math.nan):>7}"
        f"{_pct(sc.noise_declared / sc.noise_s if sc.noise_s else math.nan):>7}"
        f"{_pct(sc.clean_declared / sc.clean_s if sc.clean_s else math.nan):>7}"
    )


def beat_row(name: str, fs: float, n: int, m: MatchResult, ec57: MatchResult) -> str:
    return (
        f"{name:<12}{fs:>6.0f}{n:>7} | {_pct(m.sensitivity):>7}{_pct(m.positive_predictivity):>7}"
        f"{m.false_neg:>5}{m.false_pos:>5} | {_pct(ec57.sensitivity):>7}"
        f"{_pct(ec57.positive_predictivity):>7}{ec57.false_neg:>5}{ec57.false_pos:>5}"
    )


def _records(only: list[str]) -> list[tuple[str, pathlib.Path]]:
    out = []
    for db in DBS:
        for hea in sorted((SHARED_DIR / db).glob("*.hea")):
            name = f"{db}/{hea.stem}"
            if not hea.with_suffix(".atr").is_file():
                continue
            if only and not any(name.startswith(p) for p in only):
                continue
            out.append((name, hea.with_suffix("")))
    return out


def _qrs_pp(x: np.ndarray, ref: Reference) -> float:
    half = round(0.05 * ref.fs)
    pps = [
        float(np.ptp(x[max(b - half, 0) : b + half]))
        for b, s in zip(ref.beats.tolist(), ref.symbols, strict=True)
        if s == "N" and half <= b < x.shape[0] - half
    ]
    return float(np.median(pps)) if pps else float(np.ptp(x))


def stress_mixture(
    x: np.ndarray, noise: np.ndarray, ref: Reference, snr_db: float, offset: int
) -> tuple[np.ndarray, list[Span]]:
    fs = ref.fs
    n = round(360 * fs)
    clean = x[:n].copy()
    nz = noise[offset : offset + n]
    nz = nz - nz.mean()
    s_power = _qrs_pp(clean, ref) ** 2 / 8.0
    gain = math.sqrt(s_power / 10 ** (snr_db / 10.0) / float(np.mean(nz**2)))
    spans: list[Span] = [(60.0, 180.0), (240.0, 360.0)]
    # Noise faded in and out over 1 s: a step at the switch would be a "beat" of
    # the mixing, not of the noise.
    weight = np.zeros(n)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, round(fs)))
    for a, b in spans:
        i, j = round(a * fs), round(b * fs)
        weight[i:j] = 1.0
        weight[i : i + ramp.shape[0]] = ramp
        weight[j - ramp.shape[0] : j] = ramp[::-1]
    return clean + weight * gain * nz, spans


# The shared machine's speed varies by up to 2x from one pass to the next (seen here:
# 0.48-1.05 M samples/s over eight passes of the same code on an idle machine).
SPEED_PASSES = 5


def throughput(paths: list[pathlib.Path]) -> float:
    total_n, total_t = 0, 0.0
    for path in paths:
        sig = read_channel(path)
        fs = sig.fs
        feed = FeedView(name="ekg", kind=SignalKind.ECG, fs=fs, unit="mV")
        check = EcgCheck(room="r1", settings=EcgSettings(), feeds={"ekg": feed})
        ctx = CheckContext(room="r1", check="ecg")
        step = round(fs)
        x = np.nan_to_num(sig.samples)
        chunks = [x[i : i + step] for i in range(0, x.shape[0], step)]
        t0 = 1_767_225_600.0
        cpu = time.process_time()
        for k, c in enumerate(chunks):
            check.on_chunk(
                WaveformChunk(
                    room="r1",
                    feed="ekg",
                    kind=SignalKind.ECG,
                    unit="mV",
                    fs=fs,
                    t0=t0 + k,
                    samples=c,
                    seq=k,
                ),
                ctx,
            )
            check.on_tick(t0 + k + 1, ctx)
            ctx.drain()
        total_t += time.process_time() - cpu
        total_n += x.shape[0]
    return total_n / total_t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=[], help="record name prefixes, e.g. mitdb/2")
    ap.add_argument("--no-stress", action="store_true")
    ap.add_argument("--no-beats", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args(argv)
    logging.getLogger("wfdb").setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    wall = time.perf_counter()

    records = _records(args.only)
    beat_lines, alarm_lines = [], []
    zero = (MatchResult(0, 0, 0), MatchResult(0, 0, 0))
    gross = dict.fromkeys(("MIT-BIH", "MIT-unpaced", "cudb", "all"), zero)
    worst = (1.0, "")
    total = AlarmScore()
    non_vent = AlarmScore()
    for name, path in records:
        sig = read_channel(path)
        ref = read_reference(path, fs=sig.fs, n_samples=sig.samples.shape[0])
        if ref.has_beats and not args.no_beats:
            det = detect_samples(sig.samples, fs=sig.fs)
            vf = reference_vf(path)
            m = match_beats(ref.beats, det, fs=sig.fs, vf=vf)
            m5 = match_beats(ref.beats, det, fs=sig.fs, start_s=EC57_START_S, vf=vf)
            groups = ["all", "cudb" if name.startswith("cudb") else "MIT-BIH"]
            if groups[1] == "MIT-BIH" and name not in PACED:
                groups.append("MIT-unpaced")
            for g in groups:
                gross[g] = (gross[g][0] + m, gross[g][1] + m5)
            w = min(m.sensitivity, m.positive_predictivity)
            if w < worst[0]:
                worst = (w, name)
            beat_lines.append(beat_row(name, sig.fs, ref.beats.shape[0], m, m5))
        run = asyncio.run(replay_ecg_through_room(sig.samples, fs=sig.fs))
        sc = score_alarms(run, ref)
        total.add(sc)
        ventricular = ref.vf or ref.vt_rhythm or ref.ventricular_runs(min_beats=3)
        if not ventricular:
            non_vent.add(sc)
        alarm_lines.append(alarm_row(name, sc))
        print(f"  done {name}", file=sys.stderr, flush=True)

    if not args.no_beats:
        print("BEAT TABLE (streaming detector, channel 0, 150 ms window)")
        print(
            f"{'record':<12}{'fs':>6}{'beats':>7} | {'Se':>7}{'+P':>7}{'FN':>5}{'FP':>5}"
            f" | {'EC57 Se':>7}{'+P':>7}{'FN':>5}{'FP':>5}"
        )
        for line in beat_lines:
            print(line)
        for g, (m, m5) in gross.items():
            print(beat_row(f"gross {g}", 0, m.true_pos + m.false_neg, m, m5))
        print(f"worst single-record Se or +P: {_pct(worst[0]).strip()} % ({worst[1]})")
        print()
    print("ALARM TABLE (room pipeline, default settings; false alarms as count (per hour))")
    print(ALARM_HEADER)
    for line in alarm_lines:
        print(line)
    print(alarm_row("total", total))
    print(alarm_row("non-ventr.", non_vent))
    print(
        f"false per hour, all records ({total.hours:.1f} h): asystole "
        f"{total.false_asys / total.hours:.3f}, brady {total.false_brady / total.hours:.3f}, "
        f"tachy {total.false_tachy / total.hours:.3f}, VF {total.false_vf / total.hours:.3f}, "
        f"VT {total.false_vt / total.hours:.3f}"
    )
    if non_vent.hours:
        print(
            f"false VF+VT per 24 h on non-ventricular records ({non_vent.hours:.1f} h): "
            f"{24.0 * (non_vent.false_vf + non_vent.false_vt) / non_vent.hours:.2f}"
        )
    print()

    if not args.no_stress:
        print("NOISE STRESS (mitdb " + ", ".join(STRESS_RECORDS) + " + nstdb bw/ma, 6 min each;")
        print("wrong rate and noise declared over the noisy stretches)")
        print(
            f"{'noise':<6}{'SNR':>5} | {'Se':>7}{'+P':>7} | {'wrong%':>7}{'declared%':>10}"
            f" | {'asys':>4}{'brady':>6}{'tachy':>6}{'fVF':>5}{'fVT':>5}"
        )
        noises = {nm: read_channel(SHARED_DIR / "nstdb" / nm).samples for nm in ("bw", "ma")}
        clean = {}
        for rec in STRESS_RECORDS:
            path = SHARED_DIR / "mitdb" / rec
            sig = read_channel(path)
            clean[rec] = (sig, read_reference(path, fs=sig.fs, n_samples=round(360 * sig.fs)))
        for nm, noise in noises.items():
            for snr in SNRS:
                sc_all = AlarmScore()
                m_all = MatchResult(0, 0, 0)
                for k, rec in enumerate(STRESS_RECORDS):
                    sig, ref0 = clean[rec]
                    ref = Reference(
                        fs=ref0.fs,
                        duration_s=360.0,
                        beats=ref0.beats[ref0.beats < round(360 * sig.fs)],
                        symbols=ref0.symbols[: int(np.count_nonzero(ref0.beats < 360 * sig.fs))],
                        vf=ref0.vf,
                        vt_rhythm=ref0.vt_rhythm,
                        noise=[],
                        rhythms=ref0.rhythms,
                    )
                    mix, spans = stress_mixture(
                        sig.samples, noise, ref, snr, offset=k * round(200 * sig.fs)
                    )
                    if not args.no_beats:
                        m_all += match_beats(ref.beats, detect_samples(mix, fs=sig.fs), fs=sig.fs)
                    run = asyncio.run(replay_ecg_through_room(mix, fs=sig.fs))
                    sc_all.add(score_alarms(run, ref, noisy_spans=spans))
                print(
                    f"{nm:<6}{snr:>5} | {_pct(m_all.sensitivity):>7}"
                    f"{_pct(m_all.positive_predictivity):>7} | "
                    f"{_pct(sc_all.wrong_s / max(sc_all.rate_s, 1)):>7}"
                    f"{_pct(sc_all.noise_declared / max(sc_all.noise_s, 1)):>10} | "
                    f"{sc_all.false_asys:>4}{sc_all.false_brady:>6}{sc_all.false_tachy:>6}"
                    f"{sc_all.false_vf:>5}{sc_all.false_vt:>5}",
                    flush=True,
                )
        print()

    if not args.no_speed:
        paths = [SHARED_DIR / "mitdb" / r for r in ("100", "203", "207")]
        throughput(paths)  # warm-up, not counted: first filter designs, caches
        runs = sorted(throughput(paths) for _ in range(SPEED_PASSES))
        print(
            f"THROUGHPUT: EKG check, 1 s chunks, mitdb 100/203/207: {runs[-1]:,.0f} samples/s"
            f" (best of {SPEED_PASSES} passes after a warm-up; median {runs[len(runs) // 2]:,.0f},"
            f" worst {runs[0]:,.0f})"
        )
    print(f"(bench wall time {time.perf_counter() - wall:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
