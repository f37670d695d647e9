"""A whole simulated procedure room: every feed of a room config, one second at a time.

Composes the per-signal simulators (EKG, pleth + SpO2 numerics, NIBP, arterial
line, cement pressure) for whichever feeds the room config declares, and
plays a script of timed actions on them (a desaturation, an injection...).
Every sample is tagged :attr:`DataOrigin.SIMULATED`, so alarms it causes are
never routed to nurses unless the config explicitly allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from roommon.config import RoomConfig
from roommon.core.model import DataOrigin, NumericReading, SignalKind, WaveformChunk
from simulators.abp import ArterialPressureSimulator
from simulators.cement import CementPressureSimulator
from simulators.ecg import EcgSimulator
from simulators.nibp import NibpSimulator
from simulators.pleth import PlethSimulator

Sample = WaveformChunk | NumericReading


@dataclass(frozen=True, slots=True)
class Action:
    """``do(room_simulator)`` at ``at_s`` seconds into the run; ``label`` is shown to people."""

    at_s: float
    label: str
    do: Callable[[RoomSimulator], None]


@dataclass(slots=True)
class RoomSimulator:
    room: str
    config: RoomConfig
    t0: float
    seed: int = 1
    script: list[Action] = field(default_factory=list)
    ecg: EcgSimulator | None = None
    pleth: PlethSimulator | None = None
    nibp: NibpSimulator | None = None
    abp: ArterialPressureSimulator | None = None
    cement: CementPressureSimulator | None = None
    elapsed: float = 0.0
    _feeds: dict[SignalKind, str] = field(default_factory=dict)
    _ecg_seq: int = 0
    _done: int = 0
    events: list[str] = field(default_factory=list)  # labels of actions played, for display
    #: Operator commands (``cement_mixed``...) the script asked for and nobody sent yet:
    #: the runner sends them as the room's operator would (see :meth:`take_commands`).
    commands: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, feed in self.config.feeds.items():
            self._feeds.setdefault(feed.kind, name)
        f, s, t0 = self._feeds, self.seed, self.t0
        if SignalKind.ECG in f:
            self.ecg = EcgSimulator(fs=self.config.feeds[f[SignalKind.ECG]].fs, seed=s)
        if SignalKind.PLETH in f or SignalKind.SPO2 in f:
            fs = self.config.feeds[f[SignalKind.PLETH]].fs if SignalKind.PLETH in f else 75.0
            self.pleth = PlethSimulator(
                fs=fs,
                seed=s + 1,
                t0=t0,
                room=self.room,
                pleth_feed=f.get(SignalKind.PLETH, "pleth"),
                spo2_feed=f.get(SignalKind.SPO2, "spo2"),
            )
        if SignalKind.NIBP in f:
            self.nibp = NibpSimulator(
                cycle_s=60.0, t0=t0, seed=s + 2, room=self.room, feed=f[SignalKind.NIBP]
            )
        if SignalKind.ABP in f:
            self.abp = ArterialPressureSimulator(
                fs=self.config.feeds[f[SignalKind.ABP]].fs,
                seed=s + 3,
                t0=t0,
                room=self.room,
                feed=f[SignalKind.ABP],
            )
        if SignalKind.CEMENT_PRESSURE in f:
            self.cement = CementPressureSimulator(
                fs=self.config.feeds[f[SignalKind.CEMENT_PRESSURE]].fs,
                seed=s + 4,
                t0=t0,
                room=self.room,
                feed=f[SignalKind.CEMENT_PRESSURE],
            )
        if self.ecg is not None and self.pleth is not None:
            self.pleth.set_rate(self.ecg.rate_bpm)  # one heart: pulse and EKG rate agree
        self.script.sort(key=lambda a: a.at_s)

    def take_commands(self) -> list[str]:
        """The operator commands due since the last call (actions of ``wire.commands``)."""
        due, self.commands = self.commands, []
        return due

    def step(self, seconds: float = 1.0) -> list[Sample]:
        """Play due script actions, then produce the next ``seconds`` of every feed."""
        while self._done < len(self.script) and self.script[self._done].at_s <= self.elapsed:
            action = self.script[self._done]
            action.do(self)
            self.events.append(action.label)
            self._done += 1
        out: list[Sample] = []
        t_start = self.t0 + self.elapsed
        if self.ecg is not None:
            fs = self.ecg.fs
            self._ecg_seq += 1
            out.append(
                WaveformChunk(
                    room=self.room,
                    feed=self._feeds[SignalKind.ECG],
                    kind=SignalKind.ECG,
                    unit="mV",
                    fs=fs,
                    t0=t_start,
                    samples=self.ecg.next_chunk(round(seconds * fs)),
                    seq=self._ecg_seq,
                    origin=DataOrigin.SIMULATED,
                )
            )
        self.elapsed += seconds
        t_end = self.t0 + self.elapsed
        if self.pleth is not None:
            if SignalKind.PLETH in self._feeds:
                out.append(self.pleth.next_chunk(round(seconds * self.pleth.fs)))
            else:
                self.pleth.next_samples(round(seconds * self.pleth.fs))
            if SignalKind.SPO2 in self._feeds:
                out.extend(self.pleth.readings_until(t_end))
        if self.abp is not None:
            out.append(self.abp.next_chunk(round(seconds * self.abp.fs)))
        if self.cement is not None:
            out.append(self.cement.next_chunk(round(seconds * self.cement.fs)))
        if self.nibp is not None:
            out.extend(self.nibp.readings_until(t_end))
        return [replace(s, origin=DataOrigin.SIMULATED) for s in out]


def operator(action: str) -> Callable[[RoomSimulator], None]:
    """A script step that has the room's operator send a command (e.g. ``cement_mixed``)."""
    return lambda r: r.commands.append(action)


