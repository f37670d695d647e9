"""Real recordings as room feeds (issue 17): ``roommon replay RECORD`` and ``simulate --from``.

Over the shared PhysioNet records, in short windows (``--from``/``--to``) so
the suite stays fast: the room's beats are ``ecg-beats``' beats, the audit
counts a ventricular-tachyarrhythmia record's annotated episodes, the MIMIC
record's arterial pressure drives the ABP check (through resampling to the
configured rates), and an EDF copy made by ``wfdb``'s own converter replays
to the same alarms as the WFDB original. Bad input is one line, exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import json
import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import wfdb
from wfdb.io.convert.edf import wfdb_to_edf

from roommon.cli import build_parser, main
from roommon.cli.replay import replay
from roommon.cli.simulate import simulate
from roommon.config import load_config, parse_config
from roommon.core.clock import RealClock, VirtualClock
from roommon.core.model import DataOrigin, SignalKind, WaveformChunk
from roommon.ecg.offline import detect_samples
from roommon.records.edf import read_edf
from roommon.records.mapping import kind_for, resample
from roommon.records.physionet import read_channel
from roommon.records.record import Episode, RecordError, Reference
from roommon.records.wfdb_files import read_wfdb
from roommon.runtime.audit import ALARM_TYPES, audit, audit_type, merged_episodes
from roommon.runtime.daemon import Daemon
from roommon.testing import CaptureOutput, MosquittoBroker, MqttCollector
from roommon.wire.payloads import decode_feed
from tests.physionet_fixtures import physionet_record

pytestmark = pytest.mark.physionet

ALARM_LINE = re.compile(r"^\d\d:\d\d:\d\d  ALARM RAISED +\w+ +(\S+)", re.MULTILINE)


async def run_replay(*argv: str, capture: CaptureOutput | None = None) -> tuple[int, str, str]:
    args: argparse.Namespace = build_parser().parse_args(["replay", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = await replay(args, out=out, err=err, outputs=[capture] if capture else [])
    return status, out.getvalue(), err.getvalue()


def raised(out: str) -> list[str]:
    """The ``HH:MM:SS code`` of every alarm raised, as the console printed them."""
    return [f"{m.group(0)[:8]} {m.group(1)}" for m in ALARM_LINE.finditer(out)]


# --------------------------------------------------------------------------- beats


async def test_mitdb_room_beats_are_ecg_beats(tmp_path: Path) -> None:
    rec = physionet_record("mitdb", "208")
    to_s = 90
    status, out, err = await run_replay(
        str(rec), "--to", str(to_s), "--json", str(tmp_path / "a.json")
    )
    assert (status, err) == (0, "")
    doc = json.loads((tmp_path / "a.json").read_text())
    sig = read_channel(rec, channel=0)
    n = to_s * 360
    offline = detect_samples(sig.samples[:n], fs=sig.fs)  # what `ecg-beats` does, 1 s chunks
    room = np.asarray(doc["beats"]["mlii"]["detected_samples"])
    # The room's detector has no end-of-data flush: compare up to a second before the end.
    edge = n - 360
    assert room[room < edge].tolist() == offline[offline < edge].tolist()
    assert len(offline[offline < edge]) > 100
    mlii = doc["beats"]["mlii"]
    assert mlii["se"] > 0.95
    assert mlii["ppv"] > 0.95
    assert "beats mlii:" in out
    assert "beats v1:" in out


# --------------------------------------------------------------------------- audit


def test_audit_scores_true_false_missed_and_time_to_alarm() -> None:
    vt = next(t for t in ALARM_TYPES if t.name == "vt")
    spans = merged_episodes(
        [
            Episode("VT", 10.0, 20.0),
            Episode("VT", 19.0, 25.0),  # overlaps: one episode 10-25
            Episode("VT", 100.0, 104.0),
            Episode("VT", 300.0, 310.0),  # outside the window
        ],
        lo=0.0,
        hi=200.0,
    )
    assert spans == [(10.0, 25.0), (100.0, 104.0)]
    result = audit_type(vt, spans, [9.0, 14.5, 60.0, 113.0, 115.0])
    assert (result.alarms, result.true_alarms, result.false_alarms) == (5, 3, 2)
    assert (result.episodes, result.detected, result.missed) == (2, 2, 0)
    assert result.times_to_alarm_s == (-1.0, 13.0)
    missed = audit_type(vt, spans, [])
    assert (missed.detected, missed.missed, missed.false_alarms) == (0, 2, 0)


def test_beats_in_flutter_are_left_out_of_beat_scoring() -> None:
    start = 1_767_225_600.0
    reference = Reference(
        source="synthetic",
        beats_s=np.arange(2.0, 20.0, 1.0),  # 2..19 s, none annotated in the flutter
        episodes=(Episode("VFL", 8.5, 12.5),),
    )
    detected = np.concatenate([np.arange(2.0, 20.0, 1.0), [9.2, 10.1, 11.7]]) + start
    result = audit(
        reference,
        [],
        record_start_epoch=start,
        from_s=0.0,
        to_s=21.0,
        beats={"ii": (np.sort(detected), 250.0)},
    )
    (beats,) = result.beats
    # 9, 10, 11, 12 s and the three flutter "beats" are inside 8.5-12.5 s: not scored.
    assert (beats.reference, beats.detected, beats.false_pos) == (14, 14, 0)
    assert len(beats.detected_samples) == 21


async def test_vfdb_audit_counts_annotated_episodes(tmp_path: Path) -> None:
    rec = physionet_record("vfdb", "419")
    lo, hi = 30.0, 120.0
    status, out, err = await run_replay(
        str(rec), "--from", str(lo), "--to", str(hi), "--json", str(tmp_path / "a.json")
    )
    assert (status, err) == (0, "")
    doc = json.loads((tmp_path / "a.json").read_text())
    # Independently of roommon's reader: the (VFL/(VF rhythm changes of the atr file that
    # start an episode overlapping the window (each lasts to the next rhythm change).
    ann = wfdb.rdann(str(rec), "atr")
    marks = [
        (s / ann.fs, note.strip("\x00"))
        for s, sym, note in zip(ann.sample, ann.symbol, ann.aux_note, strict=True)
        if sym == "+"
    ]
    vf = [
        (t, marks[i + 1][0] if i + 1 < len(marks) else math.inf)
        for i, (t, note) in enumerate(marks)
        if note in ("(VFL", "(VF", "(VFIB")
    ]
    want = sum(1 for t, end in vf if t < hi and end > lo)
    assert want >= 5
    got = doc["types"]["vf"]
    assert got["episodes"] == want
    assert got["detected"] + got["missed"] == want
    assert got["true_alarms"] + got["false_alarms"] == got["alarms"]
    # The EKG check's VF alarm (issue 15) finds this stretch's flutter episodes.
    assert got["detected"] > 0
    assert len(got["times_to_alarm_s"]) == got["detected"]
    assert doc["window_s"] == [lo, hi]
    assert "Alarm audit against" in out
    assert re.search(r"\n  vf +\d+ +\d+ +\d+ +" + str(want), out)


# --------------------------------------------------------------------------- ABP (MIMIC)


def mimic_config(tmp_path: Path, *, systolic_low: float, mean_low: float) -> Path:
    path = tmp_path / f"mimic-{systolic_low:g}.toml"
    path.write_text(
        "[site]\nid = 'icu'\n"
        "[rooms.bed3.feeds.ekg]\nkind = 'ecg'\nfs = 250.0\n"  # 500 Hz in the record
        "[rooms.bed3.feeds.art]\nkind = 'abp'\nfs = 100.0\n"  # 125 Hz in the record
        "[rooms.bed3.checks.ecg]\n"
        f"[rooms.bed3.checks.abp]\nsystolic_low_mmhg = {systolic_low}\n"
        f"mean_low_mmhg = {mean_low}\n"
    )
    return path


async def test_mimic_abp_drives_the_abp_check_at_the_configured_rates(tmp_path: Path) -> None:
    rec = physionet_record("mimicdb", "03700181")
    sig = read_channel(rec, channel=1)
    systolic = float(np.nanpercentile(sig.samples[: 125 * 60], 99))
    # Limits just above and well below this patient's pressure: the alarm follows the data.
    high = mimic_config(tmp_path, systolic_low=systolic + 10, mean_low=systolic + 5)
    capture = CaptureOutput()
    status, out, err = await run_replay(
        str(rec), "--config", str(high), "--to", "60", capture=capture
    )
    assert (status, err) == (0, "")
    hypotension = [e for e in capture.events if e.code == "abp.hypotension"]
    assert hypotension
    assert {e.origin for e in capture.events} == {"replayed"}  # data marked replayed
    assert "signal 'ABP' -> feed bed3/art (abp, 100 Hz, mmHg)" in out
    assert "signal 'MCL1' -> feed bed3/ekg (ecg, 250 Hz, mV)" in out
    assert "signal 'RESP' left out" in out
    assert "feed bed3/art: 60 payloads\n" in out
    assert "feed bed3/ekg: 60 payloads\n" in out
    assert "abp.hypotension" in [a.split()[1] for a in raised(out)]
    low = mimic_config(tmp_path, systolic_low=systolic / 3, mean_low=systolic / 4)
    status, out, err = await run_replay(str(rec), "--config", str(low), "--to", "60")
    assert (status, err) == (0, "")
    assert not [a for a in raised(out) if a.split()[1].startswith("abp.")]
    assert "No reference annotations in the record" in out


def test_resampling_keeps_a_sine_and_marks_gaps() -> None:
    t = np.arange(0, 4, 1 / 125)
    x = np.sin(2 * np.pi * 1.2 * t)
    x[200:210] = np.nan
    y = resample(x, fs_in=125.0, fs_out=100.0)
    assert y.shape[0] == 400
    ty = np.arange(400) / 100.0
    good = np.isfinite(y)
    assert np.count_nonzero(~good) in range(7, 10)  # the 80 ms gap, at the new rate
    inner = good & (ty > 0.2) & (ty < 3.8)
    assert np.max(np.abs(y[inner] - np.sin(2 * np.pi * 1.2 * ty[inner]))) < 0.02


# --------------------------------------------------------------------------- EDF


async def test_edf_made_by_wfdb_replays_to_the_same_alarms(tmp_path: Path) -> None:
    rec = physionet_record("vfdb", "419")
    to_s = 150
    edf = tmp_path / "419.edf"
    make_edf(rec, edf, seconds=to_s, fs=250)
    # Our EDF parser gives wfdb's physical values back (to within one digital step).
    for ours, theirs in zip(read_edf(edf).signals, read_wfdb(rec).signals, strict=True):
        assert (ours.name, ours.unit, ours.fs) == (theirs.name, theirs.unit, theirs.fs)
        n = 250 * to_s
        assert ours.samples[:n] == pytest.approx(theirs.samples[:n], abs=0.006)
    s1, out_wfdb, e1 = await run_replay(str(rec), "--to", str(to_s))
    s2, out_edf, e2 = await run_replay(str(edf), "--to", str(to_s))
    assert (s1, e1, s2, e2) == (0, "", 0, "")
    alarms = raised(out_wfdb)
    assert len(alarms) >= 3  # this stretch of 419 does raise rate alarms
    assert raised(out_edf) == alarms
    assert "feed rec/ecg: 150 payloads" in out_edf
    assert "feed rec/ecg_2: 150 payloads" in out_edf


def make_edf(record: Path, edf: Path, *, seconds: int, fs: int) -> None:
    """``wfdb``'s own WFDB-to-EDF converter; it reads its output back through a file it
    never closes (``header_test = open(...).read(...)``): that warning is wfdb's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        wfdb_to_edf(str(record), sampto=fs * seconds, output_filename=str(edf))
        gc.collect()


