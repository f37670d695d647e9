"""The alarm-burden report as one self-contained HTML page (``roommon report``).

Every plot is drawn with matplotlib's Agg backend (no display needed) and
inlined as a base64 PNG; the styles are inline too, so the file can be mailed
or archived and opens anywhere without a network. Numbers, times and
durations go through :mod:`roommon.core.units` like every other output.
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from roommon.core import units

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from roommon.cli.report import Injection, ReportData, Strip
    from roommon.wire.payloads import AlarmEventMessage

#: Alarm priority colours of IEC 60601-1-8 practice: high red, medium yellow, low cyan.
PRIORITY_COLOURS: Final = {"high": "#d62728", "medium": "#e6a700", "low": "#17a2b8"}
PRIORITIES: Final = ("high", "medium", "low")
SELF_CLEAR_S: Final = 10.0

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
.note { color: #666; font-style: italic; }
"""


def _png(fig: Figure) -> str:
    """The figure as an ``<img>`` with its PNG inlined; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _figure(width: float = 9.0, height: float = 3.2) -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    ax.grid(True, alpha=0.3)
    return fig, ax


def _raised(events: Sequence[AlarmEventMessage]) -> list[AlarmEventMessage]:
    return [e for e in events if e.transition == "raised"]


def per_hour_figure(events: Sequence[AlarmEventMessage], *, utc: bool) -> str:
    """Alarms raised per clock hour, stacked by priority."""
    import numpy as np

    raised = _raised(events)
    first = min(e.t for e in raised) // 3600 * 3600
    hours = int((max(e.t for e in raised) - first) // 3600) + 1
    counts = {p: np.zeros(hours) for p in PRIORITIES}
    for e in raised:
        counts[e.priority][int((e.t - first) // 3600)] += 1
    fig, ax = _figure()
    x = np.arange(hours)
    bottom = np.zeros(hours)
    for p in PRIORITIES:
        ax.bar(x, counts[p], bottom=bottom, color=PRIORITY_COLOURS[p], label=p)
        bottom += counts[p]
    step = max(1, hours // 12)
    ax.set_xticks(x[::step])
    ax.set_xticklabels(
        [units.clock(first + 3600 * h, utc=utc, seconds=False, with_zone=False) for h in x[::step]]
    )
    ax.set_xlabel(f"hour starting ({units.zone(first, utc=utc)})")
    ax.set_ylabel("alarms raised")
    ax.legend(title="priority")
    return _png(fig)


def _counts_figure(counts: Counter[str], *, xlabel: str, colour: str = "#4c72b0") -> str:
    names = [n for n, _ in counts.most_common()][::-1]
    fig, ax = _figure(height=max(1.6, 0.35 * len(names) + 0.8))
    ax.barh(names, [counts[n] for n in names], color=colour)
    ax.set_xlabel(xlabel)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: whole numbers
    return _png(fig)


def _self_cleared(events: Sequence[AlarmEventMessage]) -> list[AlarmEventMessage]:
    """Raised alarms that cleared, unacknowledged, within 10 s of being raised."""
    by_alarm: dict[str, list[AlarmEventMessage]] = {}
    for e in events:
        by_alarm.setdefault(e.alarm_id, []).append(e)
    out = []
    for evs in by_alarm.values():
        raised = next((e for e in evs if e.transition == "raised"), None)
        if raised is None:
            continue
        acked = any(e.transition == "acknowledged" for e in evs)
        clear = next((e for e in evs if e.transition == "cleared"), None)
        if not acked and clear is not None and clear.t - raised.since <= SELF_CLEAR_S:
            out.append(raised)
    return out


def _ack_delays(events: Sequence[AlarmEventMessage]) -> list[float]:
    since = {e.alarm_id: e.since for e in events if e.transition == "raised"}
    return [
        e.t - since[e.alarm_id]
        for e in events
        if e.transition == "acknowledged" and e.alarm_id in since
    ]


def ack_figure(delays: Sequence[float]) -> str:
    fig, ax = _figure()
    ax.hist([d / 60 for d in delays], bins=min(30, max(5, len(delays))), color="#4c72b0")
    ax.set_xlabel("time from raising to acknowledgement (min)")
    ax.set_ylabel("alarms")
    return _png(fig)


def strip_figure(strip: Strip, *, utc: bool) -> str:
    """The waveform around a high-priority alarm's onset (seconds from the onset)."""
    a = strip.alarm
    fig, ax = _figure(height=2.6)
    ax.plot(strip.t - a.since, strip.y, color="#222", linewidth=0.8)
    ax.axvline(0.0, color=PRIORITY_COLOURS["high"], linestyle="--", label="alarm raised")
    ax.set_xlabel(f"seconds from the alarm raised at {units.clock(a.since, utc=utc)}")
    ax.set_ylabel(f"{strip.feed} ({strip.unit})")
    ax.legend(loc="upper right")
    return _png(fig)


