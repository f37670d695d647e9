"""EKG alarms on real PhysioNet records, through a room pipeline on the virtual clock.

Each test replays an excerpt of a shared record (channel 0, 1 s chunks) with
:func:`roommon.testing.replay_ecg_through_room`: the real EKG check, alarm engine
and room state. Times are seconds from the excerpt's start; where the record's
annotations say when something happens, the expectation comes from them.
"""

from __future__ import annotations

import numpy as np
import pytest

from roommon.ecg.heart_rate import HeartRate
from roommon.ecg.offline import detect_samples, match_beats
from roommon.ecg.reference import Reference, read_reference
from roommon.records.physionet import read_channel
from roommon.testing.ecg_replay import EcgRoomRun, replay_ecg_through_room
from tests.ecg_signals import pacer_pulse
from tests.physionet_fixtures import physionet_record

pytestmark = pytest.mark.physionet


def excerpt(
    db: str, record: str, start_s: float, end_s: float
) -> tuple[np.ndarray, float, Reference]:
    path = physionet_record(db, record)
    sig = read_channel(path)
    ref = read_reference(path, fs=sig.fs, n_samples=sig.samples.shape[0])
    a, b = round(start_s * sig.fs), round(end_s * sig.fs)
    return sig.samples[a:b], sig.fs, ref


def ever(run: EcgRoomRun, code: str) -> bool:
    return bool(run.raised(code))


def longest_pause(ref: Reference, fs: float, start_s: float, end_s: float) -> tuple[float, float]:
    """The longest interval between annotated beats in ``start_s``..``end_s``, in
    seconds from ``start_s`` (a ventricular standstill)."""
    beats = ref.beats[(ref.beats >= start_s * fs) & (ref.beats < end_s * fs)] / fs - start_s
    k = int(np.argmax(np.diff(beats)))
    return float(beats[k]), float(beats[k + 1])


async def ventricular_alarm_delay(
    db: str, record: str, start_s: float, end_s: float, *, onset_in: tuple[float, float]
) -> float:
    """Seconds from the annotated VF onset inside ``onset_in`` to the first VF or VT
    alarm raised from a second before it on, replaying ``start_s``..``end_s``."""
    x, fs, ref = excerpt(db, record, start_s, end_s)
    onset = next(a for a, _ in ref.vf if onset_in[0] < a < onset_in[1]) - start_s
    run = await replay_ecg_through_room(x, fs=fs)
    raised = [t for t in run.raised("ecg.vf") + run.raised("ecg.vt") if t >= onset - 1.0]
    assert raised, "no VF or VT alarm from the onset on"
    return min(raised) - onset


async def test_ventricular_flutter_is_a_latching_high_priority_alarm_within_10_s() -> None:
    # mitdb 207's longest flutter episode (annotated [ .. ], about 98 s).
    x, fs, ref = excerpt("mitdb", "207", 1480.0, 1700.0)
    onset, end = max(ref.vf, key=lambda s: s[1] - s[0])
    onset, end = onset - 1480.0, end - 1480.0
    run = await replay_ecg_through_room(x, fs=fs)
    raised = run.raised("ecg.vf")
    assert raised, "no VF alarm during 98 s of ventricular flutter"
    assert 0.0 <= raised[0] - onset <= 10.0
    assert run.rhythm[round(onset) + 15] == "vf"
    assert run.shown_rate[round(onset) + 15] is None  # no rate is shown in VF
    assert not ever(run, "ecg.asystole")
    # The flutter ends: the condition goes, the alarm stays latched until reset.
    latched = [t for t, c, tr in run.events if c == "ecg.vf" and tr == "latched"]
    assert latched
    assert latched[-1] > end - 1.0
    assert not any(c == "ecg.vf" and tr == "cleared" for _, c, tr in run.events)
    assert run.state is not None
    alarm = next(a for a in run.state.alarms if a.code == "ecg.vf")
    assert alarm.priority == "high"


async def test_ventricular_fibrillation_on_a_monitor_record() -> None:
    # cudb cu01 (a Holter recording): VF from about 214 s to the end.
    x, fs, ref = excerpt("cudb", "cu01", 150.0, 300.0)
    onset = ref.vf[0][0] - 150.0
    run = await replay_ecg_through_room(x, fs=fs)
    raised = run.raised("ecg.vf")
    assert raised
    assert raised[0] - onset <= 10.0
    assert not [t for t in raised if t < onset - 30.0]
    assert not ever(run, "ecg.asystole")


