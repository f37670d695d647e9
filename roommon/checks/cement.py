"""Cement-injection pressure check: injection phases, pressure limits, working time.

Data flow: the room pipeline writes each cement-pressure chunk (kPa) into the
feed's ring buffer and calls :meth:`CementCheck.on_chunk`. Over-pressure is
tested on every chunk (one vectorised max, exact crossing times); the rest is
analysed in fixed blocks of ``analysis_block_s`` (see
:mod:`roommon.signal.blocks`), averaged into ``segment_s`` segments:

- phase: ``idle`` -> ``injecting`` <-> ``paused`` -> ``ended`` (no injection for
  ``end_after_s``), then a new injection starts again from ``ended``;
- a sudden drop during injection (possible leak along a path of least resistance);
- a rising trend that will reach the maximum within ``rising_horizon_s``;
- injection past the cement's working time, counted from the room event
  ``cement.mixed`` (an operator command or a configured feed).

Events published: ``cement.injection_started``, ``cement.phase`` (every
change), and ``cement.injection_ended`` once per injection: the recovery timer
starts from it.

Design figures (PMMA vertebroplasty/kyphoplasty): peak injection pressures in
patients averaged about 1.7 MPa, maximum about 3.2 MPa; pressure rises as the
cement cures; the injectable window is roughly 4 to 15 minutes after mixing
depending on product and temperature. Every limit is a per-product setting.
"""

from __future__ import annotations

import enum
import math
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
from roommon.checks.declarations.cement import (
    CEMENT,
    EARLY_INJECTION,
    NO_MIX_TIME,
    OVER_PRESSURE,
    PAST_WORKING_TIME,
    RISING_TO_MAX,
    SUDDEN_DROP,
    CementSettings,
)
from roommon.core import units
from roommon.core.conditions import ConditionSpec
from roommon.core.events import (
    CementMixed,
    CementPhaseChanged,
    InjectionEnded,
    InjectionStarted,
    RoomEvent,
)
from roommon.core.log import get_logger
from roommon.core.model import FloatArray, WaveformChunk
from roommon.signal.blocks import BlockAssembler, BlockSink
from roommon.signal.thresholds import hysteresis_state, transitions

log = get_logger(__name__)


def _max(a: FloatArray) -> float:
    """``float(a.max())`` (NaN included) without the ~1.3 µs of its reduction wrapper."""
    return a.item(a.argmax())


def _min(a: FloatArray) -> float:
    """``float(a.min())`` (NaN included) without the ~1.3 µs of its reduction wrapper."""
    return a.item(a.argmin())


class Phase(enum.StrEnum):
    IDLE = "idle"
    INJECTING = "injecting"
    PAUSED = "paused"
    ENDED = "ended"


class _FeedState:
    """Carried state of one cement-pressure feed."""

    __slots__ = (
        "asm",
        "drop_n",
        "drop_until",
        "feed",
        "hist",
        "hist_len",
        "injecting",
        "injection",
        "last_inject_t",
        "over",
        "peak",
        "phase",
        "seg_dt",
        "seg_n",
        "sink",
        "started_t",
        "trend_n",
        "trend_x",
        "trend_xx",
    )

    def __init__(self, *, feed: str, asm: BlockAssembler, sink: BlockSink) -> None:
        self.feed = feed
        self.asm = asm
        self.sink = sink
        self.phase = Phase.IDLE
        self.injecting = False  # hysteresis state of the segment means
        self.over = False
        self.hist: FloatArray = np.empty(0, dtype=np.float64)  # recent segment means
        self.injection = 0  # number of the current/last injection
        self.started_t = math.nan
        self.last_inject_t = math.nan  # end of the last injecting segment
        self.peak = 0.0
        self.drop_until = -math.inf
        # Fixed per feed (its sample rate and the settings), computed once.
        self.seg_n = 1
        self.seg_dt = 1.0
        self.hist_len = 0
        self.trend_n = 2
        self.trend_x: FloatArray = np.empty(0, dtype=np.float64)
        self.trend_xx = 1.0
        self.drop_n = (1, 1, 1, 1)  # segments: block, fall window, confirmation, hold


