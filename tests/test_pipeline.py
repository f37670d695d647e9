"""Room pipeline on the virtual clock: limits with delays, silent feeds, bad input."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from roommon.checks import CHECKS
from roommon.checks.base import CheckContext, Measurement
from roommon.config import Config, parse_config
from roommon.core.clock import VirtualClock
from roommon.core.errors import ConfigError, ProtocolError
from roommon.core.model import DataOrigin, NumericReading, SignalKind, WaveformChunk
from roommon.room.pipeline import RoomPipeline
from roommon.room.sequence import SeqDecision, SeqGate
from roommon.testing import CaptureOutput
from roommon.testing.checks import ProbeCheck, ProbeSettings
from roommon.wire.commands import CommandPayload


def room_config(**overrides: Any) -> Config:
    data: dict[str, Any] = {
        "site": {"id": "site1"},
        "rooms": {
            "r1": {
                "feeds": {
                    "ekg": {"kind": "ecg", "fs": 250},
                    "spo2": {"kind": "spo2", "stale_s": 10},
                },
                "checks": {
                    "numeric_limits": {
                        "rules": [
                            {
                                "kind": "spo2",
                                "field": "spo2",
                                "below": 90,
                                "hysteresis": 1,
                                "delay_s": 15,
                            },
                        ]
                    }
                },
            }
        },
    }
    data["rooms"]["r1"].update(overrides)
    return parse_config(data)


def make(clock: VirtualClock, **overrides: Any) -> tuple[RoomPipeline, CaptureOutput]:
    cfg = room_config(**overrides)
    out = CaptureOutput()
    p = RoomPipeline(
        site="site1", room="r1", config=cfg.rooms["r1"], daemon=cfg.daemon, clock=clock, output=out
    )
    return p, out


def spo2(clock: VirtualClock, seq: int, value: float) -> NumericReading:
    return NumericReading(
        room="r1", feed="spo2", kind=SignalKind.SPO2, t=clock.now(), values={"spo2": value}, seq=seq
    )


def ekg(clock: VirtualClock, seq: int, samples: np.ndarray) -> WaveformChunk:
    return WaveformChunk(
        room="r1",
        feed="ekg",
        kind=SignalKind.ECG,
        unit="mV",
        fs=250,
        t0=clock.now(),
        samples=samples,
        seq=seq,
        origin=DataOrigin.SIMULATED,
    )


async def feed_seconds(
    p: RoomPipeline, clock: VirtualClock, start_seq: int, values: Sequence[float]
) -> int:
    """Feed one SpO2 reading and one EKG second per virtual second, ticking as the daemon does."""
    seq = start_seq
    for v in values:
        p.ingest(spo2(clock, seq, v))
        p.ingest(ekg(clock, seq, np.zeros(250)))
        seq += 1
        await clock.advance(1.0)
        p.tick()
    return seq


async def test_desaturation_shorter_than_delay_raises_nothing(clock: VirtualClock) -> None:
    p, out = make(clock)
    await feed_seconds(p, clock, 0, [97] * 5 + [86] * 12 + [97] * 10)
    assert out.transitions("limit.spo2_low") == []


async def test_desaturation_longer_than_delay_raises_after_delay_and_clears(
    clock: VirtualClock,
) -> None:
    p, out = make(clock)
    start = clock.now()
    await feed_seconds(p, clock, 0, [97] * 5 + [86] * 30 + [90.5] * 3 + [92] * 3)
    assert out.transitions("limit.spo2_low") == [
        ("limit.spo2_low", "raised"),
        ("limit.spo2_low", "cleared"),
    ]
    raised = out.events[0]
    # condition began at t=5 s, delay 15 s
    assert raised.t - start == 20.0
    assert (raised.value, raised.limit) == (86, 90)
    # hysteresis: 90.5 is above the limit but not by 1 %, so the alarm stays until 92
    assert out.events[1].t - start == 38.0


async def test_feed_silence_is_a_technical_alarm_and_recovers(clock: VirtualClock) -> None:
    p, out = make(clock)
    seq = await feed_seconds(p, clock, 0, [97] * 5)
    for _ in range(5):  # EKG stops, SpO2 continues
        p.ingest(spo2(clock, seq, 97))
        seq += 1
        await clock.advance(1.0)
        p.tick()
    silent = [e for e in out.events if e.code == "feed.silent"]
    assert [(e.feed, e.transition, e.kind) for e in silent] == [("ekg", "raised", "technical")]
    assert out.states[-1].feeds["ekg"].status == "silent"
    await feed_seconds(p, clock, seq, [97] * 2)
    assert [e.transition for e in out.events if e.code == "feed.silent"] == ["raised", "cleared"]


async def test_required_feed_never_seen_is_alarmed(clock: VirtualClock) -> None:
    p, out = make(clock)
    for _ in range(12):
        p.ingest(ekg(clock, _, np.zeros(250)))
        await clock.advance(1.0)
        p.tick()
    assert ("feed.never_seen", "raised") in out.transitions()
    assert out.events[0].feed == "spo2"


async def test_bad_samples_never_reach_checks_and_good_ones_do(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(CHECKS, ProbeCheck.name, ProbeCheck)
    p, out = make(clock, checks={"probe": {}})
    samples = np.linspace(0, 1, 250)
    samples[100:110] = np.nan
    samples[200] = 1e9  # physically impossible for an EKG in mV
    p.ingest(ekg(clock, 0, samples))
    probe = p.checks[0]
    assert isinstance(probe, ProbeCheck)
    assert p.feeds["ekg"].bad_samples == 11
    got = probe.samples()
    assert got.shape == (239,)
    assert np.isfinite(got).all()
    assert np.array_equal(got, np.delete(samples, [*range(100, 110), 200]))
    p.tick()
    assert ("feed.bad_samples", "raised") in out.transitions()


async def test_rejected_payloads_are_counted_and_the_feed_goes_on(clock: VirtualClock) -> None:
    p, out = make(clock)
    p.reject("spo2", ProtocolError("bad_json", "Expecting value"))
    p.reject("spo2", ProtocolError("non_finite", "values.spo2 is NaN"))
    p.ingest(spo2(clock, 0, 97))
    assert dict(p.feeds["spo2"].rejected) == {"bad_json": 1, "non_finite": 1}
    assert p.feeds["spo2"].received == 1
    assert ("feed.bad_payload", "raised") in out.transitions()
    state = p.state_message()
    assert state.feeds["spo2"].rejected == {"bad_json": 1, "non_finite": 1}


async def test_sequence_gap_duplicate_and_reorder(clock: VirtualClock) -> None:
    p, out = make(clock)
    p.ingest(spo2(clock, 0, 97))
    p.ingest(spo2(clock, 1, 97))
    p.ingest(spo2(clock, 1, 97))  # duplicate (QoS 1 redelivery)
    p.ingest(spo2(clock, 5, 97))  # gap
    p.ingest(spo2(clock, 3, 97))  # late
    f = p.feeds["spo2"]
    assert f.received == 3
    assert f.gaps == 1
    assert dict(f.rejected) == {"duplicate": 1, "out_of_order": 1}
    assert ("feed.seq_gap", "raised") in out.transitions()


async def test_an_unavailable_reading_never_clears_an_active_desaturation(
    clock: VirtualClock,
) -> None:
    """NaN (the device's "no value") during a desaturation is not a normal value: the alarm
    must stay up. Compared with the limit, NaN < 90 is False and would clear it; the
    guard in the limits check must skip it. (Checked: with the guard removed this fails.)"""
    p, out = make(clock)
    seq = await feed_seconds(p, clock, 0, [84] * 30)
    assert out.transitions("limit.spo2_low") == [("limit.spo2_low", "raised")]
    await feed_seconds(p, clock, seq, [math.nan] * 30)
    assert out.transitions("limit.spo2_low") == [("limit.spo2_low", "raised")]
    assert [a.spec.code for a in p.engine.alarms()] == ["limit.spo2_low"]


async def test_ten_minute_scenario_on_the_virtual_clock(clock: VirtualClock) -> None:
    p, out = make(clock)
    await feed_seconds(p, clock, 0, [97] * 200 + [84] * 100 + [97] * 300)
    assert clock.monotonic() == 600.0
    assert out.transitions("limit.spo2_low") == [
        ("limit.spo2_low", "raised"),
        ("limit.spo2_low", "cleared"),
    ]
    # how fast this runs is measured in bench/scenarios.py, not asserted here


async def test_a_jump_beyond_the_devices_rate_waits_for_the_next_payload(
    clock: VirtualClock,
) -> None:
    """Issue 11, defect 8: a far jump is held; the next payload confirms or refutes it."""
    p, out = make(clock)
    f = p.feeds["spo2"]
    p.ingest(spo2(clock, 0, 97))
    p.ingest(spo2(clock, 5000, 85))  # the device's counter really jumped...
    assert (f.received, f.last_seq, f.seq.holding) == (1, 0, 5000)
    assert "spo2" not in p.measurements or p.measurements["spo2"].value == 97
    p.ingest(spo2(clock, 5001, 86))  # ...and goes on from there: both accepted, in order
    assert (f.received, f.last_seq, f.seq.holding, f.gaps) == (3, 5001, None, 1)
    assert dict(f.rejected) == {}
    assert p.measurements["spo2"].value == 86

    p.ingest(spo2(clock, 900_000, 50))  # held, and nothing confirms it
    await clock.advance(5.0)
    p.ingest(spo2(clock, 5002, 96))  # the count goes on: the jump was not the device's
    assert dict(f.rejected) == {"seq_jump": 1}
    p.ingest(spo2(clock, 800_000, 50))
    await clock.advance(11.0)
    p.tick()  # unconfirmed past the hold time: refused
    assert dict(f.rejected) == {"seq_jump": 2}
    assert (f.received, f.last_seq) == (4, 5002)
    assert ("feed.bad_payload", "raised") in out.transitions()


async def test_a_skip_the_elapsed_time_allows_is_accepted_at_once(clock: VirtualClock) -> None:
    p, _ = make(clock)
    f = p.feeds["ekg"]
    p.ingest(ekg(clock, 0, np.zeros(250)))  # one chunk a second
    await clock.advance(600.0)  # ten minutes of lost data (cable, network)
    p.ingest(ekg(clock, 600, np.zeros(250)))
    assert (f.received, f.last_seq, f.gaps, f.seq.holding) == (2, 600, 1, None)
    p.ingest(ekg(clock, 601 + 40, np.zeros(250)))  # 40 at once: beyond 32 + 2 x rate x 0 s
    assert (f.received, f.seq.holding) == (2, 641)


def cement(clock: VirtualClock, seq: int) -> WaveformChunk:
    return WaveformChunk(
        room="r1",
        feed="cement",
        kind=SignalKind.CEMENT_PRESSURE,
        unit="kPa",
        fs=50,
        t0=clock.now(),
        samples=np.full(50, 100.0),
        seq=seq,
    )


def set_phase(p: RoomPipeline, phase: str) -> None:
    cmd = {"v": 1, "id": "p", "room": "r1", "action": "phase_set", "phase": phase}
    p.command(CommandPayload.model_validate(cmd), client="n")


def cement_alarms(out: CaptureOutput) -> list[tuple[str, str, str]]:
    return [(e.code, e.transition, e.priority) for e in out.events if e.feed == "cement"]


async def silence_cement(p: RoomPipeline, clock: VirtualClock, seconds: int) -> None:
    for _ in range(seconds):
        await clock.advance(1.0)
        p.tick()


@pytest.mark.parametrize("phase", ["patient_connected", "procedure", "recovery"])
async def test_an_optional_feed_silent_outside_its_phase_is_a_low_notice_never_medium(
    clock: VirtualClock, phase: str
) -> None:
    """Issue 11, defect 13: the cement line unplugged during recovery raised feed.silent MEDIUM."""
    optional = {"kind": "cement_pressure", "fs": 50, "required": False, "stale_s": 3}
    p, out = make(clock, feeds={"cement": optional})
    set_phase(p, phase)
    p.ingest(cement(clock, 0))
    await silence_cement(p, clock, 10)
    assert cement_alarms(out) == [("feed.silent_optional", "raised", "low")]
    assert "no data in phase" in next(e.message for e in out.events if e.feed == "cement")


async def test_in_the_phase_that_needs_it_the_silence_is_the_medium_alarm_and_follows_the_phase(
    clock: VirtualClock,
) -> None:
    optional = {"kind": "cement_pressure", "fs": 50, "required": False, "stale_s": 3}
    p, out = make(clock, feeds={"cement": optional})
    set_phase(p, "cement_injection")
    p.ingest(cement(clock, 0))
    await silence_cement(p, clock, 10)
    assert cement_alarms(out) == [("feed.silent", "raised", "medium")]
    set_phase(p, "recovery")  # the line is unplugged once the cement is in
    await silence_cement(p, clock, 30)
    alarms = cement_alarms(out)
    assert ("feed.silent", "cleared", "medium") in alarms
    assert alarms[-1] == ("feed.silent_optional", "raised", "low")


async def test_the_notice_is_configurable_per_phase(clock: VirtualClock) -> None:
    optional = {
        "kind": "cement_pressure",
        "fs": 50,
        "required": False,
        "stale_s": 3,
        "needed_in": ["procedure", "cement_injection"],
        "silent_outside": {"recovery": "off"},
    }
    p, out = make(clock, feeds={"cement": optional})
    set_phase(p, "recovery")
    p.ingest(cement(clock, 0))
    await silence_cement(p, clock, 10)
    assert cement_alarms(out) == []  # "off" in recovery
    set_phase(p, "procedure")  # needed here by this config
    await silence_cement(p, clock, 2)
    assert cement_alarms(out) == [("feed.silent", "raised", "medium")]


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({"needed_in": ["recovery"]}, "cement.needed_in: only for an optional feed"),
        ({"required": False, "silent_outside": {"recovery": "loud"}}, "Input should be"),
        (
            {"required": False, "needed_in": ["recovery"], "silent_outside": {"recovery": "off"}},
            "cement.silent_outside: recovery is in needed_in",
        ),
    ],
)
def test_phase_settings_of_a_feed_are_validated(feed: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        room_config(feeds={"cement": {"kind": "cement_pressure", "fs": 50, **feed}})
    lines = [f"{path}: {msg}" for path, msg in err.value.problems]
    assert any(message in line for line in lines), lines


async def test_a_check_that_stops_failing_ends_its_condition_and_the_alarm_stays_latched(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check.failed is not forever: a minute of the check running cleanly ends the
    condition; the alarm stays latched until a person resets it (like room.failed)."""
    monkeypatch.setitem(CHECKS, ProbeCheck.name, ProbeCheck)
    p, out = make(clock, checks={"probe": {"fail_on_chunk": True}})
    probe = p.checks[0]
    assert isinstance(probe, ProbeCheck)
    p.ingest(ekg(clock, 0, np.zeros(250)))
    assert ("check.failed", "raised") in out.transitions()
    probe.cfg = ProbeSettings(fail_on_chunk=False)  # the fault is gone
    for second in range(1, 62):
        await clock.advance(1.0)
        p.ingest(ekg(clock, second, np.zeros(250)))
        p.tick()
    assert ("check.failed", "latched") in out.transitions()
    (alarm,) = [a for a in p.engine.alarms() if a.spec.code == "check.failed"]
    assert not alarm.condition_present


class _ReportThenFailCheck(ProbeCheck):
    """Measures, then fails, on every chunk while ``fail_on_chunk`` is set."""

    name: ClassVar[str] = "report_then_fail"

    def on_chunk(self, chunk: WaveformChunk, ctx: CheckContext) -> None:
        if self.cfg.fail_on_chunk:
            ctx.measure(Measurement(name="half_done", value=1.0, unit="", t=chunk.t0, feed="ekg"))
            raise RuntimeError("failed after measuring")


async def test_what_a_failing_check_reported_before_it_failed_is_dropped(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check's context is kept from call to call; what a failed call put in it is not
    to be trusted and must never come out with the next call's results."""
    monkeypatch.setitem(CHECKS, _ReportThenFailCheck.name, _ReportThenFailCheck)
    p, out = make(clock, checks={"report_then_fail": {"fail_on_chunk": True}})
    check = p.checks[0]
    assert isinstance(check, _ReportThenFailCheck)
    p.ingest(ekg(clock, 0, np.zeros(250)))
    assert ("check.failed", "raised") in out.transitions()
    check.cfg = ProbeSettings(fail_on_chunk=False)
    p.ingest(ekg(clock, 1, np.zeros(250)))
    assert "half_done" not in p.measurements


def plain(d: SeqDecision[int]) -> tuple[Any, ...]:
    return d.accepted, [(i, e.reason, e.detail) for i, e in d.rejected], d.gap, d.held


#: A device's next seq: its count goes on, skips, repeats or goes back a little, jumps
#: anywhere, or the gate's own count goes on (after a jump it refused or holds).
SEQ_MOVES = st.one_of(
    st.tuples(st.just("by"), st.integers(-3, 3) | st.integers(-40, 40)),
    st.tuples(st.just("to"), st.integers(0, 3) | st.integers(0, 10**6)),
    st.tuples(st.just("gate"), st.integers(-3, 1)),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(SEQ_MOVES, st.floats(0, 20)), max_size=30))
# a run behind the count, broken by the next seq, then behind again: the break must end it
@example(
    [
        (("to", 10), 1.0),
        (("by", -2), 1.0),
        (("gate", 1), 1.0),
        (("gate", -2), 1.0),
        (("by", 1), 1.0),
    ]
)
def test_the_next_seq_shortcut_decides_as_the_full_gate(
    steps: list[tuple[tuple[str, int], float]],
) -> None:
    """``SeqGate.take_next`` (the pipeline's common case) accepts exactly what ``offer``
    accepts at once and leaves the gate as ``offer`` would: same decisions for any run."""
    full: SeqGate[int] = SeqGate()
    quick: SeqGate[int] = SeqGate()
    mono, seq = 0.0, 0
    for i, ((how, k), dt) in enumerate(steps):
        if how == "by":
            seq = max(0, seq + k)
        elif how == "to":
            seq = k
        else:
            seq = max(0, (full.last or 0) + k)
        mono += dt
        want = full.offer(seq, i, mono=mono, rate_hz=5.0)
        got = (
            SeqDecision[int](accepted=[i])
            if quick.take_next(seq, mono)
            else quick.offer(seq, i, mono=mono, rate_hz=5.0)
        )
        assert plain(got) == plain(want)
        assert (quick.last, quick.last_mono, quick.holding) == (
            full.last,
            full.last_mono,
            full.holding,
        )
