"""Unannotated PhysioNet records (250, 500, 720 Hz), the heart-rate rule and the ecg-beats CLI."""

from __future__ import annotations

import argparse
import io
import re

import numpy as np
import pytest

from roommon.cli import main
from roommon.cli.ecg_beats import add_parser
from roommon.ecg.heart_rate import HeartRate
from roommon.ecg.offline import detect_record
from tests.physionet_fixtures import physionet_record


# Expected rates, and why: a103l and v102s are ICU recordings whose alarms were
# judged false, so a regular rhythm underneath is expected; the ranges are the
# rates the detector finds independently on both ECG leads of each record
# (a103l ~120-127, v102s ~104 bpm), not annotations. 03700181 is a steady
# tachycardia near 122 bpm (both the R-R median and the mean agree). EC13 figure
# 3a is ventricular bigeminy, 80 bpm, and 3b slow alternating ventricular
# bigeminy, 60 bpm: the rates the standard's text gives (quoted from memory of
# IEC 60601-2-27 / EC13 4.1.2.1 e; the standard itself could not be checked here).
@pytest.mark.physionet
@pytest.mark.parametrize(
    ("db", "record", "channel", "low", "high"),
    [
        ("challenge2015", "a103l", 0, 115.0, 130.0),
        ("challenge2015", "v102s", 1, 95.0, 112.0),
        ("mimicdb", "03700181", 0, 118.0, 126.0),
        ("aami-ec13", "aami3a", 0, 78.0, 82.0),
        ("aami-ec13", "aami3b", 0, 58.0, 62.0),
    ],
)
def test_mean_rate_of_unannotated_records(
    db: str, record: str, channel: int, low: float, high: float
) -> None:
    from roommon.records.physionet import read_channel

    path = physionet_record(db, record)
    sig = read_channel(path, channel=channel)
    beats = detect_record(path, channel=channel)
    span_s = (beats[-1] - beats[0]) / sig.fs
    mean_rate = 60.0 * (beats.shape[0] - 1) / span_s
    assert low <= mean_rate <= high
    assert np.all(np.diff(beats) > 0.2 * sig.fs)  # nothing inside the refractory period


def test_heart_rate_rule() -> None:
    hr = HeartRate()
    assert hr.rate() is None
    for i in range(20):
        hr.add_beat(i * 0.5)  # 120 bpm
    assert hr.rate() == pytest.approx(120.0)
    assert len(hr.intervals()) == 12
    slow = HeartRate()
    for i in range(10):
        slow.add_beat(i * 2.0)  # 30 bpm: four intervals fill the 8 s span
    assert len(slow.intervals()) == 4
    assert slow.rate() == pytest.approx(30.0)
    # A pause: the open interval counts once it exceeds the mean, the rate falls.
    assert hr.rate(now=9.5 + 0.4) == pytest.approx(120.0)
    paused = hr.rate(now=9.5 + 3.0)
    assert paused is not None
    assert paused < 100.0
    hr.add_beat(5.0)  # out of order: ignored
    assert hr.last_beat == 9.5


def test_robust_rate_is_not_moved_by_one_false_beat() -> None:
    # 75 bpm, and one noise "beat" splitting an interval in two: the mean of the
    # intervals in the 8 s span reads 10 % high; their interquartile mean (the rate in
    # a doubtful signal) stays at 75. Bigeminy (0.5 s, 1.1 s, ...) reads the same.
    hr = HeartRate()
    for i in range(12):
        hr.add_beat(i * 0.8)
    hr.add_beat(8.8 + 0.3)
    for i in range(12, 15):
        hr.add_beat(i * 0.8)
    mean = hr.rate()
    assert mean is not None
    assert mean >= 82.0
    assert hr.rate(robust=True) == pytest.approx(75.0)
    big = HeartRate()
    t = 0.0
    for i in range(20):
        big.add_beat(t)
        t += 0.5 if i % 2 else 1.1
    assert big.rate(robust=True) == pytest.approx(big.rate() or 0.0)


def test_unsplit_rate_joins_a_split_interval_and_nothing_else() -> None:
    # 130 bpm (0.46 s) and one extra detection halving an interval (the mean reads over
    # 140): joined again. A rhythm of its own is left as it is: bigeminy (short, long),
    # a couplet of premature beats at 70 % of the cycle and a steady tachycardia. (An
    # early couplet, each beat under 60 % of the cycle and the two adding up to about
    # one, would be joined: the tachycardia decision counts it one beat short.)
    hr = HeartRate()
    beats = [i * 0.46 for i in range(6)] + [5 * 0.46 + 0.23] + [i * 0.46 for i in range(6, 13)]
    for b in sorted(beats):
        hr.add_beat(b)
    assert (hr.rate() or 0.0) > 140.0
    assert hr.unsplit_rate() == pytest.approx(60.0 / 0.46)
    for rr in ([0.5, 1.1] * 7, [0.8] * 5 + [0.56, 0.56] + [0.8] * 6, [0.35] * 14):
        other = HeartRate()
        t = 0.0
        for x in rr:
            other.add_beat(t)
            t += x
        other.add_beat(t)
        assert other.unsplit_rate() == pytest.approx(other.rate() or 0.0)


@pytest.mark.physionet
def test_ecg_beats_cli(capsys: pytest.CaptureFixture[str]) -> None:
    path = physionet_record("mitdb", "100")
    assert main(["ecg-beats", str(path), "--chunk-seconds", "0.5", "--samples"]) == 0
    printed = [int(line) for line in capsys.readouterr().out.split()]
    assert printed == detect_record(path, chunk_seconds=0.5).tolist()
    assert len(printed) > 2200
    parser = argparse.ArgumentParser(prog="roommon")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["ecg-beats", str(path), "--channel", "1", "--samples"])
    out = io.StringIO()
    assert args.func(args, out=out) == 0
    assert len(out.getvalue().split()) > 2200
    assert main(["ecg-beats", "/nonexistent/record"]) == 1


@pytest.mark.physionet
@pytest.mark.parametrize("suffix", ["", ".dat", ".hea"])
def test_ecg_beats_table_with_rr_rate_and_se_p(
    capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    """With or without the extension; with 100.atr beside the record, Se and +P."""
    path = physionet_record("mitdb", "100")
    assert main(["ecg-beats", f"{path}{suffix}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["beat", "sample", "time", "RR", "(s)", "HR", "(bpm)"]
    beats = detect_record(path).tolist()
    first, second = lines[1].split(), lines[2].split()
    assert first == ["1", str(beats[0]), f"0:00:00.{round(beats[0] / 360 * 1000):03d}", "-", "-"]
    rr = (beats[1] - beats[0]) / 360
    assert second[3] == f"{rr:.3f}"
    assert second[4] == f"{60 / rr:.0f}"
    assert lines[-2].startswith(f"{len(beats)} beats in 0:30:06 (360 Hz)")
    assert re.fullmatch(
        r"against 100\.atr \(\d+ reference beats, ±150 ms\): Se 99\.\d\d % "
        r"\(TP \d+, FN \d+\), \+P \d+\.\d\d % \(FP \d+\)",
        lines[-1],
    ), lines[-1]
