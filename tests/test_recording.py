"""roommon record / replay: real broker, real MCAP files, a real daemon on the virtual clock."""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.writer import Writer

from roommon.checks.declarations.ecg import EcgSettings
from roommon.checks.declarations.spo2 import DESAT, DESAT_CRITICAL
from roommon.cli import build_parser, main
from roommon.cli.record import channel_describer, record, topic_schema
from roommon.cli.replay import replay
from roommon.config import Config, load_config
from roommon.core.clock import RealClock, VirtualClock
from roommon.core.model import DataOrigin, NumericReading, SignalKind, WaveformChunk
from roommon.runtime.daemon import Daemon
from roommon.testing import (
    LOOPBACK,
    CaptureOutput,
    MosquittoBroker,
    MqttCollector,
    free_port,
)
from roommon.transports.mcap_files import RECORDER_TOPIC, McapRecording, open_recording
from roommon.transports.subscriber import FeedRecorder
from roommon.wire.payloads import encode_reading, encode_waveform
from simulators.ecg import EcgSimulator

SITE = "hosp"
ROOM = "proc1"
FS = 250.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
#: A gateway delivers a chunk a little after its last sample is taken.
LATENCY_S = 0.05
ASYSTOLE_AT, ASYSTOLE_S = 30, 6
DESAT_AT, DESAT_S = 60, 40
BAD_AT = 10.5
EKG_TOPIC = f"roommon/v1/{SITE}/{ROOM}/feed/ekg"
SPO2_TOPIC = f"roommon/v1/{SITE}/{ROOM}/feed/spo2"


def write_config(tmp: Path, *, port: int = 1883, site: str = SITE) -> Path:
    path = tmp / f"room-{site}.toml"
    path.write_text(
        f"""
[site]
id = "{site}"

[broker]
host = "{LOOPBACK}"
port = {port}
reconnect_initial_s = 0.05
reconnect_max_s = 0.2

[daemon]
state_dir = "{tmp / "state"}"

[rooms.{ROOM}.feeds.ekg]
kind = "ecg"
fs = {FS}

[rooms.{ROOM}.feeds.spo2]
kind = "spo2"

[rooms.{ROOM}.checks.ecg]
[rooms.{ROOM}.checks.spo2]

[rooms.{ROOM}.escalation]
notify = ["{ROOM}-nurse"]
high = [{{ after_s = 20, to = "charge-nurse" }}]
"""
    )
    return path


def ekg_chunk(sim: EcgSimulator, k: int, *, t0: float = T0) -> WaveformChunk:
    return WaveformChunk(
        room=ROOM, feed="ekg", kind=SignalKind.ECG, unit="mV", fs=FS, t0=t0 + k,
        samples=sim.next_chunk(round(FS)), seq=k,
    )


def spo2_reading(k: int, spo2: float, *, t0: float = T0) -> NumericReading:
    return NumericReading(
        room=ROOM, feed="spo2", kind=SignalKind.SPO2, t=t0 + k + 1,
        values={"spo2": spo2, "pulse_rate": 75.0, "perfusion_index": 2.0}, seq=k,
    )


def spo2_at(k: int) -> float:
    return 84.0 if DESAT_AT <= k < DESAT_AT + DESAT_S else 97.0


# --------------------------------------------------------------------------- replay


@pytest.fixture(scope="module")
def two_minutes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """2 minutes of EKG (asystole 30-36 s) and SpO2 (84 % 60-100 s), one malformed payload.

    Written with mcap's own writer, as any other tool might; no roommon metadata.
    Returns the file and the time of the last R peak before the asystole.
    """
    path = tmp_path_factory.mktemp("rec") / "two-minutes.mcap"
    sim = EcgSimulator(fs=FS, seed=3)
    with path.open("wb") as f:
        w = Writer(f)
        w.start()
        ekg = w.register_channel(topic=EKG_TOPIC, message_encoding="json", schema_id=0)
        spo2 = w.register_channel(topic=SPO2_TOPIC, message_encoding="json", schema_id=0)
        messages: list[tuple[float, int, bytes]] = []
        for k in range(120):
            sim.asystole(ASYSTOLE_AT <= k < ASYSTOLE_AT + ASYSTOLE_S)
            chunk = ekg_chunk(sim, k)
            messages.append((chunk.t_end + LATENCY_S, ekg, encode_waveform(chunk)))
            reading = spo2_reading(k, spo2_at(k))
            messages.append((reading.t + 0.02, spo2, encode_reading(reading)))
        messages.append((T0 + BAD_AT, spo2, b'{"v": 1, "kind": "spo2", "seq": '))
        for log_t, cid, data in sorted(messages, key=lambda m: m[0]):
            ns = round(log_t * 1e9)
            w.add_message(channel_id=cid, log_time=ns, publish_time=ns, data=data)
        w.finish()  # type: ignore[no-untyped-call]
    last_beat = max(r for r in sim.beats if r < ASYSTOLE_AT * FS) / FS
    return path, T0 + last_beat


