"""Replay an ECG signal through a real room pipeline on a virtual clock.

Used by the EKG record tests and ``bench/ecg_alarms.py``: the same EKG check,
alarm engine and room state the daemon runs, fed one chunk per clock step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roommon.testing.capture import CaptureOutput
from roommon.wire.payloads import RoomStateMessage


@dataclass(slots=True)
class EcgRoomRun:
    """What a room showed and alarmed while one ECG signal was replayed through it.

    ``shown_rate[k]`` and ``rhythm[k]`` are the room state's ``heart_rate`` value
    (None for "--") and ``ecg_rhythm`` label after second ``k`` of the signal;
    ``events`` are the alarm engine's transitions; times are seconds from the
    signal's start.
    """

    events: list[tuple[float, str, str]]  # (t, code, transition)
    shown_rate: list[float | None]
    rhythm: list[str | None]
    state: RoomStateMessage | None

    def raised(self, code: str) -> list[float]:
        return [t for t, c, tr in self.events if c == code and tr == "raised"]

    def on_spans(self, code: str, end: float) -> list[tuple[float, float]]:
        """Intervals during which ``code`` was alarmed (from raised to cleared or latched)."""
        spans: list[tuple[float, float]] = []
        start: float | None = None
        for t, c, tr in self.events:
            if c != code:
                continue
            if tr == "raised" and start is None:
                start = t
            elif tr in ("cleared", "latched") and start is not None:
                spans.append((start, t))
                start = None
        if start is not None:
            spans.append((start, end))
        return spans


async def replay_ecg_through_room(
    samples: Any,
    *,
    fs: float,
    checks: dict[str, Any] | None = None,
    alarms: dict[str, Any] | None = None,
    chunk_s: float = 1.0,
) -> EcgRoomRun:
    """Feed an ECG signal (mV) through a real room pipeline on a virtual clock.

    Each chunk of ``chunk_s`` arrives as the clock reaches its end, then the room
    ticks, as the daemon does. NaN samples are delivered as they are (the
    pipeline splits them out as bad samples).
    """
    import numpy as np

    from roommon.config import parse_config
    from roommon.core.clock import VirtualClock
    from roommon.core.model import SignalKind, WaveformChunk
    from roommon.room.pipeline import RoomPipeline

    x = np.asarray(samples, dtype=np.float64)
    room: dict[str, Any] = {
        "feeds": {"ekg": {"kind": "ecg", "fs": fs}},
        "checks": {"ecg": dict(checks or {})},
    }
    if alarms:
        room["alarms"] = alarms
    cfg = parse_config({"site": {"id": "site1"}, "rooms": {"r1": room}})
    clock = VirtualClock()
    start = clock.now()
    out = CaptureOutput()
    p = RoomPipeline(
        site="site1", room="r1", config=cfg.rooms["r1"], daemon=cfg.daemon, clock=clock, output=out
    )
    step = max(1, round(chunk_s * fs))
    shown: list[float | None] = []
    rhythm: list[str | None] = []
    next_second = 1.0
    for seq, i in enumerate(range(0, x.shape[0], step)):
        part = x[i : i + step]
        await clock.advance(part.shape[0] / fs)
        p.ingest(
            WaveformChunk(
                room="r1",
                feed="ekg",
                kind=SignalKind.ECG,
                unit="mV",
                fs=fs,
                t0=start + i / fs,
                samples=part,
                seq=seq,
            )
        )
        p.tick()
        while clock.now() - start >= next_second - 1e-9:
            hr = p.measurements.get("heart_rate")
            shown.append(hr.value if hr is not None else None)
            rh = p.measurements.get("ecg_rhythm")
            rhythm.append(rh.label if rh is not None else None)
            next_second += 1.0
    events = [(e.t - start, e.code, str(e.transition)) for e in out.events]
    return EcgRoomRun(events=events, shown_rate=shown, rhythm=rhythm, state=p.state_message())
