"""Invasive arterial pressure check: beat-by-beat values, limits, line damping and disconnection.

Data flow: the room pipeline passes each ABP chunk (mmHg) to
:meth:`AbpCheck.on_chunk`; samples are analysed in fixed blocks
(:mod:`roommon.signal.blocks`) by the beat detector of
:mod:`roommon.signal.pulses`: systolic = beat peak, diastolic = preceding
trough, mean = area over the cycle / its duration. Per block the check
publishes the median of the block's beats and judges the limits on the median
of the last ``average_beats`` beats (monitors average too: one ectopic beat is
not hypotension).

Technical conditions, during which the limit conditions are held:

- ``abp.disconnected``: the trace sits near atmospheric pressure (transducer
  open to air, line disconnected: a bleeding risk, hence high priority);
- ``abp.damped``: the pulse pressure collapsed to a fraction of its recent
  reference, or the trace is flat at a physiological level (air bubble, clot,
  kinked catheter); a damped line under-reads systolic and over-reads diastolic.
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
from roommon.checks.declarations.abp import (
    ABP,
    DAMPED,
    DISCONNECTED,
    HYPERTENSION,
    HYPOTENSION,
    MAP_HIGH,
    MAP_LOW,
    AbpSettings,
)
from roommon.core.conditions import AlarmKind, ConditionSpec
from roommon.core.log import get_logger
from roommon.core.model import FloatArray, WaveformChunk
from roommon.signal.blocks import BlockAssembler, BlockSink
from roommon.signal.pulses import Beats, PulseDetector
from roommon.signal.summaries import median_of

log = get_logger(__name__)

# The ufuncs ndarray.sum/max/min end in, without their Python wrappers.
_add_reduce = np.add.reduce
_max = np.maximum.reduce
_min = np.minimum.reduce


class _LineState:
    __slots__ = ("asm", "det", "dia", "mean", "pp_ref", "sink", "sys")

    def __init__(
        self,
        *,
        asm: BlockAssembler,
        det: PulseDetector,
        sink: BlockSink,
        average_beats: int,
        reference_beats: int,
    ) -> None:
        self.asm = asm
        self.det = det
        self.sink = sink
        # recent beats, for the limit median
        self.sys: deque[float] = deque(maxlen=average_beats)
        self.dia: deque[float] = deque(maxlen=average_beats)
        self.mean: deque[float] = deque(maxlen=average_beats)
        # pulse pressures of recent good beats
        self.pp_ref: deque[float] = deque(maxlen=reference_beats)


class AbpCheck(Check, declaration=ABP):
    """Beat-by-beat arterial pressure with limits and line-quality conditions."""

    def __init__(
        self, *, room: str, settings: CheckSettings, feeds: Mapping[str, FeedView]
    ) -> None:
        super().__init__(room=room, settings=settings, feeds=feeds)
        assert isinstance(settings, AbpSettings)
        self.cfg = settings
        self._lines: dict[str, _LineState] = {}
        self._conditions = ConditionMemory()
        self._ctx: CheckContext | None = None

    def _report(
        self,
        ctx: CheckContext,
        spec: ConditionSpec,
        feed: str,
        active: bool,
        t: float,
        value: float | None = None,
        limit: float | None = None,
    ) -> None:
        changed = self._conditions.report(
            ctx, spec, feed=feed, active=active, t=t, value=value, limit=limit
        )
        if changed and spec.kind is AlarmKind.TECHNICAL:
            log.info("abp_line_condition", room=self.room, feed=feed, code=spec.code, active=active)

    def on_chunk(self, chunk: WaveformChunk, ctx: CheckContext) -> None:
        st = self._lines.get(chunk.feed)
        if st is None:
            st = self._new_line(chunk)
        self._ctx = ctx
        st.asm.push(chunk.samples, chunk.t0, st.sink)

    def _new_line(self, chunk: WaveformChunk) -> _LineState:
        feed, fs = chunk.feed, chunk.fs

        def sink(block: FloatArray, t_first: float, restarted: bool) -> None:
            self._analyse(self._lines[feed], feed, block, t_first, restarted)

        st = _LineState(
            asm=BlockAssembler(block_n=max(1, round(self.cfg.analysis_block_s * fs)), fs=fs),
            det=PulseDetector(fs=fs, min_prominence=self.cfg.min_prominence_mmhg),
            sink=sink,
            average_beats=self.cfg.average_beats,
            reference_beats=self.cfg.reference_beats,
        )
        self._lines[feed] = st
        return st

    def _analyse(
        self, st: _LineState, feed: str, block: FloatArray, t_first: float, restarted: bool
    ) -> None:
        ctx = self._ctx
        assert ctx is not None
        cfg = self.cfg
        t_end = t_first + len(block) / st.det.fs
        beats = st.det.process(block, t_first, restarted)
        block_mean = float(_add_reduce(block)) / len(block)  # block.mean(), unwrapped
        disconnected = block_mean < cfg.disconnect_mean_mmhg
        amplitude = beats.amplitude
        pp = median_of(amplitude) if amplitude else float(_max(block) - _min(block))
        ref = median_of(st.pp_ref) if st.pp_ref else math.nan
        damped = not disconnected and (
            pp < cfg.flat_pulse_pressure_mmhg or pp < cfg.damped_fraction * ref
        )
        self._report(
            ctx,
            DISCONNECTED,
            feed,
            disconnected,
            t_end,
            value=block_mean,
            limit=cfg.disconnect_mean_mmhg,
        )
        self._report(
            ctx,
            DAMPED,
            feed,
            damped,
            t_end,
            value=pp,
            limit=cfg.damped_fraction * ref if math.isfinite(ref) else None,
        )
        if disconnected or damped or len(beats) == 0:
            return  # limits held: a damped or open line misreads every pressure
        self._take_beats(st, beats, amplitude)
        t = beats.t[-1]
        for name, v in (
            ("abp_systolic", median_of(beats.peak)),
            ("abp_diastolic", median_of(beats.trough)),
            ("abp_mean", median_of(beats.mean)),
        ):
            ctx.measure(Measurement(name=name, value=v, unit="mmHg", t=t, feed=feed))
        ctx.measure(
            Measurement(
                name="abp_pulse_rate",
                value=60.0 / median_of(beats.ibi),
                unit="bpm",
                t=t,
                feed=feed,
            )
        )
        sys_ = median_of(st.sys)
        mean = median_of(st.mean)
        self._report(
            ctx,
            HYPOTENSION,
            feed,
            sys_ < cfg.systolic_low_mmhg,
            t,
            value=sys_,
            limit=cfg.systolic_low_mmhg,
        )
        self._report(
            ctx,
            HYPERTENSION,
            feed,
            sys_ > cfg.systolic_high_mmhg,
            t,
            value=sys_,
            limit=cfg.systolic_high_mmhg,
        )
        self._report(
            ctx, MAP_LOW, feed, mean < cfg.mean_low_mmhg, t, value=mean, limit=cfg.mean_low_mmhg
        )
        self._report(
            ctx, MAP_HIGH, feed, mean > cfg.mean_high_mmhg, t, value=mean, limit=cfg.mean_high_mmhg
        )

    @staticmethod
    def _take_beats(st: _LineState, beats: Beats, amplitude: list[float]) -> None:
        # bounded deques: the newest average_beats / reference_beats are kept
        st.sys.extend(beats.peak)
        st.dia.extend(beats.trough)
        st.mean.extend(beats.mean)
        st.pp_ref.extend(amplitude)
