"""HL7 delivery through receiver trouble: a peer that goes down and comes back, a peer that
answers AE. Nothing is lost, order is kept, rejections are counted and alarmed.

The receiver is python-hl7's MLLP server (roommon.testing.MllpPeer); the
daemon (no broker here: the rooms are fed directly, the broker path is in
test_hl7_daemon.py) and its HL7 output run on a virtual clock, so the retry
backoff ends when the test says.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from roommon.config import parse_config
from roommon.core.clock import VirtualClock
from roommon.core.events import InjectionEnded
from roommon.core.model import NumericReading, SignalKind
from roommon.runtime.daemon import Daemon
from roommon.runtime.hl7_output import Hl7Output
from roommon.testing import MllpPeer
from roommon.wire.commands import parse_command
from roommon.wire.timer import parse_nurse_command
from tests.hl7_support import validate_v26

TIMEOUT = 10.0  # safety net only


def config(peer_port: int, state: Path, **receiver: Any) -> dict[str, Any]:
    return {
        "site": {"id": "s"},
        "daemon": {"state_dir": str(state)},
        "rooms": {
            "r1": {
                "feeds": {"spo2": {"kind": "spo2"}},
                "checks": {
                    "numeric_limits": {"rules": [{"kind": "spo2", "field": "spo2", "below": 90}]}
                },
            }
        },
        "hl7": {
            "period_s": 3600,
            "receivers": {
                "eng": {
                    "host": "127.0.0.1",
                    "port": peer_port,
                    "retry_initial_s": 0.5,
                    "retry_max_s": 2.0,
                    "ack_timeout_s": 5.0,
                    **receiver,
                }
            },
        },
    }


@asynccontextmanager
async def running(
    cfg: dict[str, Any], clock: VirtualClock
) -> AsyncIterator[tuple[Daemon, Hl7Output]]:
    c = parse_config(cfg)
    async with (
        Hl7Output(config=c, clock=clock) as out,
        Daemon(config=c, clock=clock, use_broker=False, extra_outputs=[out]) as daemon,
    ):
        out.attach(daemon.pipelines)
        yield daemon, out


class Room:
    """Feeds r1 alternating low and normal SpO2: each reading raises or clears an alarm."""

    def __init__(self, daemon: Daemon, clock: VirtualClock) -> None:
        self.daemon, self.clock, self.seq = daemon, clock, 0

    def alarms(self, n: int) -> None:
        for _ in range(n):
            self.seq += 1
            self.daemon.pipelines["r1"].ingest(
                NumericReading(
                    room="r1",
                    feed="spo2",
                    kind=SignalKind.SPO2,
                    t=self.clock.now(),
                    values={"spo2": 80.0 if self.seq % 2 else 97.0},
                    seq=self.seq,
                )
            )


async def until(clock: VirtualClock, done: Callable[[], bool], *, step: float = 0.25) -> None:
    """Move virtual time in small steps until ``done()``; real waiting is only on the peer."""
    async with asyncio.timeout(TIMEOUT):
        while not done():
            await clock.advance(step)
            await asyncio.sleep(0)


def number(control_id: str) -> int:
    return int(control_id.rsplit("-", 1)[1])


def active_codes(daemon: Daemon, clock: VirtualClock) -> set[str]:
    return {
        a.code for a in daemon.pipelines["r1"].engine.summaries(clock.now()) if a.state != "cleared"
    }


async def test_receiver_outage_loses_nothing_and_keeps_order(tmp_path: Path) -> None:
    clock = VirtualClock()
    peer = MllpPeer()
    await peer.start()
    try:
        async with running(config(peer.port, tmp_path / "state"), clock) as (daemon, out):
            room = Room(daemon, clock)
            room.alarms(10)
            await until(clock, lambda: out.queue.pending_count() == 0)
            before = len(peer.messages)
            assert before >= 10

            await peer.stop()  # the interface engine goes down
            room.alarms(20)  # the room goes on
            await until(clock, lambda: out.receivers["eng"].counters["failed_connect_failed"] >= 3)
            assert out.queue.pending_count() >= 20
            assert not out.receivers["eng"].connected
            # five minutes of it is a technical alarm in the room
            await until(clock, lambda: "hl7.undelivered" in active_codes(daemon, clock), step=5)

            await peer.start()  # back: the backlog goes out, oldest first
            await until(clock, lambda: out.queue.pending_count() == 0)
            await until(clock, lambda: "hl7.undelivered" not in active_codes(daemon, clock))
            await until(clock, lambda: out.queue.pending_count() == 0)
            queued = out.counters["queued_pcd01"] + out.counters["queued_pcd04"]
    finally:
        await peer.stop()

    ids = [number(c) for c in peer.control_ids()]
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == list(range(1, queued + 1))  # every message, in order
    # a message in flight when the peer died may come twice (same MSH-10: the
    # receiver dedupes); nothing else repeats
    assert len(ids) - len(first_seen) <= 1
    for text in peer.messages:
        validate_v26(text, location_only=True)
    assert out.receivers["eng"].counters["accepted"] == queued


async def test_rejections_are_kept_counted_and_alarmed(tmp_path: Path) -> None:
    clock = VirtualClock()

    def answer(text: str) -> str:
        control = text.split("\r", 1)[0].split("|")[9]
        n = number(control)
        return "AR" if n % 6 == 0 else "AE" if n % 4 == 0 else "AA"

    async with MllpPeer(answer=answer, status_first=True, stray_first=True) as peer:
        cfg = config(peer.port, tmp_path / "state", reject_alarm_after=3, messages=["pcd04"])
        async with running(cfg, clock) as (daemon, out):
            room = Room(daemon, clock)
            room.alarms(12)
            await until(clock, lambda: out.queue.pending_count() == 0)
            rejected = out.queue.rejected_rows("eng")
            codes = active_codes(daemon, clock)
            st = out.receivers["eng"]
            queued = out.counters["queued_pcd04"]

    ids = [number(c) for c in peer.control_ids()]
    assert ids == list(range(1, queued + 1))  # each once, in order, AE or not
    assert [(number(c), code) for c, code, _ in rejected] == [
        (i, "AR" if i % 6 == 0 else "AE") for i in ids if i % 4 == 0 or i % 6 == 0
    ]
    assert st.counters["rejected_AE"] + st.counters["rejected_AR"] == len(rejected) >= 3
    assert st.counters["rejected_AR"] >= 1
    # an ACK naming another message is not taken for this one's
    assert st.counters["stray_acks"] == queued
    assert st.counters["accepted"] == queued - len(rejected)
    assert "hl7.rejected" in codes  # three AE within the hour: a technical alarm
    # the alarm manager's PCD-05 status report before each ACK was read and acknowledged
    assert st.counters["alert_status"] == queued
    assert len(peer.received_acks) == queued
    assert all("|ACK^R41^ACK|" in a and "\rMSA|AA|S" in a for a in peer.received_acks)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made by the openssl binary (the README names it)."""
    cert, key = tmp / "peer.pem", tmp / "peer.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_mllp_over_tls_checks_the_receivers_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")
    clock = VirtualClock()
    async with MllpPeer(tls=server) as peer:
        good = config(peer.port, tmp_path / "a", tls=True, ca_file=str(cert), messages=["pcd04"])
        async with running(good, clock) as (daemon, out):
            Room(daemon, clock).alarms(2)
            await until(clock, lambda: out.queue.pending_count() == 0)
            assert out.receivers["eng"].counters["accepted"] == 2
        assert len(peer.messages) == 2
        # a receiver whose certificate the configured CA did not sign is never sent anything
        bad = config(peer.port, tmp_path / "b", tls=True, ca_file=str(other), messages=["pcd04"])
        async with running(bad, clock) as (daemon, out):
            Room(daemon, clock).alarms(1)
            await until(clock, lambda: out.receivers["eng"].counters["failed_connect_failed"] >= 2)
            assert out.queue.pending_count() == 1
            assert "CERTIFICATE_VERIFY_FAILED" in out.receivers["eng"].last_error
        assert len(peer.messages) == 2


