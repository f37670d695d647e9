"""Prometheus metrics of one daemon, in its own registry (never the process-global one).

:class:`DaemonMetrics` is two things:

* a :class:`~roommon.room.pipeline.RoomOutput` handed to the daemon as an extra
  output: it counts alarm transitions as they happen (raised, by code and
  priority) and observes the time from raising to acknowledgement;
* a collector that reads the daemon's own bookkeeping when scraped (feed
  counters, alarm state, outbox, store, broker link, work times), so nothing
  on the sample path pays for metrics.

Per-feed series are rows of :data:`FEED_SERIES`: exposing a new number a
:class:`~roommon.room.feeds.FeedRuntime` keeps (shed payloads, input lag) is
one row. The HTTP side (``/metrics``, ``/healthz``) is
:mod:`roommon.web.ops`; docs/operations.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from roommon.alerts.engine import Outgoing
from roommon.room.feeds import FeedRuntime
from roommon.runtime.health import daemon_health
from roommon.wire.payloads import RoomEventMessage, RoomStateMessage
from roommon.wire.timer import TimerEventMessage, TimerMessage

if TYPE_CHECKING:
    from roommon.runtime.daemon import Daemon

#: Seconds from an alarm being raised to its acknowledgement (histogram buckets).
ACK_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@dataclass(frozen=True, slots=True)
class FeedSeries:
    """One per-feed metric: its name, type, help and how to read it from a feed
    (``None``: no value yet, the series is left out)."""

    name: str
    type: Literal["counter", "gauge"]
    help: str
    value: Callable[[FeedRuntime, float], float | None]


def _age(feed: FeedRuntime, mono: float) -> float | None:
    return None if feed.last_seen_mono is None else mono - feed.last_seen_mono


#: Per-feed metrics, labelled room and feed. Add a row to expose a new feed number.
FEED_SERIES: tuple[FeedSeries, ...] = (
    FeedSeries(
        "roommon_feed_messages_accepted",
        "counter",
        "Feed payloads (or serial frames) accepted into the room.",
        lambda f, _: f.received,
    ),
    FeedSeries(
        "roommon_feed_bad_samples",
        "counter",
        "Samples cut out as NaN, infinite or physically impossible.",
        lambda f, _: f.bad_samples,
    ),
    FeedSeries(
        "roommon_feed_seq_gaps",
        "counter",
        "Gaps in the feed's sequence numbers.",
        lambda f, _: f.gaps,
    ),
    FeedSeries(
        "roommon_feed_last_sample_age_seconds",
        "gauge",
        "Seconds since the feed's last accepted data (absent until the first).",
        _age,
    ),
)


class DaemonMetrics:
    """The metrics of one daemon: an extra output for events, a collector for state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._daemon: Daemon | None = None
        self.alarms_raised = Counter(
            "roommon_alarms_raised",
            "Alarms raised, by room, condition code, priority and data origin.",
            ["room", "code", "priority", "origin"],
            registry=self.registry,
        )
        self.acknowledge_seconds = Histogram(
            "roommon_alarm_acknowledge_seconds",
            "Seconds from an alarm being raised to its acknowledgement.",
            ["room", "priority"],
            buckets=ACK_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self))

    def attach(self, daemon: Daemon) -> None:
        """Read this daemon's state on every scrape (after the daemon is entered)."""
        self._daemon = daemon

    @property
    def daemon(self) -> Daemon | None:
        return self._daemon

    # ------------------------------------------------------------------ RoomOutput

    def alarms(self, outgoing: list[Outgoing]) -> None:
        for o in outgoing:
            e = o.event
            if e.transition == "raised":
                self.alarms_raised.labels(e.room, e.code, e.priority, e.origin).inc()
            elif e.transition == "acknowledged":
                self.acknowledge_seconds.labels(e.room, e.priority).observe(max(0.0, e.t - e.since))

    def room_event(self, message: RoomEventMessage) -> None:
        pass

    def state(self, message: RoomStateMessage) -> None:
        pass

    def timer_events(self, messages: list[TimerEventMessage]) -> None:
        pass

    def timer(self, message: TimerMessage) -> None:
        pass


