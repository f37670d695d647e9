"""Beat shape: is a detected beat the patient's usual (supraventricular) beat or ventricular?

Sits in the EKG check after the QRS detector; its verdicts feed the VT rule. Each
beat is cut from the 1-30 Hz band-passed signal (the VF analyser's) from 100 ms
before to 150 ms after its R peak, and compared with a running template of the
patient's normal beat:

- **width**: the span over which the slope stays above a quarter of the beat's
  steepest slope (the steep part of the QRS); a ventricular beat is wider than
  the template, and wider than 60 ms of steep slope;
- **morphology**: the correlation with the template; a ventricular beat of a
  different shape correlates below 0.9 (a normal beat matches its own running
  template above that, bundle-branch block included).

A beat is ventricular when its shape differs (correlation < 0.9) *and* it is
wider, or when it is very different (correlation < 0.6) and not narrower. On
the shared MIT-BIH records this finds about 70 % of single PVCs and calls about
2 % of normal beats ventricular; a VT run needs six in a row, fast. The template
is the element-wise median of the first five beats (so a PVC among them does
not become the template), then follows matching beats with weight 1/8; its
width is taken again after every ``WIDTH_EVERY`` (8) of them. When
``adopt_after`` (12) consecutive beats all differ from the template but match
each other, the rhythm has changed (a bundle-branch block appeared, a lead
moved): their shape becomes the template, except while the check reports a VT
run (fast ventricular beats are VT, not the patient's new normal). Each verdict also
leaves the beat's correlation with the beat before (``last_like_previous``) and its size
against the template (``last_size``, the RMS ratio of the cuts; the correlation is blind
to size), which the check's VT rule uses. This stays cheap: a few numpy operations on
~100 samples per beat.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from roommon.core.model import FloatArray

PRE_S: Final = 0.100
POST_S: Final = 0.150
CORR_DIFFERENT: Final = 0.9
CORR_VERY_DIFFERENT: Final = 0.6
WIDE_S: Final = 0.060
WIDER_S: Final = 0.0
LEARN_BEATS: Final = 5
WIDTH_EVERY: Final = 8  # the template's width is taken again after this many updates
# ndarray.sum() is this, behind a Python wrapper that costs ~0.4 µs a call.
_sum = np.add.reduce


class BeatClassifier:
    """Normal / ventricular verdict per beat, from the band-passed signal around it."""

    __slots__ = (
        "_adopt_after",
        "_candidate",
        "_different_run",
        "_fs",
        "_learning",
        "_post",
        "_pre",
        "_previous",
        "_previous_ss",
        "_template",
        "_template_ss",
        "_template_width",
        "_tracked",
        "last_corr",
        "last_like_previous",  # correlation with the beat before
        "last_size",  # RMS of the beat's cut over the template's
        "last_width",
    )

    def __init__(self, *, fs: float, adopt_after: int = 12) -> None:
        self._fs = fs
        self._pre = round(PRE_S * fs)
        self._post = round(POST_S * fs)
        self._adopt_after = adopt_after
        self._learning: list[FloatArray] = []
        self._template: FloatArray | None = None
        self._template_width = 0.0
        self._tracked = 0  # matching beats folded into the template since its width was taken
        self._candidate: FloatArray | None = None
        self._different_run = 0
        self._previous: FloatArray | None = None
        self._previous_ss = 0.0
        self._template_ss = 0.0
        self.last_corr = 1.0
        self.last_like_previous = 1.0  # correlation with the beat before
        self.last_size = 1.0
        self.last_width = 0.0

    @property
    def span(self) -> tuple[int, int]:
        """Samples needed before and after the R peak."""
        return self._pre, self._post

    @property
    def learning(self) -> bool:
        """No template yet: the first beats are being collected."""
        return self._template is None

    @property
    def template_width(self) -> float:
        """Steep-slope width (s) of the normal beat's template (0 while learning)."""
        return self._template_width

    def reset(self) -> None:
        self._learning = []
        self._template = None
        self._previous = None
        self._candidate = None
        self._different_run = 0

    def classify(self, y: FloatArray, r: int, *, adopt: bool = True) -> bool | None:
        """Verdict for the beat at index ``r`` of ``y``: True ventricular, None unknown.

        ``adopt=False`` holds the template: a run of differing beats does not become
        the new normal (the check passes it while a VT run is going on: sustained VT
        is one shape beat after beat, and adopting it would end the alarm's condition
        after ``adopt_after`` beats while the VT goes on).
        """
        lo, hi = r - self._pre, r + self._post
        if lo < 0 or hi > y.shape[0]:
            return None
        raw = y[lo:hi]
        seg = raw - _sum(raw) / raw.shape[0]  # .mean() costs ~5 µs more per call
        ss: float = seg.dot(seg)  # energies are kept: a dot product is most of a correlation
        prev, prev_ss = self._previous, self._previous_ss
        self._previous, self._previous_ss = seg, ss
        self.last_like_previous = 1.0 if prev is None else _corr(seg, ss, prev, prev_ss)
        self.last_size = 1.0
        if self._template is None:
            self._learning.append(seg)
            if len(self._learning) >= LEARN_BEATS:
                stack = np.stack(self._learning)
                self._set_template(np.median(stack, axis=0))
                self._learning = []
            self.last_corr = 1.0
            return False
        tmpl = self._template
        corr = _corr(seg, ss, tmpl, self._template_ss)
        self.last_corr = corr
        if self._template_ss > 0:
            self.last_size = math.sqrt(ss / self._template_ss)
        ventricular = False
        if corr < CORR_DIFFERENT:  # only then can it be ventricular: width costs time
            width = self._width(seg)
            self.last_width = width
            wider = width > max(WIDE_S, self._template_width + WIDER_S) or (
                width > 1.5 * self._template_width
            )
            ventricular = wider or (corr < CORR_VERY_DIFFERENT and width >= self._template_width)
        if corr >= CORR_DIFFERENT:
            tmpl += (seg - tmpl) * 0.125
            self._template_ss = tmpl.dot(tmpl)
            self._tracked += 1
            if self._tracked >= WIDTH_EVERY:
                # The template follows the beats; its width must too (one learnt from
                # the first beats of a noisy start stayed twice the QRS's: mitdb 203).
                self._template_width = self._width(tmpl)
                self._tracked = 0
            self._different_run = 0
            self._candidate = None
        elif adopt:
            self._track_new_rhythm(seg)
        else:
            self._different_run = 0
            self._candidate = None
        return ventricular

    def _track_new_rhythm(self, seg: FloatArray) -> None:
        cand = self._candidate
        if cand is None or _corr(seg, seg.dot(seg), cand, cand.dot(cand)) < CORR_DIFFERENT:
            self._candidate = seg.copy()
            self._different_run = 1
            return
        cand += (seg - cand) * 0.25
        self._different_run += 1
        if self._different_run >= self._adopt_after:
            self._set_template(cand)
            self._candidate = None
            self._different_run = 0

    def _set_template(self, t: FloatArray) -> None:
        self._template = tmpl = np.array(t, dtype=np.float64)
        self._template_ss = tmpl.dot(tmpl)
        self._template_width = self._width(tmpl)

    def _width(self, seg: FloatArray) -> float:
        d = np.abs(seg[1:] - seg[:-1])
        steep = (d > 0.25 * d.item(int(d.argmax()))).nonzero()[0]
        if steep.shape[0] == 0:
            return 0.0
        first: int = steep.item(0)
        last: int = steep.item(-1)
        return (last - first + 1) / self._fs


def _corr(a: FloatArray, aa: float, b: FloatArray, bb: float) -> float:
    """Correlation of two zero-mean cuts, given their energies ``aa`` and ``bb``."""
    den = math.sqrt(aa * bb)
    return float(a.dot(b)) / den if den > 0 else 0.0
