"""SpO2 check: desaturation alarms held while the pleth is unreliable, and pleth quality.

Data flow: SpO2 numerics (``spo2``, ``pulse_rate``, ``perfusion_index`` and the
oximeter's technical flags) arrive through :meth:`SpO2Check.on_reading`; the
pleth waveform, when the room has one, through :meth:`SpO2Check.on_chunk`,
analysed in fixed blocks (:mod:`roommon.signal.blocks`) by the beat detector of
:mod:`roommon.signal.pulses`. The EKG check's heart rate comes in through
:meth:`SpO2Check.on_measurement`.

- Desaturation and critical desaturation are judged on each SpO2 reading; the
  alarm engine applies the condition delays declared here.
- The signal is *unreliable* while the probe is off (device flag, flat or
  saturated pleth), no pulse is found, motion artefact is present, or
  perfusion is low. Desaturation conditions are then held (neither raised nor
  cleared) and ``spo2.unreliable_sustained`` is reported; its delay makes a
  long unreliable stretch an alarm of its own.
- Pulse rate from the pleth is published and compared with the EKG heart rate;
  a disagreement is a technical condition (likely artefact), never a rate alarm.
- When a value shown in the room state becomes unknown (the pulse rate after
  probe off, motion, no pulse or any unreliability; SpO2 when the oximeter
  stops giving one) one measurement with ``reliable=False`` (value NaN) says
  so at once; the next reliable value replaces it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import numpy as np

from roommon.checks.base import (
    Check,
    CheckContext,
    CheckSettings,
    ConditionMemory,
    FeedView,
    Measurement,
)
from roommon.checks.declarations.spo2 import (
    DESAT,
    DESAT_CRITICAL,
    LOW_PERFUSION,
    MOTION_ARTIFACT,
    NO_PULSE,
    PR_ECG_MISMATCH,
    PROBE_OFF,
    SPO2,
    UNRELIABLE_SUSTAINED,
    SpO2Settings,
)
from roommon.core.conditions import ConditionSpec
from roommon.core.log import get_logger
from roommon.core.model import FloatArray, NumericReading, SignalKind, WaveformChunk
from roommon.signal.blocks import BlockAssembler, BlockSink
from roommon.signal.pulses import Beats, PulseDetector
from roommon.signal.summaries import cv_of, median_of, roughness

log = get_logger(__name__)

_count_nonzero = np.count_nonzero

#: Oximeter flags (Masimo, Nonin drivers) meaning "no usable sensor signal".
PROBE_OFF_FLAGS = frozenset({"sensor_off", "no_sensor", "no_cable", "sensor_defective"})
#: Flags meaning "the signal is there but corrupted".
ARTEFACT_FLAGS = frozenset({"artifact", "interference", "low_signal_iq", "out_of_track"})
LOW_PERFUSION_FLAGS = frozenset({"low_perfusion"})
SEARCHING_FLAGS = frozenset({"searching"})


class _PlethState:
    __slots__ = (
        "amp",
        "asm",
        "det",
        "established",
        "ibi",
        "last_beat_t",
        "pr",
        "pr_shown",
        "pr_t",
        "run",
        "sink",
    )

    def __init__(
        self, *, asm: BlockAssembler, det: PulseDetector, sink: BlockSink, recent_beats: int
    ) -> None:
        self.asm = asm
        self.det = det
        self.sink = sink
        self.amp: deque[float] = deque(maxlen=recent_beats)  # recent beat amplitudes
        self.ibi: deque[float] = deque(maxlen=recent_beats)  # of the current run
        self.run = 0  # consecutive clean beats since the pleth was last unusable
        self.established = False  # the run has shown a consistent rhythm: rate known
        self.last_beat_t = math.nan
        self.pr = math.nan
        self.pr_t = math.nan
        self.pr_shown = False  # the last pulse_rate published was a reliable value


class SpO2Check(Check, declaration=SPO2):
    """Desaturation with held alarms, pleth quality, pulse rate and its EKG cross-check."""

    def __init__(
        self, *, room: str, settings: CheckSettings, feeds: Mapping[str, FeedView]
    ) -> None:
        super().__init__(room=room, settings=settings, feeds=feeds)
        assert isinstance(settings, SpO2Settings)
        self.cfg = settings
        self._pleth: dict[str, _PlethState] = {}
        self._conditions = ConditionMemory()
        # The room has one oximeter: conditions are keyed on the SpO2 numerics feed.
        spo2_feeds = [f.name for f in self.feeds.values() if f.kind is SignalKind.SPO2]
        self._feed = spo2_feeds[0] if spo2_feeds else "spo2"
        # Sources of unreliability; the union holds desaturation alarms.
        self._device_probe_off = False
        self._device_artefact = False
        self._device_low_perf = False
        self._pleth_probe_off = False
        self._pleth_no_pulse = False
        self._pleth_motion = False
        self._hr = math.nan
        self._hr_t = math.nan
        self._ctx: CheckContext | None = None
        # The source flags _quality last reported from (it reports only on change),
        # and their union as of then: every flag change is followed by _quality.
        self._quality_key: tuple[bool, ...] = ()
        self._unreliable = False
        self._spo2_shown = False  # the last spo2 published was a reliable value
        self._spo2_sent = math.nan  # value and reliability last published: publish on change
        self._spo2_sent_reliable = False

    # -- reporting ------------------------------------------------------------

    def _report(
        self,
        ctx: CheckContext,
        spec: ConditionSpec,
        active: bool,
        t: float,
        value: float | None = None,
        limit: float | None = None,
    ) -> None:
        self._conditions.report(
            ctx, spec, feed=self._feed, active=active, t=t, value=value, limit=limit
        )

    @property
    def unreliable(self) -> bool:
        return (
            self._device_probe_off
            or self._device_artefact
            or self._device_low_perf
            or self._pleth_probe_off
            or self._pleth_no_pulse
            or self._pleth_motion
        )

    def _quality(self, ctx: CheckContext, t: float) -> None:
        # The four conditions are functions of the six source flags alone, and
        # reported only on change: when the flags have not changed since the
        # last call there is nothing to report (the common case, every reading).
        key = (
            self._device_probe_off,
            self._device_artefact,
            self._device_low_perf,
            self._pleth_probe_off,
            self._pleth_no_pulse,
            self._pleth_motion,
        )
        if key == self._quality_key:
            return
        self._quality_key = key
        self._unreliable = unreliable = self.unreliable
        if unreliable:  # a pulse rate from an unreliable pleth is not shown
            for feed, st in self._pleth.items():
                self._pr_unknown(st, feed, t, ctx)
        self._report(ctx, PROBE_OFF, self._device_probe_off or self._pleth_probe_off, t)
        # no pulse on a flat trace is the probe being off, not a second alarm
        no_pulse = self._pleth_no_pulse and not self._pleth_probe_off
        self._report(ctx, NO_PULSE, no_pulse and not self._device_probe_off, t)
        self._report(ctx, MOTION_ARTIFACT, self._device_artefact or self._pleth_motion, t)
        self._report(ctx, UNRELIABLE_SUSTAINED, self.unreliable, t)

    # -- numerics -------------------------------------------------------------

    def on_reading(self, reading: NumericReading, ctx: CheckContext) -> None:
        # Once a second: kept to plain attribute and dict work, since at 75 Hz the
        # readings cost as much as a quarter of the pleth analysis.
        if reading.kind is not SignalKind.SPO2:
            return
        cfg = self.cfg
        t = reading.t
        flags = reading.flags
        values = reading.values
        pi = values.get("perfusion_index", math.nan)
        low_perf = pi < cfg.low_perfusion_index_pct and math.isfinite(pi)
        probe_off = artefact = False
        if flags:
            probe_off = not PROBE_OFF_FLAGS.isdisjoint(flags)
            artefact = not ARTEFACT_FLAGS.isdisjoint(flags)
            low_perf = low_perf or not LOW_PERFUSION_FLAGS.isdisjoint(flags)
        if low_perf is not self._device_low_perf:  # LOW_PERFUSION is present iff it is set
            self._report(
                ctx,
                LOW_PERFUSION,
                low_perf,
                t,
                value=pi if math.isfinite(pi) else None,
                limit=cfg.low_perfusion_index_pct,
            )
        if (
            probe_off is not self._device_probe_off
            or artefact is not self._device_artefact
            or low_perf is not self._device_low_perf
        ):
            self._device_probe_off = probe_off
            self._device_artefact = artefact
            self._device_low_perf = low_perf
            self._quality(ctx, t)
        spo2 = values.get("spo2", math.nan)
        if not math.isfinite(spo2):
            if self._spo2_shown:  # the oximeter no longer has a value: neither do we
                self._spo2_shown = False
                self._spo2_sent = math.nan
                ctx.measure(
                    Measurement(
                        name="spo2",
                        value=math.nan,
                        unit="%",
                        t=t,
                        feed=reading.feed,
                        reliable=False,
                    )
                )
            return
        reliable = not self._unreliable
        self._spo2_shown = reliable
        if spo2 != self._spo2_sent or reliable is not self._spo2_sent_reliable:
            # on change only: the room state keeps the last value until it changes
            self._spo2_sent, self._spo2_sent_reliable = spo2, reliable
            ctx.measure(
                Measurement(
                    name="spo2", value=spo2, unit="%", t=t, feed=reading.feed, reliable=reliable
                )
            )
        if not reliable:
            return  # held: an unreliable value neither raises nor clears a desaturation
        is_active = self._conditions.is_active
        desat = spo2 < cfg.desat_pct
        if desat is not is_active(self._feed, DESAT.code):
            self._report(ctx, DESAT, desat, t, value=spo2, limit=cfg.desat_pct)
        critical = spo2 < cfg.critical_pct
        if critical is not is_active(self._feed, DESAT_CRITICAL.code):
            self._report(ctx, DESAT_CRITICAL, critical, t, value=spo2, limit=cfg.critical_pct)

    def on_measurement(self, m: Measurement, ctx: CheckContext) -> None:
        if m.name == "heart_rate" and m.reliable and math.isfinite(m.value):
            self._hr, self._hr_t = m.value, m.t
            self._cross_check(ctx, m.t)

    def _cross_check(self, ctx: CheckContext, t: float) -> None:
        cfg = self.cfg
        pr, pr_t = math.nan, math.nan
        for st in self._pleth.values():
            pr, pr_t = st.pr, st.pr_t
        fresh = (
            math.isfinite(pr)
            and math.isfinite(self._hr)
            and abs(t - pr_t) <= cfg.rate_max_age_s
            and abs(t - self._hr_t) <= cfg.rate_max_age_s
        )
        if not fresh:
            self._report(ctx, PR_ECG_MISMATCH, False, t)
            return
        tol = max(cfg.pr_ecg_tolerance_bpm, cfg.pr_ecg_tolerance_fraction * self._hr)
        diff = abs(pr - self._hr)
        self._report(ctx, PR_ECG_MISMATCH, diff > tol, t, value=pr, limit=self._hr)

    # -- pleth ----------------------------------------------------------------

    def on_chunk(self, chunk: WaveformChunk, ctx: CheckContext) -> None:
        st = self._pleth.get(chunk.feed)
        if st is None:
            st = self._new_pleth(chunk)
        self._ctx = ctx
        st.asm.push(chunk.samples, chunk.t0, st.sink)

    def _new_pleth(self, chunk: WaveformChunk) -> _PlethState:
        feed = chunk.feed
        fs = chunk.fs

        def sink(block: FloatArray, t_first: float, restarted: bool) -> None:
            self._analyse(self._pleth[feed], feed, block, t_first, restarted)

        st = _PlethState(
            asm=BlockAssembler(
                block_n=max(
                    round(self.cfg.analysis_block_s * fs), self.cfg.analysis_block_min_samples
                ),
                fs=fs,
            ),
            det=PulseDetector(fs=fs),
            sink=sink,
            recent_beats=self.cfg.recent_beats,
        )
        self._pleth[feed] = st
        return st

    def _analyse(
        self, st: _PlethState, feed: str, block: FloatArray, t_first: float, restarted: bool
    ) -> None:
        ctx = self._ctx
        assert ctx is not None
        cfg = self.cfg
        det = st.det
        n = len(block)
        t_end = t_first + n / det.fs
        if restarted:
            st.amp.clear()
            self._break_run(st, feed, t_first, ctx)
            st.last_beat_t = t_first
        beats = det.process(block, t_first, restarted)
        # argmax + item: ndarray.max's value without its ~1 µs reduction wrapper
        hi: float = block.item(block.argmax())
        lo: float = block.item(block.argmin())
        ptp = hi - lo
        # A pulse is a smooth wave: sample-to-sample steps are small next to its
        # spread (ratio ~0.05-0.3 at 75-250 Hz); for white noise the ratio is ~1.4.
        step, spread = roughness(block, det.block_steps)
        rough = step > cfg.max_roughness * spread
        # NaN before any clean beat: the relative tests below are then False
        ref_amp = median_of(st.amp) if st.amp else math.nan
        flat = ptp <= cfg.flat_ptp_au or ptp <= cfg.flat_fraction * ref_amp
        saturated = False
        if ptp > 0:
            pinned = max(int(_count_nonzero(block == hi)), int(_count_nonzero(block == lo)))
            saturated = pinned >= cfg.saturated_fraction * n
        self._pleth_probe_off = probe_off = flat or saturated
        motion = False
        amplitude: list[float] = []
        if len(beats):
            amplitude = beats.amplitude
        if not probe_off and not rough:
            motion = ptp > cfg.motion_ptp_ratio * ref_amp
            if not motion and len(beats) >= 3:
                motion = (
                    cv_of(amplitude) > cfg.motion_amplitude_cv
                    or cv_of(beats.ibi) > cfg.motion_interval_cv
                )
        if motion != self._pleth_motion:
            log.info("spo2_pleth_motion", room=self.room, feed=feed, active=motion)
        self._pleth_motion = motion
        # Only clean beats count: they set the reference amplitude and the rate.
        clean = len(beats) > 0 and not (probe_off or rough or motion)
        if clean:
            self._take_beats(st, beats, amplitude)
        # beats are final max_ibi after their peak: allow for that lag
        decided_until = t_end - det.lookahead_n / det.fs
        self._pleth_no_pulse = decided_until - st.last_beat_t > cfg.no_pulse_s
        self._quality(ctx, t_end)
        if clean and st.established:
            st.pr = 60.0 / median_of(st.ibi)
            st.pr_t = beats.t[-1]
            reliable = not self._unreliable
            ctx.measure(
                Measurement(
                    name="pulse_rate",
                    value=st.pr,
                    unit="bpm",
                    t=st.pr_t,
                    feed=feed,
                    reliable=reliable,
                )
            )
            st.pr_shown = reliable
        elif probe_off or rough or motion or self._pleth_no_pulse:
            # The run of clean beats is broken: the rate must be established anew.
            self._break_run(st, feed, t_end, ctx)
        self._cross_check(ctx, t_end)

    def _take_beats(self, st: _PlethState, beats: Beats, amplitude: list[float]) -> None:
        cfg = self.cfg
        st.amp.extend(amplitude)  # deques of recent_beats: the newest are kept
        st.ibi.extend(beats.ibi)
        st.last_beat_t = beats.t[-1]
        st.run += len(beats)
        need = cfg.pr_establish_beats
        if not st.established and st.run >= need:
            # The first beat's interval reaches back before the run: not judged.
            tail = list(st.ibi)[-(need - 1) :]
            med = median_of(tail)
            tol = cfg.pr_interval_tolerance * med
            st.established = all(abs(v - med) <= tol for v in tail)

    def _break_run(self, st: _PlethState, feed: str, t: float, ctx: CheckContext) -> None:
        st.ibi.clear()
        st.run = 0
        st.established = False
        st.pr = math.nan
        self._pr_unknown(st, feed, t, ctx)

    @staticmethod
    def _pr_unknown(st: _PlethState, feed: str, t: float, ctx: CheckContext) -> None:
        """The pulse rate shown in the room state is no longer known: say so once."""
        if st.pr_shown:
            st.pr_shown = False
            ctx.measure(
                Measurement(
                    name="pulse_rate", value=math.nan, unit="bpm", t=t, feed=feed, reliable=False
                )
            )