def write_edf_plus(path: Path, *, annotations: list[tuple[float, float | None, str]]) -> None:
    """A two-second EDF+ file: one 'II' signal at 8 Hz in uV and an annotation signal."""
    n_rec, spr, tal_n = 2, 8, 60
    labels = [("II", "uV", spr), ("EDF Annotations", "", tal_n)]
    ns = len(labels)

    def col(values: list[str], width: int) -> bytes:
        return b"".join(v.encode().ljust(width)[:width] for v in values)

    header = (
        b"0".ljust(8)
        + b"X".ljust(80)
        + b"Startdate 01-JAN-2024".ljust(80)
        + b"01.01.24"
        + b"12.00.00"
        + str(256 * (ns + 1)).encode().ljust(8)
        + b"EDF+C".ljust(44)
        + str(n_rec).encode().ljust(8)
        + b"1".ljust(8)
        + str(ns).encode().ljust(4)
    )
    header += col([lab for lab, _, _ in labels], 16) + col([""] * ns, 80)
    header += col([u for _, u, _ in labels], 8)
    header += col(["-3276.8", "-1"], 8) + col(["3276.7", "1"], 8)
    header += col(["-32768", "-32768"], 8) + col(["32767", "32767"], 8)
    header += col([""] * ns, 80) + col([str(n) for _, _, n in labels], 8) + col([""] * ns, 32)
    body = b""
    for r in range(n_rec):
        body += (np.full(spr, 1000 * (r + 1), dtype="<i2")).tobytes()  # 100.0, 200.0 uV
        tal = f"+{r}\x14\x14\x00".encode()
        if r == 0:
            for onset, duration, text in annotations:
                d = f"\x15{duration:g}" if duration is not None else ""
                tal += f"+{onset:g}{d}\x14{text}\x14\x00".encode()
        body += tal.ljust(2 * tal_n, b"\x00")
    path.write_bytes(header + body)


