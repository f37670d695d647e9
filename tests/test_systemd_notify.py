"""The systemd notify protocol (issue 14 item 2) over a real NOTIFY_SOCKET datagram socket
bound here: READY=1 and STATUS= once running, WATCHDOG=1 at half of WATCHDOG_USEC only
while the rooms are processed, STOPPING=1 on the way out. In-process on the virtual clock,
and end to end with `roommon run` under a real Mosquitto (abstract socket name)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from roommon.config import parse_config
from roommon.core.clock import VirtualClock
from roommon.runtime.daemon import Daemon
from roommon.runtime.systemd import SystemdNotifier
from roommon.testing import MosquittoBroker
from roommon.testing.broker import free_port
from roommon.transports.sd_notify import watchdog_seconds


class NotifySocket:
    """The receiving end systemd would hold: a bound AF_UNIX datagram socket."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + name[1:].encode() if name.startswith("@") else name)

    def drain(self) -> list[list[str]]:
        """Every message received so far (each a list of KEY=VALUE fields)."""
        self.sock.setblocking(False)
        out: list[list[str]] = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode().split("\n"))
            except BlockingIOError:
                return out

    def until(self, field: str, within: float) -> list[list[str]]:
        """Messages up to the first with a field starting ``field`` (``within`` is a net)."""
        self.sock.setblocking(True)
        self.sock.settimeout(within)
        out: list[list[str]] = []
        while not any(f.startswith(field) for f in (out[-1] if out else [])):
            out.append(self.sock.recv(4096).decode().split("\n"))
        return out


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(str(tmp_path / "notify.sock"))
    yield s
    s.sock.close()


def fields(messages: list[list[str]]) -> list[str]:
    return [f for m in messages for f in m]


def config(state_dir: Path) -> dict[str, object]:
    return {
        "site": {"id": "s"},
        "daemon": {"state_dir": str(state_dir), "tick_s": 1.0},
        "rooms": {"r1": {"feeds": {"spo2": {"kind": "spo2"}}}},
    }


async def test_ready_status_watchdog_only_while_ticking_and_stopping(
    notify: NotifySocket, tmp_path: Path
) -> None:
    clock = VirtualClock()
    env = {"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "2000000"}  # ping every 1 s
    cfg = parse_config(config(tmp_path))
    async with Daemon(config=cfg, clock=clock, use_broker=False) as d:
        await clock.settle()  # the ticker's first pass
        async with SystemdNotifier(daemon=d, clock=clock, env=env) as n:
            assert n.watchdog_s == 2.0
            first = notify.drain()
            assert len(first) == 1
            assert "READY=1" in first[0]
            assert "STATUS=1 room monitored; no broker; store durable" in first[0]
            assert "WATCHDOG=1" not in first[0]
            await clock.advance(3.0)
            assert fields(notify.drain()).count("WATCHDOG=1") == 3  # at 1, 2 and 3 s

            ticker = next(t for t in asyncio.all_tasks() if t.get_name() == "roommon-ticker")
            ticker.cancel()  # the tick loop stops: the rooms are no longer processed
            await clock.advance(5.0)  # within STALL_TICKS periods of the last pass: still fed
            notify.drain()
            await clock.advance(5.0)
            late = fields(notify.drain())
            assert "WATCHDOG=1" not in late  # withheld: systemd restarts the service
            status = [f for f in late if f.startswith("STATUS=")]
            assert status
            assert status[0].startswith("STATUS=degraded: processing: no pass over the rooms")
        assert notify.drain() == [["STOPPING=1", "STATUS=stopping"]]


async def test_no_watchdog_pings_when_systemd_asks_for_none_or_for_another_process(
    notify: NotifySocket, tmp_path: Path
) -> None:
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "bogus"}) is None
    clock = VirtualClock()
    cfg = parse_config(config(tmp_path))
    env = {"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}
    async with Daemon(config=cfg, clock=clock, use_broker=False) as d:
        async with SystemdNotifier(daemon=d, clock=clock, env=env) as n:
            assert n.watchdog_s is None
            await clock.advance(20.0)
        got = fields(notify.drain())
        assert "READY=1" in got
        assert "WATCHDOG=1" not in got
        assert got[-2:] == ["STOPPING=1", "STATUS=stopping"]
        async with SystemdNotifier(daemon=d, clock=clock, env={}) as n:  # not under systemd
            assert not n.active
            await clock.advance(10.0)
        assert notify.drain() == []


def healthz(port: int) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def test_roommon_run_speaks_the_protocol_on_an_abstract_socket(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    name = f"@roommon-test-{uuid.uuid4().hex}"
    sock = NotifySocket(name)
    port = free_port()
    cfg = tmp_path / "room.toml"
    cfg.write_text(
        f"""
[site]
id = "s"
[broker]
port = {broker.port}
[daemon]
state_dir = "state"
[metrics]
enabled = true
port = {port}
[rooms.r1.feeds.spo2]
kind = "spo2"
"""
    )
    env = {**os.environ, "NOTIFY_SOCKET": name, "WATCHDOG_USEC": "600000"}  # ping every 0.3 s
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "roommon", "run", "--config", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        ready = sock.until("READY=1", within=30)
        head = ready[-1]
        assert any(f.startswith("STATUS=") for f in head)
        assert f"MAINPID={proc.pid}" in head
        got = sock.until("WATCHDOG=1", within=10)
        got += sock.until("WATCHDOG=1", within=10)
        assert fields(got).count("WATCHDOG=1") >= 2
        for _ in range(100):  # healthy once the broker link is up; paced by the pings
            status, body = healthz(port)
            if status == 200:
                assert b'"healthy": true' in body
                break
            assert status == 503
            sock.until("WATCHDOG=1", within=10)
        else:
            pytest.fail("/healthz never became healthy")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert b"roommon_broker_connected 1.0" in r.read()
        proc.send_signal(signal.SIGTERM)
        stopping = sock.until("STOPPING=1", within=30)
        assert "STATUS=stopping" in stopping[-1]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.sock.close()
        assert proc.stderr is not None
        proc.stderr.close()


UNIT = Path(__file__).resolve().parents[1] / "config" / "systemd" / "roommon.service"


def unit_settings(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current[key] = value
    return sections


def test_the_unit_file_is_a_notify_service_with_a_watchdog_and_a_state_directory(
    tmp_path: Path,
) -> None:
    text = UNIT.read_text()
    service = unit_settings(text)["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert float(service["WatchdogSec"]) > 0
    assert service["StateDirectory"] == "roommon"  # /var/lib/roommon, the config's state_dir
    assert service["ExecStart"].endswith("roommon run --config /etc/roommon/roommon.toml")
    assert service["RestartPreventExitStatus"] == "2"  # a bad config is not restarted in a loop
    # systemd's own parser: every directive known and well formed (it prints what is not)
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze (Debian: systemd) is needed to check the unit"
    roommon = Path(sys.executable).with_name("roommon")
    local = tmp_path / "roommon.service"
    local.write_text(text.replace("/opt/roommon/venv/bin/roommon", str(roommon)))
    done = subprocess.run(
        [analyze, "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