async def test_ventricular_tachycardia_run_alarmed_within_10_s() -> None:
    # mitdb 205: a run of fast PVCs (six or more above 120 bpm) near 1461 s.
    x, fs, ref = excerpt("mitdb", "205", 1400.0, 1500.0)
    runs = [(a - 1400.0, b - 1400.0) for a, b in ref.ventricular_runs(min_beats=6, min_bpm=120)]
    runs = [r for r in runs if 0 < r[0] < 100]
    assert runs
    run = await replay_ecg_through_room(x, fs=fs)
    raised = run.raised("ecg.vt")
    assert raised
    assert 0.0 <= raised[0] - runs[0][0] <= 10.0
    assert "vt" in run.rhythm
    assert not ever(run, "ecg.vf")


async def test_no_ventricular_alarm_on_normal_rhythm_with_ectopy() -> None:
    # mitdb 119: 444 PVCs in bigeminy and trigeminy, but never three in a row.
    x, fs, _ = excerpt("mitdb", "119", 0.0, 900.0)
    run = await replay_ecg_through_room(x, fs=fs)
    for code in ("ecg.vf", "ecg.vt", "ecg.asystole", "ecg.brady", "ecg.tachy"):
        assert not ever(run, code), code


async def test_asystole_with_a_quiet_clean_baseline() -> None:
    # 40 s of mitdb 100, then the heart stops: a connected lead still shows a quiet
    # baseline: 2 µV of noise at the record's 5 µV resolution, 10-15 µV peak to peak,
    # under the 20 µV that used to count as a flat line. Not leads off.
    x, fs, ref = excerpt("mitdb", "100", 0.0, 39.5)
    rng = np.random.default_rng(3)
    step = 0.005
    quiet = x[-1] + np.round(rng.normal(0.0, 0.002, round(20 * fs)) / step) * step
    assert 0.005 <= np.ptp(quiet) < 0.02
    run = await replay_ecg_through_room(np.concatenate((x, quiet)), fs=fs)
    last_beat = float(ref.beats[ref.beats < x.shape[0]][-1]) / fs
    raised = run.raised("ecg.asystole")
    assert raised
    assert 4.0 <= raised[0] - last_beat <= 5.0
    assert not ever(run, "ecg.leads_off")
    # Quiet seconds do not clear it: it stays raised to the end.
    assert not any(c == "ecg.asystole" and tr == "cleared" for _, c, tr in run.events)
    assert run.rhythm[-1] == "asystole"
    assert run.shown_rate[-1] == 0.0


async def test_a_truly_flat_line_is_leads_off_never_asystole() -> None:
    x, fs, _ = excerpt("mitdb", "100", 0.0, 39.5)
    flat = np.full(round(20 * fs), x[-1])
    run = await replay_ecg_through_room(np.concatenate((x, flat)), fs=fs)
    assert ever(run, "ecg.leads_off")
    assert not ever(run, "ecg.asystole")
    assert run.shown_rate[-1] is None


async def test_sudden_amplitude_drop_is_relearnt_before_asystole() -> None:
    # The lead moves: from 60 s the QRS is a quarter of its size. The detector must
    # find the beats again within about 2 s, well before the 4 s asystole limit.
    x, fs, ref = excerpt("mitdb", "100", 0.0, 120.0)
    y = x.copy()
    y[round(60 * fs) :] *= 0.25
    run = await replay_ecg_through_room(y, fs=fs)
    assert not ever(run, "ecg.asystole")
    assert not ever(run, "ecg.brady")
    beats = detect_samples(y, fs=fs)
    late = ref.beats[(ref.beats > 62.5 * fs) & (ref.beats < 118 * fs)]
    m = match_beats(late, beats[(beats > 62.0 * fs) & (beats < 118.5 * fs)], fs=fs)
    assert m.sensitivity == 1.0


async def test_noise_holds_the_rate_and_its_alarms() -> None:
    # mitdb 100 with the nstdb muscle-artefact record added at -12 dB from 60 s
    # (noise power 16 times the QRS power, nst's definition): the room must show
    # "--" at least part of the time, raise ecg.noisy, and raise no rhythm alarm.
    x, fs, ref = excerpt("mitdb", "100", 0.0, 180.0)
    noise = read_channel(physionet_record("nstdb", "ma")).samples[: x.shape[0]]
    noise = noise - noise.mean()
    half = round(0.05 * fs)
    pp = np.median([np.ptp(x[b - half : b + half]) for b in ref.beats[2:150].tolist()])
    gain = np.sqrt(pp**2 / 8.0 * 10 ** (12 / 10) / np.mean(noise[round(60 * fs) :] ** 2))
    ramp = np.clip((np.arange(x.shape[0]) / fs - 60.0), 0.0, 1.0)
    run = await replay_ecg_through_room(x + ramp * gain * noise, fs=fs)
    assert ever(run, "ecg.noisy")
    assert None in run.shown_rate[65:]
    for code in ("ecg.vf", "ecg.vt", "ecg.asystole", "ecg.brady", "ecg.tachy_extreme"):
        assert not ever(run, code), code