def test_edf_plus_annotations_and_units(tmp_path: Path) -> None:
    path = tmp_path / "ann.edf"
    write_edf_plus(
        path,
        annotations=[(0.25, None, "N"), (0.5, None, "(VT"), (1.0, 0.5, "VF"), (1.5, None, "(N")],
    )
    record = read_edf(path)
    (ii,) = record.signals
    assert (ii.name, ii.unit, ii.fs) == ("II", "uV", 8.0)
    assert ii.samples[:8] == pytest.approx(np.full(8, 100.0), abs=0.1)
    assert record.reference is not None
    assert record.reference.beats_s.tolist() == [0.25]
    assert [(e.label, e.start_s, e.end_s) for e in record.reference.episodes] == [
        ("VT", 0.5, 1.5),
        ("VF", 1.0, 1.5),
        ("N", 1.5, 2.0),
    ]
    assert record.start_epoch == 1_704_110_400.0  # 2024-01-01T12:00:00Z


# --------------------------------------------------------------------------- config


async def test_write_config_is_a_valid_config_that_replays_the_same(tmp_path: Path) -> None:
    rec = physionet_record("mitdb", "208")
    path = tmp_path / "made.toml"
    s1, out1, _ = await run_replay(str(rec), "--to", "30", "--write-config", str(path))
    config = load_config(path)
    assert {n: (f.kind, f.fs) for n, f in config.rooms["rec"].feeds.items()} == {
        "mlii": (SignalKind.ECG, 360.0),
        "v1": (SignalKind.ECG, 360.0),
    }
    assert set(config.rooms["rec"].checks) == {"ecg"}
    s2, out2, _ = await run_replay(str(rec), "--config", str(path), "--to", "30")
    assert (s1, s2) == (0, 0)
    assert raised(out1) == raised(out2)


