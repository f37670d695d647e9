"""Serial inputs of the daemon: one :class:`SerialFeed` per configured port.

Wires transports to pipelines without either knowing the other: samples from
a port's driver go to the room's feed of the sample's kind (one oximeter
cable carries both pleth and SpO2); link state changes go to every feed on
the port at once (a pulled cable is a technical alarm immediately, not after
the stale time); frames the driver rejects are reported to the feed as
rejected payloads, so they are counted, logged and alarmed like bad MQTT
payloads; a chunk whose rate, unit or kind is not its feed's is refused by the
same rule as an MQTT payload (``wrong_rate``...).
"""

from __future__ import annotations

from dataclasses import replace

from roommon.config import FeedConfig, RoomConfig, SerialPortConfig
from roommon.core.clock import Clock
from roommon.core.errors import ProtocolError
from roommon.core.log import get_logger
from roommon.core.model import DataOrigin, SignalKind, WaveformChunk
from roommon.drivers import DRIVERS, Driver, DriverSample
from roommon.room.pipeline import RoomPipeline
from roommon.transports.backoff import Backoff
from roommon.transports.serial import LinkState, SerialFeed
from roommon.wire.payloads import check_waveform_fits

log = get_logger(__name__)


class SerialPortBinding:
    """One port of one room: its driver's samples and states into the pipeline."""

    def __init__(
        self,
        *,
        pipeline: RoomPipeline,
        port: SerialPortConfig,
        feeds: dict[str, FeedConfig],
        clock: Clock,
    ) -> None:
        self.pipeline = pipeline
        self.port = port
        self.feeds_by_kind: dict[SignalKind, str] = {}
        for name, fc in feeds.items():
            self.feeds_by_kind.setdefault(fc.kind, name)
        first = next(iter(feeds))
        cls = DRIVERS[port.protocol]
        kwargs: dict[str, object] = {}
        if port.device_id is not None:
            kwargs["device_id"] = port.device_id
        self.driver: Driver = cls(
            room=pipeline.room, feed=first, origin=DataOrigin.LIVE, clock=clock, **kwargs
        )
        self._reported_bad: dict[str, int] = {}
        self._reported_discarded = 0
        self.feed = SerialFeed(
            port=port.port,
            driver=self.driver,
            sink=self._sample,
            clock=clock,
            baudrate=port.baudrate,
            bytesize=port.bytesize,
            parity=port.parity,
            stopbits=port.stopbits,
            backoff=Backoff(initial_s=port.reconnect_initial_s, cap_s=port.reconnect_max_s),
            on_state=self._state,
        )

    def _sample(self, sample: DriverSample) -> None:
        with self.pipeline.guard("serial_sample"):
            self._ingest(sample)

    def _ingest(self, sample: DriverSample) -> None:
        self._sync_rejects()
        feed = self.feeds_by_kind.get(sample.kind)
        if feed is None:
            err = ProtocolError(
                "unrouted_kind",
                f"{self.port.protocol} sent {sample.kind}; no such feed on the port",
            )
            self.pipeline.reject(next(iter(self.feeds_by_kind.values())), err)
            return
        if isinstance(sample, WaveformChunk):
            # The same rule as MQTT payloads: a 500 Hz frame on a 250 Hz feed would
            # put every check's time base off by two (issue 11, defect 11).
            fc = self.pipeline.config.feeds[feed]
            try:
                check_waveform_fits(
                    sample.kind,
                    sample.unit,
                    sample.fs,
                    kind=fc.kind,
                    unit=fc.effective_unit,
                    fs=fc.fs,
                    source=f"{self.port.protocol} frame",
                )
            except ProtocolError as err:
                self.pipeline.reject(feed, err)
                return
        self.pipeline.ingest(replace(sample, feed=feed) if sample.feed != feed else sample)

    def _sync_rejects(self) -> None:
        """Report frames the driver rejected, and garbage it skipped, since the last call."""
        feed = next(iter(self.feeds_by_kind.values()))
        discarded = self.driver.counters.bytes_discarded
        if discarded > self._reported_discarded:
            detail = f"{discarded - self._reported_discarded} byte(s) of garbage skipped to resync"
            self._reported_discarded = discarded
            self.pipeline.reject(feed, ProtocolError("resync", detail))
        for reason, count in self.driver.counters.frames_bad.items():
            new = count - self._reported_bad.get(reason, 0)
            if new > 0:
                self._reported_bad[reason] = count
                detail = f"{new} frame(s) rejected by the {self.port.protocol} driver"
                self.pipeline.reject(feed, ProtocolError(reason, detail), count=new)

    def _state(self, state: LinkState) -> None:
        with self.pipeline.guard("serial_state"):
            for feed in dict.fromkeys(self.feeds_by_kind.values()):
                self.pipeline.transport_state(feed, up=state.connected, reason=state.reason)

    def tick(self) -> None:
        with self.pipeline.guard("serial_tick"):
            self._sync_rejects()


def serial_bindings(
    *, room: str, config: RoomConfig, pipeline: RoomPipeline, clock: Clock
) -> list[SerialPortBinding]:
    by_port: dict[str, dict[str, FeedConfig]] = {}
    for name, fc in config.feeds.items():
        if fc.serial is not None:
            by_port.setdefault(fc.serial.port, {})[name] = fc
    out = []
    for feeds in by_port.values():
        port = next(iter(feeds.values())).serial
        assert port is not None
        out.append(SerialPortBinding(pipeline=pipeline, port=port, feeds=feeds, clock=clock))
    log.debug("serial_ports", room=room, ports=[b.port.port for b in out])
    return out