def _wrong_rate_seconds(run: EcgRoomRun, ref_beats: np.ndarray, fs: float, secs: range) -> int:
    """Seconds in ``secs`` where the room showed a rate off the annotated one by > 10 %."""
    hr = HeartRate()
    times = (ref_beats / fs).tolist()
    k, wrong = 0, 0
    for s in range(1, secs.stop + 1):
        now = s - 0.5  # as the bench: the annotated beats up to the detector's latency
        while k < len(times) and times[k] <= now:
            hr.add_beat(times[k])
            k += 1
        ref, shown = hr.rate(now), run.shown_rate[s - 1]
        if s - 1 in secs and ref is not None and shown is not None:
            wrong += abs(shown - ref) > max(5.0, 0.1 * ref)
    return wrong


@pytest.mark.parametrize(("record", "snr_db"), [("100", 6), ("100", 0), ("119", 6), ("119", 0)])
async def test_muscle_noise_at_6_and_0_db_shows_no_wrong_rate(record: str, snr_db: int) -> None:
    # 60 s clean, then the nstdb muscle-artefact record added at 6 or 0 dB SNR (nst's
    # definition: noise power = QRS power pp^2/8 over 10^(SNR/10)) for 90 s. Muscle
    # noise fills 15-50 Hz, where the ECG between its QRS complexes is quiet: the room
    # must show "--" or the right rate, never a rate made of noise "beats" (119: PVCs
    # in bigeminy, whose own shapes are no help in telling beats from noise).
    x, fs, ref = excerpt("mitdb", record, 0.0, 150.0)
    beats = ref.beats[ref.beats < x.shape[0]]
    noise = read_channel(physionet_record("nstdb", "ma")).samples
    noise = noise[round(300 * fs) : round(300 * fs) + x.shape[0]]
    noise = noise - noise.mean()
    half = round(0.05 * fs)
    pp = np.median([np.ptp(x[b - half : b + half]) for b in beats[2:60].tolist()])
    gain = np.sqrt(pp**2 / 8.0 / 10 ** (snr_db / 10) / np.mean(noise[round(60 * fs) :] ** 2))
    ramp = np.clip(np.arange(x.shape[0]) / fs - 60.0, 0.0, 1.0)
    run = await replay_ecg_through_room(x + ramp * gain * noise, fs=fs)
    noisy = run.raised("ecg.noisy")
    assert noisy
    assert noisy[0] > 60.0  # the clean minute is not called noisy
    secs = range(62, 149)
    assert _wrong_rate_seconds(run, beats, fs, secs) <= 0.05 * len(secs)
    assert None in run.shown_rate[62:149]
    for code in ("ecg.vf", "ecg.vt", "ecg.asystole", "ecg.brady", "ecg.tachy"):
        assert not ever(run, code), code


async def test_pacing_without_capture_is_asystole_not_a_rate() -> None:
    # mitdb 107 (paced throughout) for 40 s, then capture is lost: the pacemaker goes
    # on firing at the patient's paced rate into a heart that no longer answers (a
    # quiet baseline, as in the asystole test). Its pulses (4 mV x 0.5 ms with their
    # recharge, as the sampler sees them) are not beats.
    x, fs, ref = excerpt("mitdb", "107", 0.0, 39.5)
    rng = np.random.default_rng(5)
    quiet = x[-1] + np.round(rng.normal(0.0, 0.002, round(20 * fs)) / 0.005) * 0.005
    beats = ref.beats[ref.beats < x.shape[0]]
    paced_rr = float(np.median(np.diff(beats))) / fs
    y = np.concatenate((x, quiet))
    t = beats[-1] / fs + paced_rr
    k = 0
    while t < y.shape[0] / fs - 0.1:
        i = round(t * fs)
        p = pacer_pulse(fs, phase=(0.37 * k) % 1.0)
        y[i : i + p.shape[0]] += p
        t += paced_rr
        k += 1
    run = await replay_ecg_through_room(y, fs=fs)
    raised = run.raised("ecg.asystole")
    assert raised
    assert 4.0 <= raised[0] - beats[-1] / fs <= 5.0
    assert not any(c == "ecg.asystole" and tr == "cleared" for _, c, tr in run.events)
    assert run.rhythm[-1] == "asystole"
    assert run.shown_rate[-1] == 0.0
    # Where the front end is said to remove pacer pulses and does not, they are beats:
    # the setting is what makes the difference.
    unfiltered = await replay_ecg_through_room(y, fs=fs, checks={"pacer_rejection": False})
    assert unfiltered.shown_rate[-1] is not None
    assert unfiltered.shown_rate[-1] > 30.0