async def test_map_overrides_a_name(tmp_path: Path) -> None:
    base = write_record(tmp_path, name="LEAD_X", units="mV")
    status, out, err = await run_replay(str(base), "--map", "LEAD_X=ecg")
    assert (status, err) == (0, "")
    assert "signal 'LEAD_X' -> feed rec/lead_x (ecg, 250 Hz, mV)" in out


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("MLII", SignalKind.ECG),
        ("ECG II", SignalKind.ECG),
        ("V5", SignalKind.ECG),
        ("mcl1", SignalKind.ECG),
        ("aVF", SignalKind.ECG),
        ("PLETH", SignalKind.PLETH),
        ("ART", SignalKind.ABP),
        ("ABP", SignalKind.ABP),
        ("RESP", None),
        ("EDF Annotations", None),
    ],
)
def test_name_table(name: str, kind: SignalKind | None) -> None:
    assert kind_for(name, {}) is kind


def test_unknown_name_needs_a_map() -> None:
    with pytest.raises(RecordError, match="'BLOOD FLOW': unknown signal name"):
        kind_for("BLOOD FLOW", {})
    assert kind_for("BLOOD FLOW", {"blood flow": "none"}) is None
    assert kind_for("RESP", {"RESP": "pleth"}) is SignalKind.PLETH