def injection_figure(inj: Injection, *, utc: bool) -> str:
    """An injection's pressure curve with the over-pressure limit and the peak."""
    import numpy as np

    fig, ax = _figure()
    x = inj.t - inj.started_t
    ax.plot(x, inj.y, color="#4c72b0", linewidth=1.0, label="pressure")
    ax.axhline(inj.limit_kpa, color=PRIORITY_COLOURS["high"], linestyle="--",
               label=f"limit {units.value(inj.limit_kpa, 'kPa')}")
    i = int(np.argmax(inj.y))
    ax.plot([x[i]], [inj.y[i]], "o", color=PRIORITY_COLOURS["high"])
    ax.annotate(f"peak {units.value(inj.peak_kpa, 'kPa')}", (x[i], inj.y[i]),
                textcoords="offset points", xytext=(8, -4))
    ax.set_xlabel(f"seconds from the injection's start at {units.clock(inj.started_t, utc=utc)}")
    ax.set_ylabel("cement pressure (kPa)")
    ax.legend(loc="lower right")
    return _png(fig)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def build_html(data: ReportData) -> str:
    """The whole report page."""
    from roommon.alerts.store import burden

    utc = data.utc
    events = data.events
    raised = _raised(events)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>roommon alarm-burden report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Alarm-burden report</h1>",
        f"<p>Source: {html.escape(data.source)}. "
        + (
            f"Alarms from {html.escape(units.date_time(min(e.t for e in events), utc=utc))} "
            f"to {html.escape(units.date_time(max(e.t for e in events), utc=utc))}. "
            if events
            else ""
        )
        + "roommon is not a certified medical device.</p>",
    ]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in data.notes]
    if not raised:
        parts.append("<h2>Alarms</h2><p>no alarms</p>")
    else:
        cleared = _self_cleared(events)
        delays = _ack_delays(events)
        rows = []
        for b in burden(events):
            mine = [e for e in cleared if e.room == b.room]
            rows.append(
                [
                    b.room,
                    str(b.alarms),
                    units.duration(b.hours * 3600),
                    units.per_hour(b.alarms, b.hours),
                    f"{b.share_acknowledged:.0%}",
                    units.value(b.median_ack_s, "s") if b.median_ack_s is not None else "-",
                    f"{len(mine)} ({b.share_self_cleared:.0%})",
                ]
            )
        parts += [
            "<h2>Summary per room</h2>",
            _table(
                ["room", "alarms", "span", "rate", "acknowledged", "median time to ack",
                 "self-cleared within 10 s"],
                rows,
            ),
            "<h2>Alarms per hour, by priority</h2>",
            per_hour_figure(events, utc=utc),
            "<h2>Alarms per condition</h2>",
            _counts_figure(Counter(e.code for e in raised), xlabel="alarms raised"),
            "<h2>Alarms per room</h2>",
            _counts_figure(Counter(e.room for e in raised), xlabel="alarms raised"),
            "<h2>Self-cleared within 10 s (alarm-fatigue candidates)</h2>",
            f"<p>{len(cleared)} of {len(raised)} alarms cleared by themselves, "
            "unacknowledged, within 10 s of being raised.</p>",
        ]
        if cleared:
            parts.append(
                _counts_figure(Counter(e.code for e in cleared), xlabel="self-cleared alarms",
                               colour="#8c564b")
            )
        parts.append("<h2>Time to acknowledge</h2>")
        if delays:
            parts.append(
                f"<p>{len(delays)} acknowledged; median "
                f"{units.value(statistics.median(delays), 's')}, longest "
                f"{units.value(max(delays), 's')}.</p>"
            )
            parts.append(ack_figure(delays))
        else:
            parts.append("<p>no alarm was acknowledged</p>")
    if data.has_samples:
        parts.append("<h2>High-priority alarms: the waveform around each onset</h2>")
        if not data.strips:
            parts.append("<p>no high-priority alarms</p>")
        for s in data.strips:
            a = s.alarm
            parts.append(
                f"<h3>{html.escape(units.date_time(a.since, utc=utc))} {html.escape(a.room)} "
                f"[{html.escape(a.feed)}] {html.escape(a.message or a.code)} "
                f"({html.escape(a.code)})"
                + (f": {html.escape(units.alarm_value(a.code, a.value))}" if a.value else "")
                + "</h3>"
            )
            parts.append(strip_figure(s, utc=utc))
        parts.append("<h2>Cement injections: pressure, limit and peak</h2>")
        if not data.injections:
            parts.append("<p>no cement injections</p>")
        for inj in data.injections:
            parts.append(
                f"<h3>{html.escape(inj.room)} injection {inj.number}: "
                f"{html.escape(units.clock(inj.started_t, utc=utc))} to "
                f"{html.escape(units.clock(inj.last_injecting_t, utc=utc))} "
                f"({units.duration(inj.last_injecting_t - inj.started_t)}), peak "
                f"{units.value(inj.peak_kpa, 'kPa')}, limit {units.value(inj.limit_kpa, 'kPa')}"
                "</h3>"
            )
            parts.append(injection_figure(inj, utc=utc))
    parts.append("</body></html>\n")
    return "\n".join(parts)