async def test_missing_ack_times_out_on_the_clock_and_resends_the_same_message(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    seen: set[str] = set()

    def answer(text: str) -> str | None:
        control = text.split("\r", 1)[0].split("|")[9]
        first = control not in seen
        seen.add(control)
        return None if first and number(control) == 2 else "AA"  # swallow #2 once

    async with MllpPeer(answer=answer) as peer:
        cfg = config(peer.port, tmp_path / "state", messages=["pcd04"], ack_timeout_s=5.0)
        async with running(cfg, clock) as (daemon, out):
            Room(daemon, clock).alarms(3)
            await peer.wait_for(lambda ms: len(ms) == 2)
            await clock.advance(4.9)  # the ACK is late, not yet missing
            assert out.receivers["eng"].counters["failed_timeout"] == 0
            await until(clock, lambda: out.queue.pending_count() == 0)
            st = out.receivers["eng"]
    assert [number(c) for c in peer.control_ids()] == [1, 2, 2, 3]  # same MSH-10 again
    assert st.counters["failed_timeout"] == 1
    assert st.counters["resent"] == 1
    assert st.counters["accepted"] == 3


async def test_queue_and_patient_survive_a_daemon_restart(tmp_path: Path) -> None:
    clock = VirtualClock()
    peer = MllpPeer()  # not listening yet: the receiver is down
    state = tmp_path / "state"
    cfg = config(peer.port, state, messages=["pcd04"])
    async with running(cfg, clock) as (daemon, out):
        daemon.pipelines["r1"].command(
            parse_command(
                b'{"v": 1, "id": "p", "room": "r1", "action": "patient_set", '
                b'"patient_id": "MRN-9", "patient_authority": "H"}',
                room="r1",
            ),
            client="desk",
        )
        Room(daemon, clock).alarms(4)
        await until(clock, lambda: out.receivers["eng"].counters["failed_connect_failed"] >= 1)
        waiting = out.queue.pending_count()
    assert waiting >= 4
    async with peer, running(cfg, clock) as (daemon, out):
        assert out.patients["r1"].id == "MRN-9"
        await until(clock, lambda: out.queue.pending_count() == 0)
        Room(daemon, clock).alarms(1)  # raised again after the restart: a new alarm
        await until(clock, lambda: out.queue.pending_count() == 0)
    ids = [number(c) for c in peer.control_ids()]
    assert ids == sorted(ids)
    assert len(ids) == waiting + 1
    assert all("|MRN-9^^^H^MR|" in m for m in peer.messages)


async def test_alarm_events_the_queue_missed_are_caught_up_in_order(tmp_path: Path) -> None:
    """A crash between the alarm log's commit and the HL7 queue's loses nothing: here a daemon
    runs without its HL7 output for a while (the worst case of that gap)."""
    clock = VirtualClock()
    state = tmp_path / "state"
    async with MllpPeer() as peer:
        cfg = config(peer.port, state, messages=["pcd04"])
        async with running(cfg, clock) as (daemon, out):
            Room(daemon, clock).alarms(2)
            await until(clock, lambda: out.queue.pending_count() == 0)
        async with Daemon(config=parse_config(cfg), clock=clock, use_broker=False) as daemon:
            Room(daemon, clock).alarms(3)  # logged, never queued for HL7
        async with running(cfg, clock) as (daemon, out):
            assert out.counters["caught_up"] >= 3
            Room(daemon, clock).alarms(2)
            await until(clock, lambda: out.queue.pending_count() == 0)
            logged = [e.event_id for e in daemon.store.events(room="r1")]
    sent = [m.split("\r")[3].split("|")[2].split("^")[0] for m in peer.messages]  # OBR-2
    assert sent == logged  # every logged event, once, in log order


async def test_cement_and_recovery_reach_the_peer_as_pcd01(tmp_path: Path) -> None:
    """Injection end (peak pressure), recovery start, checks done with their vitals, end."""
    clock = VirtualClock()
    async with MllpPeer() as peer:
        cfg = config(peer.port, tmp_path / "state", messages=["pcd01"])
        cfg["rooms"]["r1"]["recovery"] = {
            "default": {
                "min_bed_rest_s": 60,
                "target_s": 120,
                "checks": [{"every_s": 60, "until_s": 120}],
                "confirm_s": None,
            }
        }
        async with running(cfg, clock) as (daemon, out):
            room = daemon.pipelines["r1"]
            Room(daemon, clock).alarms(2)  # SpO2 80 then 97: the room has a value
            now = clock.now()
            room.event(
                InjectionEnded(
                    t=now,
                    feed="",
                    injection=1,
                    started_t=now - 40,
                    last_injecting_t=now - 2,
                    peak_kpa=2150.5,
                )
            )
            for check in (1, 2):
                room.recovery_command(
                    parse_nurse_command(
                        f'{{"v": 1, "id": "c{check}", "room": "r1", "action": "check_done", '
                        f'"check_no": {check}, "vitals": true}}'.encode(),
                        room="r1",
                    ),
                    client="nurse1",
                )
            await until(clock, lambda: out.queue.pending_count() == 0, step=2.0)
            await clock.run_for(130)  # the target passes with every check done: it ends
            await until(clock, lambda: out.queue.pending_count() == 0)
            spo2 = room.measurements["spo2"].value
    reports = [m for m in peer.messages if "|ORU^R01^ORU_R01|" in m]
    for text in reports:
        validate_v26(text, location_only=True)

    def value(text: str, code: str) -> str:
        return next(o.split("|")[5] for o in text.split("\r") if f"|{code}^" in o)

    events = [value(t, "RMN_RECOVERY_EVENT") for t in reports if "RMN_RECOVERY_EVENT" in t]
    assert events == ["started", "check_done", "check_done", "ended"]
    checks = [t for t in reports if "|check_done|" in t]
    assert [value(t, "RMN_RECOVERY_CHECK") for t in checks] == ["1", "2"]
    assert all(float(value(t, "150456")) == spo2 for t in checks)  # the vitals recorded
    peak = [t for t in reports if "RMN_CEMENT_INJ_PRESS_PEAK" in t]
    assert [value(t, "RMN_CEMENT_INJ_PRESS_PEAK") for t in peak] == ["2150.5"]
    assert value(peak[0], "RMN_CEMENT_INJ_DURATION") == "38"


async def test_a_failing_delivery_task_is_a_technical_alarm_and_restarts(tmp_path: Path) -> None:
    """The CA file is missing when the output starts (deleted, a bad deployment): the
    delivery task fails, hl7.failed is raised in the room, and the task is started again
    until it works; the first delivered message clears it."""
    clock = VirtualClock()
    (tmp_path / "pki").mkdir()
    cert, key = self_signed(tmp_path / "pki")
    ca = tmp_path / "ca.pem"  # not there yet
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    async with MllpPeer(tls=server) as peer:
        cfg = config(peer.port, tmp_path / "state", tls=True, ca_file=str(ca), messages=["pcd04"])
        async with running(cfg, clock) as (daemon, out):
            Room(daemon, clock).alarms(1)
            await until(clock, lambda: "hl7.failed" in active_codes(daemon, clock))
            assert out.counters["task_failed"] >= 1
            assert "deliver-eng" in out.failures
            ca.write_bytes(cert.read_bytes())  # the operator puts the file back
            await until(clock, lambda: out.queue.pending_count() == 0, step=5.0)
            await until(clock, lambda: "hl7.failed" not in active_codes(daemon, clock))
            assert not out.failures
    assert peer.messages  # the raised alarm (and the hl7.failed ones) went out after all


async def test_a_queue_that_cannot_be_written_holds_its_messages_in_order_as_an_alarm(
    tmp_path: Path,
) -> None:
    """The HL7 queue's store refusing writes (a full disk) must not end the daemon: the
    messages wait in memory, in order, hl7.failed says so, and they all go out, in order,
    once the store takes writes again."""
    clock = VirtualClock()
    peer = MllpPeer()
    await peer.start()
    try:
        async with running(config(peer.port, tmp_path / "state"), clock) as (daemon, out):
            room = Room(daemon, clock)
            room.alarms(2)
            await until(clock, lambda: out.queue.pending_count() == 0)
            out.queue._db.execute("PRAGMA query_only = ON")  # real SQLite refusing writes
            room.alarms(6)  # the room goes on
            await until(clock, lambda: "hl7.failed" in active_codes(daemon, clock))
            assert out.counters["queue_write_failed"] >= 1
            assert "queue" in out.failures
            out.queue._db.execute("PRAGMA query_only = OFF")  # space again
            await until(clock, lambda: not out.failures and out.queue.pending_count() == 0)
            await until(clock, lambda: "hl7.failed" not in active_codes(daemon, clock))
            await until(clock, lambda: out.queue.pending_count() == 0)
            queued = out.counters["queued_pcd01"] + out.counters["queued_pcd04"]
    finally:
        await peer.stop()
    ids = list(dict.fromkeys(number(c) for c in peer.control_ids()))
    assert ids == list(range(1, queued + 1))  # every message, in order
    assert queued >= 8  # the 8 alarm transitions, and the hl7.failed ones