@pytest.mark.parametrize("record", ["102", "104", "107", "217"])
async def test_paced_records_count_each_beat_once_and_raise_nothing(record: str) -> None:
    x, fs, ref = excerpt("mitdb", record, 0.0, 1805.0)
    beats = detect_samples(x, fs=fs)
    m = match_beats(ref.beats, beats, fs=fs)
    assert m.sensitivity >= 0.99
    assert m.positive_predictivity >= 0.99  # pacer spike + QRS would be two "beats"
    run = await replay_ecg_through_room(x, fs=fs)
    for code in ("ecg.vf", "ecg.asystole", "ecg.brady", "ecg.tachy"):
        assert not ever(run, code), code


async def test_aberrated_premature_beats_are_counted() -> None:
    # mitdb 201, 440-520 s: atrial fibrillation with aberrated atrial premature beats
    # ("a": wide, notched, half the R height and a fifth to a third of its slope),
    # often two inside one long interval. They are beats: counted, and the room's
    # rate is the annotated one.
    x, fs, ref = excerpt("mitdb", "201", 440.0, 520.0)
    lo, hi = round(441.0 * fs), round(519.0 * fs)
    sel = (ref.beats >= lo) & (ref.beats < hi)
    aberrated = ref.beats[sel][np.asarray(ref.symbols)[sel] == "a"]
    assert aberrated.shape[0] >= 10
    beats = detect_samples(x, fs=fs) + round(440.0 * fs)
    found = [bool(np.min(np.abs(beats - b)) <= 0.15 * fs) for b in aberrated.tolist()]
    assert sum(found) >= aberrated.shape[0] - 1, found
    m = match_beats(ref.beats[sel], beats[(beats >= lo) & (beats < hi)], fs=fs)
    assert m.sensitivity >= 0.985
    assert m.positive_predictivity >= 0.99
    run = await replay_ecg_through_room(x, fs=fs)
    local = ref.beats[(ref.beats >= round(440.0 * fs)) & (ref.beats < round(520.0 * fs))]
    secs = range(15, 79)
    assert _wrong_rate_seconds(run, local - round(440.0 * fs), fs, secs) <= 0.05 * len(secs)
    # (The excerpt opens at a true 31 bpm, so a bradycardia alarm there is right.)
    for code in ("ecg.asystole", "ecg.vt", "ecg.vf"):
        assert not ever(run, code), code


async def test_amplitude_drop_to_a_seventh_is_relearnt_before_asystole() -> None:
    # The lead moves and the QRS shrinks to 0.15 of its size (mitdb 119, R about
    # 1.5 mV -> 0.23 mV, still above the 0.15 mV no-response level): the detector
    # starts its floors over from complexes of the old QRS's shape, so beats are
    # found again within a few seconds and asystole is never declared.
    x, fs, ref = excerpt("mitdb", "119", 0.0, 150.0)
    y = x.copy()
    y[round(60.3 * fs) :] *= 0.15
    run = await replay_ecg_through_room(y, fs=fs)
    assert not ever(run, "ecg.asystole")
    assert not ever(run, "ecg.brady")
    beats = detect_samples(y, fs=fs)
    late = ref.beats[(ref.beats > 66.0 * fs) & (ref.beats < 148.0 * fs)]
    m = match_beats(late, beats[(beats > 65.8 * fs) & (beats < 148.2 * fs)], fs=fs)
    assert m.sensitivity >= 0.97


async def test_p_waves_in_a_ventricular_standstill_are_not_beats() -> None:
    # cudb cu31, 80-110 s: complete heart block. From about 89 s to 98.6 s the
    # ventricles stand still while the P waves go on (about 0.3 mV, as sharp for their
    # size as the 6 mV QRS, a twentieth of its height). Re-learning must not take
    # them for a shrunken QRS: that is asystole, and the room says so.
    x, fs, ref = excerpt("cudb", "cu31", 80.0, 110.0)
    still_from, still_to = longest_pause(ref, fs, 80.0, 110.0)
    assert still_to - still_from > 6.0
    beats = detect_samples(x, fs=fs) / fs
    assert not [b for b in beats.tolist() if still_from + 0.3 < b < still_to - 0.3]
    run = await replay_ecg_through_room(x, fs=fs)
    raised = run.raised("ecg.asystole")
    assert raised
    assert 4.0 <= raised[0] - still_from <= 5.5