# --------------------------------------------------------------------------- errors


def write_record(tmp_path: Path, *, name: str, units: str) -> Path:
    t = np.arange(0, 10, 1 / 250)
    x = (0.5 * np.sin(2 * np.pi * t)).reshape(-1, 1)
    wfdb.wrsamp(
        "rec1",
        fs=250,
        units=[units],
        sig_name=[name],
        p_signal=x,
        fmt=["16"],
        write_dir=str(tmp_path),
    )
    return tmp_path / "rec1"


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(argv)
    return status, capsys.readouterr().err.splitlines()


def test_unknown_signal_name_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write_record(tmp_path, name="FOO", units="mV")
    status, err = run_main(["replay", str(base)], capsys)
    assert status == 2
    assert len(err) == 1, err
    assert "'FOO'" in err[0], err
    assert "unknown signal name" in err[0], err


def test_unknown_unit_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write_record(tmp_path, name="II", units="furlong")
    status, err = run_main(["replay", f"{base}.hea"], capsys)
    assert status == 2
    assert len(err) == 1, err
    assert "'II'" in err[0], err
    assert "'furlong'" in err[0], err


def test_missing_signal_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(physionet_record("mitdb", "208").with_suffix(".hea"), tmp_path / "208.hea")
    status, err = run_main(["replay", str(tmp_path / "208")], capsys)
    assert status == 2
    assert len(err) == 1, err
    assert f"{tmp_path / '208.dat'}: signal file" in err[0], err