class CementCheck(Check, declaration=CEMENT):
    """Injection phases, over-pressure, sudden drop, rising trend and working time."""

    def __init__(
        self, *, room: str, settings: CheckSettings, feeds: Mapping[str, FeedView]
    ) -> None:
        super().__init__(room=room, settings=settings, feeds=feeds)
        assert isinstance(settings, CementSettings)
        self.cfg = settings
        self.mixed_t: float | None = None
        self._states: dict[str, _FeedState] = {}
        self._conditions = ConditionMemory()
        self._ctx: CheckContext | None = None

    # -- hooks ---------------------------------------------------------------

    def on_chunk(self, chunk: WaveformChunk, ctx: CheckContext) -> None:
        st = self._states.get(chunk.feed)
        if st is None:
            st = self._new_state(chunk)
        x = chunk.samples
        if len(x) == 0:
            return
        limit = self.cfg.max_pressure_kpa
        # Only a chunk that can cross a level needs the per-sample hysteresis.
        if (_min(x) < limit - self.cfg.over_pressure_clear_kpa) if st.over else (_max(x) > limit):
            self._over_pressure(st, x, chunk.t0, chunk.fs, ctx)
        self._ctx = ctx
        st.asm.push(x, chunk.t0, st.sink)

    def on_event(self, event: RoomEvent, ctx: CheckContext) -> None:
        if isinstance(event, CementMixed):
            self.mixed_t = event.t
            log.info("cement_mixed", room=self.room, t=event.t)

    def on_tick(self, now: float, ctx: CheckContext) -> None:
        # A feed that fell silent after an injection sends no more blocks; the
        # clock ends the injection then. The grace keeps it from racing samples
        # still in flight, which end it themselves on sample time.
        grace = self.cfg.analysis_block_s + 5.0
        for st in self._states.values():
            if st.phase is Phase.PAUSED and now - st.last_inject_t >= self.cfg.end_after_s + grace:
                self._end_injection(st, st.last_inject_t + self.cfg.end_after_s, ctx)

    # -- internals -----------------------------------------------------------

    def _new_state(self, chunk: WaveformChunk) -> _FeedState:
        cfg = self.cfg
        seg_n = max(1, round(cfg.segment_s * chunk.fs))
        segs = max(1, round(cfg.analysis_block_s / (seg_n / chunk.fs)))
        feed = chunk.feed

        def sink(block: FloatArray, t_first: float, restarted: bool) -> None:
            self._analyse(self._states[feed], block, t_first, restarted)

        st = _FeedState(feed=feed, asm=BlockAssembler(block_n=seg_n * segs, fs=chunk.fs), sink=sink)
        st.seg_n = seg_n
        st.seg_dt = seg_dt = seg_n / chunk.fs
        drop = cfg.drop_reference_hold_s + cfg.drop_window_s + cfg.drop_confirm_s
        st.hist_len = math.ceil(max(drop, cfg.trend_window_s) / seg_dt) + 2
        # least-squares slope over the trend window: centred times and their norm
        st.trend_n = n = max(2, round(cfg.trend_window_s / seg_dt))
        st.trend_x = (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * seg_dt
        st.trend_xx = float(np.dot(st.trend_x, st.trend_x))
        st.drop_n = (
            round(cfg.analysis_block_s / seg_dt),
            max(1, round(cfg.drop_window_s / seg_dt)),
            max(1, round(cfg.drop_confirm_s / seg_dt)),
            max(1, round(cfg.drop_reference_hold_s / seg_dt)),
        )
        self._states[feed] = st
        return st

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
        self._conditions.report(ctx, spec, feed=feed, active=active, t=t, value=value, limit=limit)

    def _over_pressure(
        self, st: _FeedState, x: FloatArray, t0: float, fs: float, ctx: CheckContext
    ) -> None:
        limit = self.cfg.max_pressure_kpa
        state = hysteresis_state(
            x, on_above=limit, off_below=limit - self.cfg.over_pressure_clear_kpa, state=st.over
        )
        idx, new = transitions(state, before=st.over)
        for i, on in zip(idx.tolist(), new.tolist(), strict=True):
            self._report(
                ctx, OVER_PRESSURE, st.feed, on, t0 + i / fs, value=float(x[i]), limit=limit
            )
        st.over = bool(state[-1])

    def _analyse(self, st: _FeedState, block: FloatArray, t_first: float, restarted: bool) -> None:
        ctx = self._ctx
        assert ctx is not None
        cfg = self.cfg
        fs = st.asm.fs
        seg_n = st.seg_n
        seg: FloatArray = np.add.reduce(block.reshape(-1, seg_n), axis=1) * (1.0 / seg_n)
        seg_dt = st.seg_dt
        t_end = t_first + len(block) / fs
        if restarted:
            st.hist = np.empty(0, dtype=np.float64)
        if not st.injecting and _max(seg) <= cfg.inject_on_kpa:
            # Nothing injecting in this block: the cheap path for most of a procedure.
            if st.phase is Phase.PAUSED and t_end - st.last_inject_t >= cfg.end_after_s:
                self._end_injection(st, st.last_inject_t + cfg.end_after_s, ctx)
            st.hist = seg[-st.hist_len :]
            return
        if st.injecting and _min(seg) >= cfg.inject_off_kpa:  # injection simply goes on
            changes: list[tuple[int, bool]] = []
            injecting = True
        else:
            state = hysteresis_state(
                seg, on_above=cfg.inject_on_kpa, off_below=cfg.inject_off_kpa, state=st.injecting
            )
            idx, new = transitions(state, before=st.injecting)
            changes = list(zip(idx.tolist(), new.tolist(), strict=True))
            injecting = bool(state[-1])
        for i, on in changes:
            t = t_first + i * seg_dt
            if on:
                self._start_or_resume(st, t, ctx)
            else:
                st.last_inject_t = t
                self._set_phase(st, Phase.PAUSED, t, ctx)
                self._working_time(st, t, ctx, injecting=False)
                self._report(ctx, RISING_TO_MAX, st.feed, False, t)
        st.injecting = injecting
        if injecting:
            st.last_inject_t = t_end
            st.peak = max(st.peak, _max(block))
            ctx.measure(
                Measurement(
                    name="cement_peak_pressure", value=st.peak, unit="kPa", t=t_end, feed=st.feed
                )
            )
        elif st.phase is Phase.PAUSED and t_end - st.last_inject_t >= cfg.end_after_s:
            self._end_injection(st, st.last_inject_t + cfg.end_after_s, ctx)
        ctx.measure(
            Measurement(
                name="cement_pressure", value=float(seg[-1]), unit="kPa", t=t_end, feed=st.feed
            )
        )
        hist = np.concatenate((st.hist, seg))
        self._sudden_drop(st, hist, t_end, seg_dt, t_end, ctx)
        self._rising(st, hist, seg_dt, t_end, ctx)
        if st.injecting:
            self._working_time(st, t_end, ctx, injecting=True)
        st.hist = hist[-st.hist_len :]

    def _start_or_resume(self, st: _FeedState, t: float, ctx: CheckContext) -> None:
        cfg = self.cfg
        if st.phase is Phase.PAUSED and t - st.last_inject_t >= cfg.end_after_s:
            self._end_injection(st, st.last_inject_t + cfg.end_after_s, ctx)
        if st.phase in (Phase.IDLE, Phase.ENDED):
            st.injection += 1
            st.started_t = t
            st.peak = 0.0
            ctx.event(InjectionStarted(t=t, feed=st.feed, injection=st.injection))
            log.info("cement_injection_started", room=self.room, feed=st.feed, n=st.injection)
        self._set_phase(st, Phase.INJECTING, t, ctx)

    def _end_injection(self, st: _FeedState, t: float, ctx: CheckContext) -> None:
        self._set_phase(st, Phase.ENDED, t, ctx)
        ctx.event(
            InjectionEnded(
                t=t,
                feed=st.feed,
                injection=st.injection,
                started_t=st.started_t,
                last_injecting_t=st.last_inject_t,
                peak_kpa=st.peak,
            )
        )
        log.info(
            "cement_injection_ended",
            room=self.room,
            feed=st.feed,
            n=st.injection,
            peak=units.value(st.peak, "kPa"),
        )

    def _set_phase(self, st: _FeedState, phase: Phase, t: float, ctx: CheckContext) -> None:
        if st.phase is phase:
            return
        previous = st.phase
        st.phase = phase
        ctx.event(
            CementPhaseChanged(
                t=t,
                feed=st.feed,
                phase=phase.value,
                previous=previous.value,
                injection=st.injection,
            )
        )

    def _sudden_drop(
        self,
        st: _FeedState,
        hist: FloatArray,
        seg_end: float,
        seg_dt: float,
        t_end: float,
        ctx: CheckContext,
    ) -> None:
        """Falls judged ``drop_confirm_s`` late, once the lower level has held.

        ``hist`` ends with this block's segments; ``seg_end`` is the end time of
        its last one. The reference of segment ``p`` is the highest level held
        for ``drop_reference_hold_s`` (a running minimum over ``h`` segments)
        among the holds ending in the ``w`` segments before ``p``: a spike shorter
        than the hold never is one. A stop relaxes towards rest and keeps falling,
        a leak holds a lower level: the confirmation window tells them apart.
        """
        cfg = self.cfg
        k, w, c, h = st.drop_n
        n = len(hist)
        first = max(n - k - c, w + h - 1)
        keep = 1.0 - cfg.drop_fraction
        span = hist[max(first - w - h + 1, 0) :]
        # No fall of drop_fraction anywhere in the span: nothing to look at (the usual case).
        if first < n - c and _min(span) < keep * _max(span):
            hi = n - c
            pos = np.arange(first, hi)
            # held[i]: lowest of the h segments ending at segment first - w + i
            count = hi - first + w - 1
            lo_k = first - w - h + 1
            held = hist[lo_k : lo_k + count].copy()
            for j in range(1, h):
                np.minimum(held, hist[lo_k + j : lo_k + j + count], out=held)
            ref = held[: hi - first].copy()  # highest hold ending in the w segments before
            for j in range(1, w):
                np.maximum(ref, held[j : j + hi - first], out=ref)
            after = hist[first:hi].copy()  # lowest level while confirming
            for j in range(1, c + 1):
                np.minimum(after, hist[first + j : hi + j], out=after)
            level = hist[first:hi]
            hit = (
                (ref >= cfg.drop_min_reference_kpa)
                & (level < keep * ref)
                & (after >= keep * level)
                & (after >= cfg.inject_on_kpa)
            )
            if hit.any():
                i = int(np.argmax(hit))
                j = int(len(hit) - 1 - np.argmax(hit[::-1]))
                t_hit = seg_end - (n - 1 - int(pos[i])) * seg_dt
                if not self._conditions.is_active(st.feed, SUDDEN_DROP.code):
                    log.warning(
                        "cement_sudden_drop",
                        room=self.room,
                        feed=st.feed,
                        from_kpa=float(ref[i]),
                        to_kpa=float(level[i]),
                    )
                self._report(
                    ctx,
                    SUDDEN_DROP,
                    st.feed,
                    True,
                    t_hit,
                    value=float(level[i]),
                    limit=float(keep * ref[i]),
                )
                st.drop_until = seg_end - (n - 1 - int(pos[j])) * seg_dt + cfg.drop_hold_s
        if t_end >= st.drop_until:
            self._report(ctx, SUDDEN_DROP, st.feed, False, t_end)

    def _rising(
        self, st: _FeedState, hist: FloatArray, seg_dt: float, t_end: float, ctx: CheckContext
    ) -> None:
        cfg = self.cfg
        n = st.trend_n
        if not st.injecting or len(hist) < n:
            self._report(ctx, RISING_TO_MAX, st.feed, False, t_end)
            return
        y = hist[-n:]
        slope = float(np.dot(st.trend_x, y)) / st.trend_xx  # kPa/s, least squares
        now = float(y[-1])
        limit = cfg.max_pressure_kpa
        rising = (
            slope > 0.0
            and now >= cfg.rising_min_fraction * limit
            and now + slope * cfg.rising_horizon_s >= limit
        )
        self._report(ctx, RISING_TO_MAX, st.feed, rising, t_end, value=now, limit=limit)

    def _working_time(
        self, st: _FeedState, t: float, ctx: CheckContext, *, injecting: bool
    ) -> None:
        cfg = self.cfg
        mixed = self.mixed_t
        if mixed is None:
            self._report(ctx, NO_MIX_TIME, st.feed, injecting, t)
            return
        self._report(ctx, NO_MIX_TIME, st.feed, False, t)
        elapsed = t - mixed
        self._report(
            ctx,
            PAST_WORKING_TIME,
            st.feed,
            injecting and elapsed > cfg.working_time_s,
            t,
            value=elapsed,
            limit=cfg.working_time_s,
        )
        self._report(
            ctx,
            EARLY_INJECTION,
            st.feed,
            injecting and elapsed < cfg.min_dough_time_s,
            t,
            value=elapsed,
            limit=cfg.min_dough_time_s,
        )