async def test_p_waves_seen_between_the_beats_are_not_relearnt_as_a_shrunken_qrs() -> None:
    # cudb cu35, 100-160 s: complete heart block, wide escape beats of 1-5 mV, P waves
    # of 0.2-0.45 mV marching through at about 55 per minute, as sharp for their size
    # as the escape beats, and over a tenth of their height. From 135.1 s to 158.2 s
    # the ventricles stand still (23 s). Re-learning must not take the P waves for the
    # old QRS shrunk by a gain change: they were there between the beats before it.
    x, fs, ref = excerpt("cudb", "cu35", 100.0, 160.0)
    still_from, still_to = longest_pause(ref, fs, 100.0, 160.0)
    assert still_to - still_from > 20.0
    beats = detect_samples(x, fs=fs) / fs
    # About 20 P waves in the standstill; a stray artefact or two may pass, no rhythm.
    assert len([b for b in beats.tolist() if still_from + 0.3 < b < still_to - 0.3]) <= 3
    run = await replay_ecg_through_room(x, fs=fs)
    assert [t for t in run.raised("ecg.asystole") if 4.0 <= t - still_from <= 5.5]
    assert not ever(run, "ecg.vt")


def test_the_slow_end_of_a_wide_escape_beat_is_not_a_second_beat() -> None:
    # cudb cu35, 60-210 s: wide escape beats, a sharp notch and then a tall slow hump
    # peaking 230-450 ms later, as tall as the notch but a third as steep for its
    # height. The integral does not fall between the two (one complex); between a
    # beat and an early PVC, duller too, it does (the ST segment). 13 of the
    # annotated beats were found twice; the humps that remain have a valley.
    x, fs, ref = excerpt("cudb", "cu35", 60.0, 210.0)
    local = ref.beats[(ref.beats >= 60.0 * fs) & (ref.beats < 210.0 * fs)] / fs - 60.0
    beats = detect_samples(x, fs=fs) / fs
    twice = [
        b
        for r in local.tolist()
        for b in beats.tolist()
        if r + 0.15 < b < r + 0.5 and not np.any(np.abs(local - b) < 0.15)
    ]
    assert len(twice) <= 6


def test_waves_far_smaller_than_the_beat_before_them_are_not_beats() -> None:
    # cudb cu21, 100-160 s, after a shock: tall narrow beats (2-4 mV) about 0.6 s
    # apart with slow chest-compression-like waves of a few mV between them, whose
    # small wiggles reach the threshold. No beat is under a seventh of the one
    # before it; 64 false detections here before that rule, 52 with it.
    x, fs, ref = excerpt("cudb", "cu21", 100.0, 160.0)
    a, b = round(100.0 * fs), round(160.0 * fs)
    local = ref.beats[(ref.beats >= a) & (ref.beats < b)] - a
    m = match_beats(local, detect_samples(x, fs=fs), fs=fs)
    assert m.sensitivity >= 30 / 32
    assert m.false_pos <= 55


def test_heart_block_p_waves_do_not_take_over_the_beat_history() -> None:
    # cudb cu35, 270-330 s: complete heart block, wide escape beats of 1.5-4.5 mV
    # every 1-2 s, P waves of 0.15-0.45 mV between them, as sharp for their size. Once
    # a few P waves passed for beats, the median R height fell to theirs and every P
    # wave after was a "beat" (49 false detections here). A beat over fivefold that
    # median, of the size of one 1.5-10 s before it, starts the height over.
    x, fs, ref = excerpt("cudb", "cu35", 270.0, 330.0)
    a, b = round(270.0 * fs), round(330.0 * fs)
    local = ref.beats[(ref.beats >= a) & (ref.beats < b)] - a
    m = match_beats(local, detect_samples(x, fs=fs), fs=fs)
    assert m.false_neg == 0
    assert m.false_pos <= 20


def test_a_burst_of_tall_artefacts_does_not_raise_the_floor_over_the_beats() -> None:
    # vfdb 423, 1740-1770 s (annotated noise): 0.3-0.6 mV beats about 0.4 s apart,
    # then at 1748.9-1750.3 s a burst of 3-5 mV artefacts. No beat of that size came
    # before it, so it does not start the R height over: the 37 beats of 1755-1770 s
    # are all found (26 when it did).
    x, fs, _ = excerpt("vfdb", "423", 1740.0, 1770.0)
    beats = detect_samples(x, fs=fs) / fs + 1740.0
    assert int(((beats >= 1755.0) & (beats < 1770.0)).sum()) >= 35