def test_truncated_edf_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edf = tmp_path / "208.edf"
    make_edf(physionet_record("mitdb", "208"), edf, seconds=30, fs=360)
    data = edf.read_bytes()
    edf.write_bytes(data[: len(data) // 2])
    status, err = run_main(["replay", str(edf)], capsys)
    assert status == 2
    assert len(err) == 1, err
    assert str(edf) in err[0], err
    assert "truncated EDF" in err[0], err


# --------------------------------------------------------------------------- simulate


@pytest.mark.broker
async def test_simulate_from_record_publishes_it_as_room_feeds_looping(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    t = np.arange(0, 2.5, 1 / 250)
    x = np.stack([0.5 * np.sin(2 * np.pi * t), 80 + 20 * np.sin(2 * np.pi * t)], axis=1)
    wfdb.wrsamp(
        "sim",
        fs=250,
        units=["mV", "mmHg"],
        sig_name=["II", "ART"],
        p_signal=x,
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    config = parse_config(
        {
            "site": {"id": "simrec"},
            "rooms": {
                "r1": {
                    "feeds": {
                        "ekg": {"kind": "ecg", "fs": 250.0},
                        "art": {"kind": "abp", "fs": 125.0},
                    }
                }
            },
        }
    )
    path = tmp_path / "room.toml"
    path.write_text(
        "[site]\nid = 'simrec'\n[rooms.r1.feeds.ekg]\nkind = 'ecg'\nfs = 250.0\n"
        "[rooms.r1.feeds.art]\nkind = 'abp'\nfs = 125.0\n"
    )
    args = build_parser().parse_args(
        [
            "simulate",
            "--from",
            str(tmp_path / "sim"),
            "--config",
            str(path),
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--speed",
            "0",
            "--seconds",
            "5",
        ]
    )
    out, err = io.StringIO(), io.StringIO()
    async with MqttCollector(broker.port, ["roommon/v1/simrec/r1/feed/#"]) as c:
        status = await simulate(args, clock=RealClock(), out=out, err=err)
        assert (status, err.getvalue()) == (0, "")
        msgs = await c.wait_for(lambda ms: len(ms) >= 12, within=10.0)
    got: dict[str, list[WaveformChunk]] = {"ekg": [], "art": []}
    for m in msgs:
        feed = m.topic.rsplit("/", 1)[1]
        fc = config.rooms["r1"].feeds[feed]
        s = decode_feed(
            m.payload,
            room="r1",
            feed=feed,
            kind=fc.kind,
            unit=fc.effective_unit,
            fs=fc.fs,
            max_bytes=262144,
        )
        assert isinstance(s, WaveformChunk)
        got[feed].append(s)
    # 2.5 s record: chunks of 1, 1, 0.5 s, then again (looping), as long as 5 s allow.
    ekg = got["ekg"]
    assert [len(c.samples) for c in ekg] == [250, 250, 125, 250, 250, 125][: len(ekg)]
    assert len(ekg) == 6
    assert [c.seq for c in ekg] == list(range(ekg[0].seq, ekg[0].seq + 6))
    assert all(c.origin is DataOrigin.SIMULATED for c in ekg + got["art"])
    assert ekg[3].t0 == pytest.approx(ekg[0].t0 + 2.5, abs=1e-6)
    assert np.concatenate([c.samples for c in ekg[:3]]) == pytest.approx(x[:, 0], abs=1e-4)
    art = np.concatenate([c.samples for c in got["art"][:3]])
    assert art.shape[0] == 313 or art.shape[0] == 312  # 125 Hz from 250 Hz
    assert "record" in out.getvalue()
    assert "origin 'simulated'" in out.getvalue()


# --------------------------------------------------------------------------- ingest


async def test_typed_chunks_meet_the_payload_rules_on_the_one_ingest_path(tmp_path: Path) -> None:
    config = parse_config(
        {"site": {"id": "s1"}, "rooms": {"r1": {"feeds": {"ekg": {"kind": "ecg", "fs": 250.0}}}}}
    )
    clock = VirtualClock(start=1_767_225_600.0)

    def chunk(unit: str, fs: float, seq: int) -> WaveformChunk:
        return WaveformChunk(
            room="r1", feed="ekg", kind=SignalKind.ECG, unit=unit, fs=fs,
            t0=clock.now() + seq - 1, samples=np.zeros(250), seq=seq,
        )

    capture = CaptureOutput()
    async with Daemon(
        config=config, clock=clock, use_broker=False, subscribe_feeds=False,
        extra_outputs=[capture], state_path=tmp_path / "s.sqlite3",
    ) as daemon:
        ingest = daemon.ingest
        assert ingest.chunk(chunk("uV", 250.0, 1), origin=DataOrigin.REPLAYED) == "rejected"
        assert ingest.last_reason == "wrong_unit"
        assert ingest.chunk(chunk("mV", 500.0, 2), origin=DataOrigin.REPLAYED) == "rejected"
        assert ingest.last_reason == "wrong_rate"
        assert ingest.chunk(chunk("mV", 250.0, 3), origin=DataOrigin.REPLAYED) == "accepted"
        other = dataclasses.replace(chunk("mV", 250.0, 4), feed="nope")
        assert ingest.chunk(other) == "unknown_feed"
        feed = daemon.pipelines["r1"].feeds["ekg"]
        assert (feed.received, dict(feed.rejected)) == (1, {"wrong_unit": 1, "wrong_rate": 1})
        assert daemon.counters["feed_rejected"] == 2
        assert daemon.counters["feed_accepted"] == 1