def kyphoplasty_script() -> list[Action]:
    """Ten minutes of a single-level kyphoplasty with things going wrong.

    The operator presses "cement mixed" at 5 s. One injection, as the cement check
    counts it: its pauses (10 s, then 50 s to reload the cannula) are shorter than
    the check's ``end_after_s`` (60 s), so the check reports its end a minute after
    the last push, and the recovery timer starts back-dated to that push.
    """

    def desat(v: float) -> Callable[[RoomSimulator], None]:
        return lambda r: r.pleth.set_spo2(v) if r.pleth else None

    def hr(v: float) -> Callable[[RoomSimulator], None]:
        def do(r: RoomSimulator) -> None:
            if r.ecg:
                r.ecg.set_rate(v)
            if r.pleth:
                r.pleth.set_rate(v)

        return do

    def inject(r: RoomSimulator) -> None:
        if r.cement:
            r.cement.inject(level_kpa=1700.0)

    def pause(r: RoomSimulator) -> None:
        if r.cement:
            r.cement.pause()

    def spike(r: RoomSimulator) -> None:
        if r.cement:
            r.cement.spike(peak_kpa=3600.0, duration_s=1.5)

    def hypotension(r: RoomSimulator) -> None:
        if r.nibp:
            r.nibp.set_pressure(systolic=84.0, diastolic=48.0)

    def normotension(r: RoomSimulator) -> None:
        if r.nibp:
            r.nibp.set_pressure(systolic=122.0, diastolic=76.0)

    def probe(on: bool) -> Callable[[RoomSimulator], None]:
        def do(r: RoomSimulator) -> None:
            if r.pleth:
                r.pleth.probe_on() if on else r.pleth.probe_off()

        return do

    def leads(off: bool) -> Callable[[RoomSimulator], None]:
        return lambda r: r.ecg.lead_off(off) if r.ecg else None

    return [
        Action(100, "patient desaturates to 86 %", desat(86.0)),
        Action(142, "SpO2 recovers", desat(97.0)),
        Action(5, "operator presses 'cement mixed'", operator("cement_mixed")),
        Action(250, "cement injection starts", inject),
        Action(280, "injection paused", pause),
        Action(290, "injection resumes", inject),
        Action(320, "injection paused to reload the cannula", pause),
        Action(370, "injection resumes", inject),
        Action(385, "pressure spike on the injector", spike),
        Action(
            410, "injection ends (the check marks its end after 60 s without pressure)", pause
        ),
        Action(440, "sinus tachycardia 150 bpm", hr(150.0)),
        Action(470, "heart rate settles at 78 bpm", hr(78.0)),
        Action(480, "SpO2 probe falls off", probe(False)),
        Action(500, "SpO2 probe back on", probe(True)),
        Action(505, "blood pressure falls to 84/48", hypotension),
        Action(570, "EKG lead comes off", leads(True)),
        Action(580, "EKG lead reattached", leads(False)),
        Action(585, "blood pressure back to 122/76", normotension),
    ]
