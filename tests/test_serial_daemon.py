"""A serial bedside device through the daemon, over a real pseudo-terminal, to alarms."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from roommon.config import parse_config
from roommon.core.clock import RealClock
from roommon.runtime.daemon import Daemon
from roommon.testing import CaptureOutput, PtyDevice
from simulators.serial_devices import encode_masimo_line, encode_rm1_waveform

T0 = 1_767_225_600.0


@pytest.fixture
def device(tmp_path: Path) -> Iterator[PtyDevice]:
    d = PtyDevice(tmp_path / "usb-Masimo_Radical-7-if00")
    yield d
    d.close()


def line(i: int, spo2: float) -> bytes:
    return encode_masimo_line(t=T0 + i, spo2=spo2, pulse_rate=72, perfusion_index=2.5)


def transitions(out: CaptureOutput, code: str) -> list[str]:
    return [e.transition for e in out.events if e.code == code]


async def test_masimo_over_pty_to_alarms_with_garbage_unplug_and_replug(
    device: PtyDevice, tmp_path: Path
) -> None:
    serial = {
        "port": str(device.link),
        "protocol": "masimo_ascii",
        "baudrate": 9600,
        "reconnect_initial_s": 0.02,
        "reconnect_max_s": 0.1,
    }
    cfg = parse_config(
        {
            "site": {"id": "s"},
            "daemon": {"state_dir": str(tmp_path / "state")},
            "rooms": {
                "r1": {
                    "feeds": {
                        "spo2": {
                            "kind": "spo2",
                            "transport": "serial",
                            "serial": serial,
                            "stale_s": 5,
                        }
                    },
                    "checks": {
                        "numeric_limits": {
                            "rules": [{"kind": "spo2", "field": "spo2", "below": 90}]
                        }
                    },
                }
            },
        }
    )
    out = CaptureOutput()
    async with Daemon(
        config=cfg, clock=RealClock(), use_broker=False, extra_outputs=[out]
    ) as daemon:
        pipeline = daemon.pipelines["r1"]
        (binding,) = daemon.serial
        await out.wait_for(lambda o: binding.feed.connected)
        for i in range(3):
            device.write(line(i, 97))
        device.write(b"\x00\xffgarbage that is no Masimo line\r\n")  # a cable glitch
        device.write(line(3, 85))  # desaturation, right after the garbage
        await out.wait_for(lambda o: "raised" in transitions(o, "limit.spo2_low"))
        alarm = next(e for e in out.events if e.code == "limit.spo2_low")
        assert alarm.value == 85
        await out.wait_for(lambda o: pipeline.feeds["spo2"].received == 4)
        assert sum(pipeline.feeds["spo2"].rejected.values()) >= 1
        assert "raised" in transitions(out, "feed.bad_payload")

        device.unplug()  # cable pulled mid-stream
        await out.wait_for(lambda o: "raised" in transitions(o, "feed.disconnected"))
        gone = next(e for e in out.events if e.code == "feed.disconnected")
        assert (gone.kind, gone.feed) == ("technical", "spo2")
        received = pipeline.feeds["spo2"].received

        device.replug()  # same by-id name, new device node; no daemon restart
        await out.wait_for(lambda o: "cleared" in transitions(o, "feed.disconnected"))
        device.write(line(10, 97))
        await out.wait_for(lambda o: "cleared" in transitions(o, "limit.spo2_low"))
        assert pipeline.feeds["spo2"].received == received + 1
        status = daemon.status_payload("online").decode()
        assert '"reconnects":1' in status
        assert '"frames_good":5' in status


def rm1_ecg(seq: int, fs: float, n: int = 25) -> bytes:
    samples = 0.5 * np.sin(np.linspace(0, 2 * np.pi, n))
    return encode_rm1_waveform(
        device_id="EKG1", seq=seq, kind="ecg", unit="mV", fs=fs, samples=samples
    )


async def test_serial_frames_at_a_rate_other_than_the_feeds_are_rejected_wrong_rate(
    device: PtyDevice, tmp_path: Path
) -> None:
    """Issue 11, defect 11: a 500 Hz frame on a 250 Hz feed was accepted over serial."""
    serial = {"port": str(device.link), "protocol": "roommon_line", "baudrate": 115200}
    cfg = parse_config(
        {
            "site": {"id": "s"},
            "daemon": {"state_dir": str(tmp_path / "state")},
            "rooms": {
                "r1": {
                    "feeds": {
                        "ekg": {
                            "kind": "ecg",
                            "fs": 250,
                            "transport": "serial",
                            "serial": serial,
                            "stale_s": 60,
                        }
                    },
                }
            },
        }
    )
    out = CaptureOutput()
    async with Daemon(
        config=cfg, clock=RealClock(), use_broker=False, extra_outputs=[out]
    ) as daemon:
        feed = daemon.pipelines["r1"].feeds["ekg"]
        (binding,) = daemon.serial
        await out.wait_for(lambda o: binding.feed.connected)
        device.write(rm1_ecg(0, 250))
        device.write(rm1_ecg(1, 500))  # twice the configured rate
        device.write(rm1_ecg(2, 251))  # within the 1 % crystal tolerance
        device.write(rm1_ecg(3, 125))
        device.write(rm1_ecg(4, 250))
        await out.wait_for(lambda o: feed.received + feed.rejected["wrong_rate"] == 5)
        assert feed.received == 3
        assert dict(feed.rejected) == {"wrong_rate": 2}
        assert "raised" in transitions(out, "feed.bad_payload")
        bad = next(e for e in out.events if e.code == "feed.bad_payload")
        assert "wrong_rate=" in bad.message