@pytest.mark.parametrize(
    ("record", "start_s", "end_s", "max_fp", "min_tp"),
    [("cu21", 430.0, 460.0, 3, 67), ("cu23", 430.0, 490.0, 22, 19)],
)
def test_an_amplifier_recovering_from_saturation_is_not_a_beat(
    record: str, start_s: float, end_s: float, max_fp: int, min_tp: int
) -> None:
    # cudb cu21 and cu23 after shocks: the signal at the ADC's limits or missing,
    # then drifting back to baseline along a smooth curve whose bends reach the
    # threshold (cu21: 5 false detections, cu23: 24). Within 1 s of a railed stretch
    # or a gap a candidate must be at least 0.4 times as sharp (slope per mV) as
    # the recent QRS complexes; the beats themselves are all still found.
    x, fs, ref = excerpt("cudb", record, start_s, end_s)
    a, b = round(start_s * fs), round(end_s * fs)
    local = ref.beats[(ref.beats >= a) & (ref.beats < b)] - a
    m = match_beats(local, detect_samples(x, fs=fs), fs=fs)
    assert m.true_pos >= min_tp
    assert m.false_pos <= max_fp


def test_noise_label_continues_the_rhythm_under_it() -> None:
    # vfdb 419: three flutter episodes longer than 10 s, each with (NOISE labels in it.
    # The database's convention: the rhythm before a (NOISE goes on under the noise, so
    # each is one episode (the last to the end of the record), and a VF alarm during
    # its noisy part is not a false one.
    path = physionet_record("vfdb", "419")
    sig = read_channel(path)
    ref = read_reference(path, fs=sig.fs, n_samples=sig.samples.shape[0])
    long = [(round(a), round(b)) for a, b in ref.vf if b - a > 10.0]
    assert long == [(577, 752), (920, 964), (1381, 2100)]


async def test_sustained_vt_is_vt_while_it_lasts() -> None:
    # vfdb 428: an annotated (VT of 41 s from 1923 s, about 220 bpm, one wide shape beat
    # after beat. After a dozen such beats the classifier used to take them for the
    # patient's new normal beat: the room then showed "tachycardia" and the VT alarm's
    # condition ended while the VT went on.
    x, fs, ref = excerpt("vfdb", "428", 1880.0, 1970.0)
    a, b = next((a - 1880.0, b - 1880.0) for a, b in ref.vt_rhythm if b - a > 30.0)
    run = await replay_ecg_through_room(x, fs=fs)
    assert ever(run, "ecg.vt")
    late = run.rhythm[round(a) + 10 : round(b) - 2]
    assert late.count("vt") >= 0.6 * len(late), late
    assert not ever(run, "ecg.asystole")


async def test_vt_hands_over_to_vf_without_a_rate_shown_between() -> None:
    # mitdb 207's flutter (the excerpt of the first test) comes and goes as runs of
    # fast wide beats (VT) and stretches without beats (VF). VF is not declared until
    # the 4 s VF windows are clear of the run's beats: in those seconds the room used
    # to show a rate ("tachycardia", even "normal_rate") between VT and VF.
    x, fs, ref = excerpt("mitdb", "207", 1480.0, 1700.0)
    onset, end = max(ref.vf, key=lambda s: s[1] - s[0])
    run = await replay_ecg_through_room(x, fs=fs)
    rhythm = run.rhythm[round(onset - 1480.0) : round(end - 1480.0)]
    handovers = 0
    for k, label in enumerate(rhythm):
        if label != "vf" or k == 0 or rhythm[k - 1] == "vf":
            continue
        last_vt = max((j for j in range(max(k - 6, 0), k) if rhythm[j] == "vt"), default=None)
        if last_vt is not None:
            handovers += 1
            assert rhythm[last_vt:k] == ["vt"] * (k - last_vt), rhythm[last_vt : k + 1]
    assert handovers >= 2


async def test_fibrillation_carrying_high_frequencies_at_its_onset() -> None:
    # cudb cu21, the VF episode from 246 s: in its first seconds the fibrillation
    # carries 5-15 % of its power above 12 Hz (more than the 5 % once allowed), and
    # must still be alarmed within 10 s.
    assert (
        await ventricular_alarm_delay("cudb", "cu21", 200.0, 300.0, onset_in=(240.0, 250.0)) <= 10.0
    )


async def test_coarse_disorganised_fibrillation_after_vt_is_alarmed_within_10_s() -> None:
    # cudb cu27, VF from 451.6 s: a fast VT degenerates into large (2-3 mV),
    # irregular fibrillation. For its first seconds it is no sinusoid (VF filter
    # leakage 0.6-0.7) and its spectrum has more than one hump, so the organised-VF
    # tests fail it; it is fragmented, never repeats at a heartbeat's lag and fills
    # the phase plane, which is coarse VF. Alarmed within 10 s of the onset.
    assert (
        await ventricular_alarm_delay("cudb", "cu27", 420.0, 480.0, onset_in=(450.0, 453.0)) <= 10.0
    )