class _StateCollector:
    """Reads the attached daemon when scraped."""

    def __init__(self, metrics: DaemonMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # names are dynamic per scrape; nothing to clash with in our own registry

    def collect(self) -> Iterator[Metric]:
        d = self._metrics.daemon
        if d is None:
            return
        yield from _feeds(d)
        yield from _alarms(d)
        yield from _infrastructure(d)
        yield from _work(d)


def _feeds(d: Daemon) -> Iterator[Metric]:
    mono = d.clock.monotonic()
    labels = ["room", "feed"]
    families: list[tuple[FeedSeries, CounterMetricFamily | GaugeMetricFamily]] = [
        (
            s,
            CounterMetricFamily(s.name, s.help, labels=labels)
            if s.type == "counter"
            else GaugeMetricFamily(s.name, s.help, labels=labels),
        )
        for s in FEED_SERIES
    ]
    rejected = CounterMetricFamily(
        "roommon_feed_messages_rejected",
        "Feed payloads or frames rejected, by reason.",
        labels=["room", "feed", "reason"],
    )
    ok = GaugeMetricFamily(
        "roommon_feed_ok", "1 while the feed delivers data within its stale time.", labels=labels
    )
    for room_id, pipeline in d.pipelines.items():
        for name, feed in pipeline.feeds.items():
            for series, family in families:
                value = series.value(feed, mono)
                if value is not None:
                    family.add_metric([room_id, name], value)
            for reason, n in feed.rejected.items():
                rejected.add_metric([room_id, name, reason], n)
            ok.add_metric([room_id, name], 1.0 if feed.status(mono) == "ok" else 0.0)
    for _, family in families:
        yield family
    yield rejected
    yield ok
    ingest = CounterMetricFamily(
        "roommon_daemon_messages",
        "Inbound messages by outcome before or besides a room (feed_accepted, feed_rejected, "
        "unknown_room, unknown_feed, unroutable, commands_ok, commands_refused...).",
        labels=["outcome"],
    )
    for outcome, n in sorted(d.counters.items()):
        ingest.add_metric([outcome], n)
    yield ingest


def _alarms(d: Daemon) -> Iterator[Metric]:
    active = GaugeMetricFamily(
        "roommon_alarms_active",
        "Alarms not yet cleared (active, acknowledged or latched), by room, priority and kind.",
        labels=["room", "priority", "kind"],
    )
    failures = CounterMetricFamily(
        "roommon_room_failures",
        "Unexpected exceptions contained in a room's own steps (room.failed).",
        labels=["room"],
    )
    for room_id, pipeline in d.pipelines.items():
        counts: dict[tuple[str, str], int] = {}
        for alarm in pipeline.engine.alarms():
            key = (alarm.priority.label, alarm.kind.value)
            counts[key] = counts.get(key, 0) + 1
        for priority in ("low", "medium", "high"):
            for kind in ("physiological", "technical"):
                active.add_metric([room_id, priority, kind], counts.get((priority, kind), 0))
        failures.add_metric([room_id], pipeline.failures)
    yield active
    yield failures


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _infrastructure(d: Daemon) -> Iterator[Metric]:
    health = daemon_health(d)
    yield _gauge("roommon_healthy", "1 when /healthz says healthy.", float(health.healthy))
    room_ok = GaugeMetricFamily(
        "roommon_room_healthy", "1 while the room is processed and not failing.", labels=["room"]
    )
    for room_id, problems in health.rooms.items():
        room_ok.add_metric([room_id], 0.0 if problems or health.processing else 1.0)
    yield room_ok
    yield _gauge(
        "roommon_outbox_depth",
        "QoS 1 messages (alarm events, notifications, replies) waiting for the broker.",
        d.store.pending_count(),
    )
    writable = 0.0 if d.store.degraded else 1.0
    yield _gauge("roommon_store_writable", "1 while the alarm store takes writes.", writable)
    yield CounterMetricFamily(
        "roommon_store_write_failures", "Alarm-store writes that failed.", value=d.store.failures
    )
    link = d.link
    if link is not None:
        yield _gauge(
            "roommon_broker_connected",
            "1 while the MQTT link is connected.",
            float(link.connected.is_set()),
        )
        yield CounterMetricFamily(
            "roommon_broker_connects",
            "Successful MQTT connections (the first and every reconnect).",
            value=link.connects,
        )
        yield CounterMetricFamily(
            "roommon_broker_disconnects",
            "MQTT connections lost or refused.",
            value=link.disconnects,
        )
    serial = GaugeMetricFamily(
        "roommon_serial_connected", "1 while the serial port is open.", labels=["room", "port"]
    )
    for b in d.serial:
        serial.add_metric([b.pipeline.room, b.port.port], float(b.feed.connected))
    yield serial


def _work(d: Daemon) -> Iterator[Metric]:
    yield HistogramMetricFamily(
        "roommon_tick_seconds",
        "Work time of the ticker's passes over every room (time-based checks, feed health).",
        buckets=d.tick_time.cumulative(),
        sum_value=d.tick_time.seconds,
    )
    yield _gauge(
        "roommon_tick_last_seconds", "Work time of the last tick pass.", d.tick_time.last_s
    )
    if d.last_tick_mono is not None:
        yield _gauge(
            "roommon_tick_age_seconds",
            "Seconds since the last tick pass ended.",
            d.clock.monotonic() - d.last_tick_mono,
        )
    checks = HistogramMetricFamily(
        "roommon_check_seconds",
        "Work time of a check's calls (samples, readings, ticks, events).",
        labels=["room", "check"],
    )
    for room_id, pipeline in d.pipelines.items():
        for name, work in pipeline.check_time.items():
            checks.add_metric([room_id, name], work.cumulative(), work.seconds)
    yield checks
