"""A real Mosquitto broker for tests, on a free loopback port, that a test can kill and restart."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from roommon.core.clock import RealClock

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class MosquittoBroker:
    """A private mosquitto on 127.0.0.1:<free port> that tests can kill and restart.

    By default an open test broker (anonymous, no persistence). A test may write
    its own :attr:`conf` before :meth:`start` (listening on :attr:`port` on
    loopback); files it names can live in :attr:`dir`, removed by :meth:`close`.
    When that config logs to a file, set :attr:`log_file`: :meth:`start` then reports
    its tail if mosquitto exits (it says little on stderr then).
    """

    def __init__(self, *, port: int | None = None) -> None:
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            raise RuntimeError("the mosquitto binary is needed (Debian package 'mosquitto')")
        self.binary = binary
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="roommon-mosquitto-"))
        self.conf = self._dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} {LOOPBACK}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\n"
        )
        self.log_file: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def dir(self) -> Path:
        """A private folder for files the broker's config names (certificates, ACL)."""
        return self._dir

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    def start(self, *, timeout: float = 10.0) -> None:
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        clock = RealClock()
        deadline = clock.monotonic() + timeout
        while clock.monotonic() < deadline:  # wait for a real resource: the listening socket
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                if self.log_file is not None and self.log_file.exists():
                    err += self.log_file.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mosquitto exited at start: {err}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a goodbye, as in a crash."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._release()

    def _release(self) -> None:
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._release()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