async def test_no_fibrillation_alarm_on_a_regular_rhythm_with_premature_beats() -> None:
    # cudb cu11 before its VF (371 s): a regular rhythm near 80 bpm with premature
    # beats (annotated throughout). Its spectrum peaks at a harmonic of the heart rate,
    # with the fundamental below it; fibrillation's spectrum has one hump.
    x, fs, ref = excerpt("cudb", "cu11", 0.0, 360.0)
    assert ref.vf[0][0] > 365.0
    run = await replay_ecg_through_room(x, fs=fs)
    assert not ever(run, "ecg.vf")
    assert not ever(run, "ecg.asystole")


async def test_clear_fibrillation_is_believed_after_two_windows() -> None:
    # cudb cu01's VF from 214 s is a clear oscillation (leakage under 0.5 in window
    # after window): two VF-like 4 s windows in a row suffice, where a less clear one
    # needs three; the alarm comes within 4.5 s of the annotated onset.
    x, fs, ref = excerpt("cudb", "cu01", 150.0, 260.0)
    onset = ref.vf[0][0] - 150.0
    run = await replay_ecg_through_room(x, fs=fs)
    raised = [t for t in run.raised("ecg.vf") if t >= onset - 30.0]
    assert raised
    assert raised[0] - onset <= 4.5


async def test_monitoring_that_starts_in_fibrillation() -> None:
    # cudb cu21 begins in VF (to 13 s). The first "beats" the detector finds are
    # fibrillation waves: they must not become the template of the patient's normal
    # beat (which, matched by the next waves, would say "beats of the patient's own
    # shape" and hold the VF alarm back). Alarmed within 10 s of the start.
    x, fs, ref = excerpt("cudb", "cu21", 0.0, 40.0)
    assert ref.vf[0][0] == 0.0
    run = await replay_ecg_through_room(x, fs=fs)
    raised = run.raised("ecg.vf")
    assert raised
    assert raised[0] <= 10.0


async def test_one_false_beat_does_not_make_a_tachycardia() -> None:
    # cudb cu09 near 157 s: an irregular rhythm at 130-138 bpm (annotated beats), just
    # under the 140 bpm limit. One extra detection splits an interval and lifts the
    # mean of twelve over the limit for a few seconds; the interquartile mean of the
    # same intervals does not move. The rate alarm needs both to agree.
    x, fs, _ = excerpt("cudb", "cu09", 100.0, 200.0)
    run = await replay_ecg_through_room(x, fs=fs)
    assert not ever(run, "ecg.tachy")
    assert not ever(run, "ecg.tachy_extreme")
    assert max(r for r in run.shown_rate[20:] if r is not None) > 140.0  # the mean did pass


async def test_fibrillation_across_the_gaps_a_defibrillator_leaves() -> None:
    # cudb cu19: VF from 491.4 s, after shocks. The recording has runs of missing
    # samples (NaN: 1 ms to 70 ms) at 488.1, 495.7 and 496.0-496.1 s, the pipeline
    # cuts them out, and the check sees gaps. The VF analysis must go on across them:
    # restarted at each, it waited a whole window of new signal and alarmed 10.6 s in.
    # Nor does the QRS detector's recovery from a gap (3 s of ecg.gap) hold VF back.
    x, fs, ref = excerpt("cudb", "cu19", 440.0, 508.0)
    onset = next(a for a, _ in ref.vf if 490.0 < a < 492.0) - 440.0
    gaps = np.flatnonzero(~np.isfinite(x[round((onset - 4.0) * fs) : round((onset + 5.0) * fs)]))
    assert gaps.shape[0] > 0
    run = await replay_ecg_through_room(x, fs=fs)
    assert ever(run, "ecg.gap")
    raised = [t for t in run.raised("ecg.vf") if t >= onset - 1.0]
    assert raised
    assert raised[0] - onset <= 10.0
    assert any(a <= raised[0] < b for a, b in run.on_spans("ecg.gap", 68.0))
    assert not [t for t in run.raised("ecg.asystole") if t >= onset]


async def test_multiform_vt_whose_beats_change_shape_is_vt() -> None:
    # vfdb 423: an annotated (VT from 898.5 s, near 190 bpm, whose wide beats change
    # their shape from one to the next (correlation with the beat before often under
    # 0.7). Counted only as a run of one shape, it raised nothing until the VF analysis
    # called it fibrillation 11.5 s in. Wide beats in a row, fast, are VT however they
    # are shaped.
    x, fs, ref = excerpt("vfdb", "423", 860.0, 940.0)
    onset = next(a for a, _ in ref.vt_rhythm if 895.0 < a < 900.0) - 860.0
    run = await replay_ecg_through_room(x, fs=fs)
    raised = [t for t in run.raised("ecg.vt") if t >= onset - 1.0]
    assert raised
    assert raised[0] - onset <= 10.0
    assert "vt" in run.rhythm[round(onset) : round(onset) + 10]
    assert not ever(run, "ecg.asystole")