class PacingClock:
    """A pacing clock that records the deadlines it is asked to wait for and returns at once."""

    def __init__(self) -> None:
        self.t = 0.0
        self.deadlines: list[float] = []

    def now(self) -> float:
        return 1_767_225_600.0 + self.t

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.t + seconds)

    async def sleep_until(self, monotonic_deadline: float) -> None:
        self.deadlines.append(monotonic_deadline)
        self.t = max(self.t, monotonic_deadline)


async def run_replay(argv: list[str], **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args(["replay", *argv])
    code = await replay(args, out=out, err=err, **kw)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


async def test_replay_raises_the_recorded_alarms_at_the_recorded_times(
    tmp_path: Path, two_minutes: tuple[Path, float]
) -> None:
    path, last_beat = two_minutes
    capture = CaptureOutput()
    code, out, _ = await run_replay(
        [str(path), "--config", str(write_config(tmp_path))], outputs=[capture]
    )
    assert code == 0
    raised = {e.code: e for e in capture.events if e.transition == "raised"}
    assert {"ecg.asystole", "spo2.desat_critical", "spo2.desat"} <= set(raised)
    assert {e.origin for e in capture.events} == {DataOrigin.REPLAYED.value}
    # Replayed data pages nobody: route_simulated is off in this config.
    assert all(not o.notifications for o in capture.outgoing)

    asystole_s = EcgSettings().asystole_s
    # Seen on the arrival of the chunk that completes asystole_s of flat signal (plus
    # at most the QRS detector's confirmation latency, well under a second): at that
    # chunk's recorded log time, on the virtual clock.
    t_asystole = raised["ecg.asystole"].t
    assert last_beat + asystole_s <= t_asystole <= last_beat + asystole_s + 2.0 + LATENCY_S
    assert (t_asystole - T0 - LATENCY_S) == pytest.approx(round(t_asystole - T0), abs=1e-6)
    first_low = T0 + DESAT_AT + 1 + 0.02  # log time of the first 84 % reading
    for spec in (DESAT_CRITICAL, DESAT):
        t = raised[spec.code].t
        assert first_low + spec.delay_s <= t <= first_low + spec.delay_s + 1.0, spec.code

    # The malformed payload counted as rejected, as the live daemon would.
    rejected = capture.states[-1].feeds["spo2"].rejected
    assert rejected == {"bad_json": 1}
    assert "1 rejected {'bad_json': 1}" in out
    assert "ALARM RAISED       HIGH   ecg.asystole" in out
    assert "Alarm burden of this replay" in out


async def test_replay_is_deterministic(tmp_path: Path, two_minutes: tuple[Path, float]) -> None:
    path, _ = two_minutes
    config = write_config(tmp_path)
    runs = []
    for _ in range(2):
        capture = CaptureOutput()
        code, _, _ = await run_replay([str(path), "--config", str(config)], outputs=[capture])
        assert code == 0
        runs.append(
            [(e.code, e.transition, e.t, e.priority, e.value, e.origin) for e in capture.events]
        )
    assert runs[0] == runs[1]
    assert len(runs[0]) >= 4


async def test_replay_window_from_to(tmp_path: Path, two_minutes: tuple[Path, float]) -> None:
    path, _ = two_minutes
    capture = CaptureOutput()
    code, out, _ = await run_replay(
        [str(path), "--config", str(write_config(tmp_path)), "--from", "50", "--to", "90"],
        outputs=[capture],
    )
    assert code == 0
    codes = {e.code for e in capture.events if e.transition == "raised"}
    assert "spo2.desat_critical" in codes
    assert "ecg.asystole" not in codes  # before the window
    assert "0 rejected" in out  # the bad payload (at 10.5 s) is outside it too
    assert capture.events[0].t >= T0 + 50


async def test_replay_paced_at_speed_n_runs_at_that_pace(
    tmp_path: Path, two_minutes: tuple[Path, float]
) -> None:
    path, _ = two_minutes
    # 10 recorded seconds at 100x: the replay waits 0.1 s on its pacing clock, in steps.
    pacer = PacingClock()
    code, _, _ = await run_replay(
        [str(path), "--config", str(write_config(tmp_path)), "--to", "10", "--speed", "100"],
        pacer=pacer,
    )
    assert code == 0
    assert pacer.deadlines
    assert pacer.deadlines == sorted(pacer.deadlines)
    assert pacer.deadlines[-1] == pytest.approx(10 / 100, abs=0.011)
    assert max(b - a for a, b in itertools.pairwise([0.0, *pacer.deadlines])) <= 1 / 100 + 1e-9


def test_replay_refuses_a_file_that_is_not_mcap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "notes.mcap"
    bogus.write_bytes(b"these are not the feeds you are looking for\n" * 10)
    assert main(["replay", str(bogus), "--config", str(write_config(tmp_path))]) == 2
    assert "is not an MCAP file" in capsys.readouterr().err


def test_replay_refuses_a_recording_of_another_site(
    tmp_path: Path, two_minutes: tuple[Path, float], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = two_minutes
    other = write_config(tmp_path, site="elsewhere")
    assert main(["replay", str(path), "--config", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"was recorded at site '{SITE}'" in err
    assert "is site 'elsewhere'" in err


def test_replay_refuses_a_feed_recorded_as_another_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pleth.mcap"
    with path.open("wb") as f:
        w = Writer(f)
        w.start()
        cid = w.register_channel(
            topic=EKG_TOPIC, message_encoding="json", schema_id=0,
            metadata={"room": ROOM, "feed": "ekg", "kind": "pleth", "fs": "75.0"},
        )
        w.add_message(channel_id=cid, log_time=int(T0 * 1e9), publish_time=0, data=b"{}")
        w.finish()  # type: ignore[no-untyped-call]
    assert main(["replay", str(path), "--config", str(write_config(tmp_path))]) == 2
    assert "feed proc1/ekg was recorded as pleth" in capsys.readouterr().err


# --------------------------------------------------------------------------- record


def _config(tmp: Path, port: int = 1883) -> Config:
    return load_config(write_config(tmp, port=port))


@pytest.mark.parametrize(
    ("tail", "schema"),
    [
        (f"{ROOM}/feed/ekg", "feed_waveform"),
        (f"{ROOM}/feed/spo2", "feed_reading"),
        (f"{ROOM}/feed/nosuch", None),
        (f"{ROOM}/alarm", "alarm_event"),
        (f"{ROOM}/state", "room_state"),
        (f"{ROOM}/event", "room_event"),
        (f"{ROOM}/timer", "timer"),
        (f"{ROOM}/timer/event", "timer_event"),
        (f"{ROOM}/command/ui-1", None),
        (f"{ROOM}/reply/ui-1", "command_reply"),
        ("notify/charge-nurse", "notify"),
        ("status/main", "status"),
    ],
)
def test_topic_schema(tmp_path: Path, tail: str, schema: str | None) -> None:
    config = _config(tmp_path)
    assert topic_schema(f"roommon/v1/{SITE}/{tail}", site=SITE, config=config) == schema


def record_args(config: Path, out: Path, *extra: str) -> argparse.Namespace:
    return build_parser().parse_args(
        ["record", "--config", str(config), "--out", str(out), *extra]
    )


async def publish_feeds(
    port: int, sim: EcgSimulator, ks: range, *, t0: float, client_id: str
) -> None:
    async with aiomqtt.Client(
        LOOPBACK, port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        for k in ks:
            sim.asystole(ASYSTOLE_AT <= k < ASYSTOLE_AT + ASYSTOLE_S)
            await client.publish(EKG_TOPIC, encode_waveform(ekg_chunk(sim, k, t0=t0)), qos=1)
            await client.publish(SPO2_TOPIC, encode_reading(spo2_reading(k, 97.0, t0=t0)), qos=1)


def read_back(path: Path) -> dict[str, list[tuple[int, int, bytes, str | None]]]:
    """Topic -> [(log_time, publish_time, data, schema name)] with mcap's reader."""
    got: dict[str, list[tuple[int, int, bytes, str | None]]] = {}
    with path.open("rb") as f:
        reader = make_reader(f)
        for schema, channel, message in reader.iter_messages(log_time_order=True):
            got.setdefault(channel.topic, []).append(
                (message.log_time, message.publish_time, message.data,
                 schema.name if schema is not None else None)
            )
    return got


@pytest.mark.broker
async def test_record_survives_a_broker_restart(tmp_path: Path, broker: MosquittoBroker) -> None:
    config = write_config(tmp_path, port=broker.port)
    out_path = tmp_path / "room.mcap"
    out, err = io.StringIO(), io.StringIO()
    stop = asyncio.Event()
    holder: list[FeedRecorder] = []
    task = asyncio.create_task(
        record(record_args(config, out_path), clock=RealClock(), out=out, err=err, stop=stop,
               on_recorder=holder.append)
    )
    try:
        while not holder:  # the hook runs once the recorder is subscribed
            await asyncio.sleep(0)
            assert not task.done(), err.getvalue()
        recorder = holder[0]
        t0 = RealClock().now()
        sim = EcgSimulator(fs=FS, seed=5)
        await publish_feeds(broker.port, sim, range(40), t0=t0, client_id="gw-1")
        await asyncio.wait_for(recorder.wait_for(lambda r: r.received >= 80), 10)

        broker.kill()
        await asyncio.wait_for(recorder.wait_for(lambda r: not r.connected), 10)
        broker.start()
        await asyncio.wait_for(recorder.wait_for(lambda r: r.connected), 10)
        await publish_feeds(broker.port, sim, range(40, 50), t0=t0, client_id="gw-2")
        await asyncio.wait_for(recorder.wait_for(lambda r: r.received >= 100), 10)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0

    assert "lost" in err.getvalue()
    assert "back after" in err.getvalue()
    summary = out.getvalue()
    assert "100 messages on 2 topics" in summary
    assert "1 broker outage(s)" in summary

    got = read_back(out_path)
    assert set(got) == {EKG_TOPIC, SPO2_TOPIC, RECORDER_TOPIC}
    ekg = got[EKG_TOPIC]
    assert [json.loads(d)["seq"] for _, _, d, _ in ekg] == list(range(50))
    assert {s for *_, s in ekg} == {"feed_waveform"}
    assert {s for *_, s in got[SPO2_TOPIC]} == {"feed_reading"}
    for log_ns, pub_ns, data, _ in ekg:
        assert pub_ns == round(json.loads(data)["t0"] * 1e9)
        assert abs(log_ns - round(t0 * 1e9)) < 120 * 10**9
    for ms in got.values():
        assert [m[0] for m in ms] == sorted(m[0] for m in ms)
    # The asystole stretch is in the file byte for byte.
    flat = np.concatenate([json.loads(d)["samples"] for _, _, d, _ in ekg[31:35]])
    assert np.ptp(flat) < 0.5
    events = [json.loads(d)["event"] for _, _, d, _ in got[RECORDER_TOPIC]]
    assert events == ["connected", "lost", "connected", "stopped"]
    # roommon's own reader agrees, and the file says what it is.
    rec = open_recording(out_path)
    assert rec.complete
    assert rec.site() == SITE
    assert rec.channels[EKG_TOPIC]["kind"] == "ecg"


@pytest.mark.broker
async def test_record_for_seconds_stamps_the_clock_time(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    config = write_config(tmp_path, port=broker.port)
    out_path = tmp_path / "short.mcap"
    clock = VirtualClock(start=T0 + 3600)
    out, err = io.StringIO(), io.StringIO()
    holder: list[FeedRecorder] = []
    task = asyncio.create_task(
        record(record_args(config, out_path, "--seconds", "30", "--all"), clock=clock,
               out=out, err=err, on_recorder=holder.append)
    )
    while not holder:
        await asyncio.sleep(0)
        assert not task.done(), err.getvalue()
    await clock.advance(10.0)
    await publish_feeds(broker.port, EcgSimulator(fs=FS), range(3), t0=T0, client_id="gw")
    await asyncio.wait_for(holder[0].wait_for(lambda r: r.received >= 6), 10)
    await clock.advance(20.0)  # --seconds 30 elapse on the recorder's clock
    assert await asyncio.wait_for(task, 10) == 0
    # Live counts per topic while it ran (a line every 10 s when not on a terminal).
    assert "roommon record: 0:00:10 0 messages\n" in out.getvalue()
    assert (f"roommon record: 0:00:20 6 messages: {ROOM}/feed/ekg 3, {ROOM}/feed/spo2 3\n"
            in out.getvalue())
    got = read_back(out_path)
    assert {log for log, *_ in got[EKG_TOPIC]} == {round((T0 + 3610) * 1e9)}
    assert [p for _, p, _, _ in got[EKG_TOPIC]] == [round((T0 + k) * 1e9) for k in range(3)]
    with out_path.open("rb") as f:
        meta = {m.name: m.metadata for m in make_reader(f).iter_metadata()}
    assert meta["roommon.recording"]["filters"] == f"roommon/v1/{SITE}/#"
    assert meta["roommon.recording.end"]["messages"] == "6"


def test_record_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "keep.mcap"
    existing.write_bytes(b"precious")
    assert main(["record", "--config", str(write_config(tmp_path)), "--out", str(existing)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert existing.read_bytes() == b"precious"


async def test_an_unfinished_recording_replays_up_to_its_last_flush(
    tmp_path: Path, two_minutes: tuple[Path, float]
) -> None:
    """A recorder killed without a goodbye leaves no summary; what was flushed replays."""
    config = _config(tmp_path)
    src = open_recording(two_minutes[0])
    path = tmp_path / "live.mcap"
    cut = tmp_path / "killed.mcap"
    describe = channel_describer(SITE, config)
    with McapRecording(path=path, info={"site": SITE}, describe=describe) as rec:
        for i, m in enumerate(src.messages()):
            rec.write(m.topic, m.data, received=m.log_ns / 1e9)
            if i == 120:  # about the first minute
                rec.flush()
                shutil.copyfile(path, cut)
    partial = open_recording(cut)
    assert not partial.complete
    assert len(list(partial.messages())) == 121
    capture = CaptureOutput()
    code, out, _ = await run_replay([str(cut), "--config", str(write_config(tmp_path))],
                                    outputs=[capture])
    assert code == 0
    assert "unfinished" in out
    assert "ecg.asystole" in {e.code for e in capture.events}


async def test_replay_raises_what_the_live_daemon_raised_when_and_as_it_did(
    tmp_path: Path, two_minutes: tuple[Path, float]
) -> None:
    """The live daemon takes the payloads at their arrival times while they are recorded
    with those times; the replay of that file must give the same alarm transitions at the
    same instants, differing only in origin."""
    config = _config(tmp_path)
    src = list(open_recording(two_minutes[0]).messages())
    clock = VirtualClock(start=src[0].log_ns / 1e9)
    live = CaptureOutput()
    path = tmp_path / "live.mcap"
    describe = channel_describer(SITE, config)
    with McapRecording(path=path, info={"site": SITE}, describe=describe) as rec:
        async with Daemon(
            config=config, clock=clock, use_broker=False, extra_outputs=[live],
            state_path=tmp_path / "live-state" / "roommon.sqlite3",
        ) as daemon:
            for m in src:
                await clock.advance(m.log_ns / 1e9 - clock.now())
                rec.write(m.topic, m.data, received=clock.now())
                feed = m.topic.rsplit("/", 1)[1]
                daemon.ingest.payload(ROOM, feed, m.data)
            await clock.advance(0)
    replayed = CaptureOutput()
    code, _, _ = await run_replay([str(path), "--config", str(write_config(tmp_path))],
                                  outputs=[replayed])
    assert code == 0

    routing = {"escalated", "deescalated"}

    def seen(c: CaptureOutput) -> list[tuple[str, str, float, str]]:
        return [
            (e.code, e.transition, round(e.t, 6), e.priority)
            for e in c.events
            if e.transition not in routing
        ]

    assert seen(replayed) == seen(live)
    # Escalation is routing: the live high-priority alarm escalated, the replayed one not.
    assert any(e.transition == "escalated" for e in live.events)
    assert not any(e.transition in routing for e in replayed.events)
    assert len(seen(live)) >= 6
    assert {e.origin for e in live.events} == {"live"}
    assert {e.origin for e in replayed.events} == {"replayed"}
    # Live alarms went to the nurse; the same alarms replayed page nobody.
    assert any(o.notifications for o in live.outgoing)
    assert not any(o.notifications for o in replayed.outgoing)


@pytest.mark.broker
async def test_replay_to_a_broker_publishes_under_its_own_site_and_pages_nobody(
    tmp_path: Path, broker: MosquittoBroker, two_minutes: tuple[Path, float]
) -> None:
    config = write_config(tmp_path, port=broker.port)
    argv = ["replay", str(two_minutes[0]), "--config", str(config), "--broker", broker.url]
    async with MqttCollector(broker.port, ["roommon/v1/#"]) as c:
        assert await asyncio.to_thread(main, argv) == 0
        await c.wait_for(
            lambda ms: any(m.topic.endswith("/status/main") and m.json()["status"] == "offline"
                           for m in ms)
        )
    topics = {m.topic for m in c.messages}
    assert all(t.startswith(f"roommon/v1/{SITE}-replay/") for t in topics)
    assert not any("/notify/" in t for t in topics)
    alarms = [m.json() for m in c.messages if m.topic.endswith(f"/{ROOM}/alarm")]
    assert {a["code"] for a in alarms if a["transition"] == "raised"} >= {
        "ecg.asystole", "spo2.desat_critical"}
    assert {a["origin"] for a in alarms} == {"replayed"}


@pytest.mark.broker
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_file(
    tmp_path: Path, broker: MosquittoBroker, sig: signal.Signals
) -> None:
    out_path = tmp_path / "signalled.mcap"
    proc = subprocess.Popen(
        [sys.executable, "-m", "roommon", "record", "--config",
         str(write_config(tmp_path, port=broker.port)), "--out", str(out_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("roommon record: ")  # subscribed
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # Nothing arrived: a warning and exit 1; the file is kept, finished, with its link notes.
    assert proc.returncode == 1, err
    assert "0 messages on 0 topics" in out
    assert "warning: no message arrived" in err
    assert f"{out_path} is kept" in err
    rec = open_recording(out_path)
    assert rec.complete
    assert rec.metadata["roommon.recording.end"]["messages"] == "0"


def test_record_from_a_broker_that_is_not_there_fails_and_leaves_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_path = tmp_path / "nothing.mcap"
    port = free_port()  # nothing listens there
    argv = ["record", "--config", str(write_config(tmp_path, port=port)), "--out", str(out_path)]
    assert main(argv) == 1
    assert "cannot be reached" in capsys.readouterr().err
    assert not out_path.exists()


class Terminal(io.StringIO):
    """Output that says it is a terminal, as a person's shell is."""

    def isatty(self) -> bool:
        return True


async def test_replay_on_a_terminal_shows_progress_with_simulated_time_and_eta(
    tmp_path: Path, two_minutes: tuple[Path, float]
) -> None:
    path, _ = two_minutes
    out, err = Terminal(), io.StringIO()
    args = build_parser().parse_args(
        ["replay", str(path), "--config", str(write_config(tmp_path, port=1))]
    )
    assert await replay(args, out=out, err=err) == 0, err.getvalue()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # the terminal's codes
    assert re.search(r"replay .*100%.*simulated \d\d:\d\d:\d\d \w+ \(0:01:59 of 0:01:59\) ETA",
                     text), text[-600:]
    assert "ALARM RAISED" in text  # console lines scroll above the bar
    assert "Alarm burden of this replay:" in text



def test_an_empty_alarm_burden_section_says_no_alarms() -> None:
    from roommon.cli.console import print_burden

    out = io.StringIO()
    print_burden([], hours=0.5, title="Alarm burden of this replay:", out=out)
    assert out.getvalue() == "\nAlarm burden of this replay:\n  no alarms\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_ends_a_replay_cleanly_with_its_summary_so_far(
    tmp_path: Path, two_minutes: tuple[Path, float], sig: signal.Signals
) -> None:
    path, _ = two_minutes
    proc = subprocess.Popen(
        [sys.executable, "-m", "roommon", "replay", str(path), "--config",
         str(write_config(tmp_path, port=1)), "--speed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("roommon replay: ")
        while "EVENT" not in proc.stdout.readline():  # the replay's daemon is running
            assert proc.poll() is None
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "interrupted; summary of the replay so far" in out
    assert "Alarm burden of this replay:" in out