@pytest.mark.parametrize(
    ("db", "record", "start_s"), [("vfdb", "425", 1250.0), ("cudb", "cu35", 0.0)]
)
async def test_noise_beats_are_not_multiform_vt(db: str, record: str, start_s: float) -> None:
    # Artefact found as fast "beats" of ever-changing shape, with no ventricular event
    # annotated: vfdb 425 near 1450 s (muscle noise on a wandering baseline) and cudb
    # cu35 near 65 s. The steep slope of each "beat" fills the whole 250 ms cut: no QRS
    # is that wide, noise is steep everywhere. Not multiform VT.
    x, fs, ref = excerpt(db, record, start_s, start_s + 250.0)
    assert not [s for s in ref.vf + ref.vt_rhythm if s[1] > start_s and s[0] < start_s + 260.0]
    run = await replay_ecg_through_room(x, fs=fs)
    assert not ever(run, "ecg.vt")


async def test_the_normal_beats_width_follows_its_template() -> None:
    # mitdb 203 opens with 10 s of noise: the template learnt from its first five beats
    # measured 156 ms of steep slope, twice the QRS's, and its width was never taken
    # again while its shape followed the beats. The VT run at 1605.6 s (one shape, about
    # 175 bpm, 80-240 ms of steep slope) was then "not wider than normal": not alarmed.
    x, fs, ref = excerpt("mitdb", "203", 0.0, 1620.0)
    runs = [a for a, _ in ref.ventricular_runs(min_beats=6, min_bpm=120) if 1600 < a < 1610]
    assert runs
    run = await replay_ecg_through_room(x, fs=fs)
    raised = [t for t in run.raised("ecg.vt") if t >= runs[0] - 1.0]
    assert raised
    assert raised[0] - runs[0] <= 10.0
    assert not ever(run, "ecg.vf")
    assert not ever(run, "ecg.asystole")


async def test_an_interval_split_by_an_extra_detection_is_no_tachycardia() -> None:
    # cudb cu19, 362-378 s: an irregular rhythm rising to 130-138 bpm (annotated beats),
    # just under the 140 bpm limit. One extra detection at 371.5 s, between two beats
    # 0.46 s apart, splits that interval into two of 0.23 s: both the mean and the
    # interquartile mean of the twelve intervals rise to about 148 bpm. Joined again
    # (two intervals under 60 % of the median adding up to about one), it is 135.
    # (The detector once found the slurred end of the beat at 371.30 s as that extra
    # beat; it no longer does, so a copy of that beat's QRS, as an artefact would,
    # makes it.)
    x, fs, _ = excerpt("cudb", "cu19", 300.0, 400.0)
    qrs = x[round(71.22 * fs) : round(71.38 * fs)]
    at = round(71.45 * fs)
    x = x.copy()
    x[at : at + qrs.shape[0]] += qrs - qrs[0]
    run = await replay_ecg_through_room(x, fs=fs)
    assert max(r for r in run.shown_rate[70:78] if r is not None) > 140.0  # the mean did pass
    assert not ever(run, "ecg.tachy")
    assert not ever(run, "ecg.tachy_extreme")


async def test_vt_of_beats_shaped_like_the_normal_beat_but_larger() -> None:
    # mitdb 203 (atrial fibrillation, multiform PVCs), 303.8-306.8 s: nine ventricular
    # beats at about 160 bpm, four beats after a run of four slow, wide ones. In this
    # lead (MLII) they keep the normal beat's shape (correlation 0.89-0.97 with its
    # template) but not its size: 1.35-1.75 times its RMS, twice the beats before them.
    # Two things hid the run: the wide, dull PVCs before it had lowered the reference
    # QRS slope of the noise index (the median of all recent beats), so the fast run's
    # busy second read as noisy (0.120) and two of its beats were dropped; and beats of
    # the normal shape were never ventricular. Now the reference is the normal beats'
    # slope, and a sudden run of fast beats of one shape, much larger than normal, is VT.
    x, fs, ref = excerpt("mitdb", "203", 240.0, 330.0)
    runs = [
        (a - 240.0, b - 240.0)
        for a, b in ref.ventricular_runs(min_beats=6, min_bpm=120)
        if 300 < a < 310
    ]
    assert runs
    onset, end = runs[0]
    run = await replay_ecg_through_room(x, fs=fs)
    raised = [t for t in run.raised("ecg.vt") if t >= onset - 1.0]
    assert raised
    assert raised[0] - onset <= 10.0
    assert not [t for t in run.raised("ecg.noisy") if onset <= t <= end + 1.0]
    assert not ever(run, "ecg.vf")
    assert not ever(run, "ecg.asystole")
