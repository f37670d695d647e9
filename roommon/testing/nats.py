"""A real 3-node NATS cluster with JetStream and its MQTT listener, for tests.

A clustered broker that runs here (``nats-server``, Debian package
``nats-server``): every node listens on free loopback ports only (client,
cluster routes, MQTT, monitoring), has its own store dir, and routes to the
two others. NATS's MQTT needs JetStream (sessions, retained messages and
QoS 1 messages live in replicated streams) and a ``server_name``; it speaks
MQTT 3.1.1 only, QoS 0 and 1. A test can SIGKILL one node and the two others
keep the cluster (and its streams, replicated 3 times) going.

Never the machine's own NATS (4222): every port is a free one.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from roommon.core.clock import RealClock
from roommon.testing.broker import LOOPBACK, free_port

NATS_SERVER = "/usr/sbin/nats-server"


@dataclass(slots=True)
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    http_port: int
    store: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The node's MQTT listener, as ``--broker`` takes it."""
        return f"mqtt://{LOOPBACK}:{self.mqtt_port}"


def _mqtt_connack(port: int, client_id: str, timeout: float) -> int | None:
    """Send a bare MQTT 3.1.1 CONNECT; the CONNACK return code, or None if none came."""
    ident = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c"
    body = variable + struct.pack("!H", len(ident)) + ident
    packet = b"\x10" + bytes([len(body)]) + body
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
            s.sendall(packet)
            reply = s.recv(4)
    except OSError:
        return None
    if len(reply) == 4 and reply[0] == 0x20:
        return reply[3]
    return None


class NatsCluster:
    """Three ``nats-server`` nodes in one cluster, JetStream and MQTT on each."""

    def __init__(self, *, nodes: int = 3, binary: str | None = None) -> None:
        found = binary or shutil.which("nats-server")
        if found is None and Path(NATS_SERVER).exists():
            found = NATS_SERVER
        if found is None:
            raise RuntimeError("the nats-server binary is needed (Debian package 'nats-server')")
        self.binary = found
        self._dir = Path(tempfile.mkdtemp(prefix="roommon-nats-"))
        self.nodes = [
            NatsNode(
                name=f"n{i + 1}",
                client_port=free_port(),
                cluster_port=free_port(),
                mqtt_port=free_port(),
                http_port=free_port(),
                store=self._dir / f"n{i + 1}",
                conf=self._dir / f"n{i + 1}.conf",
            )
            for i in range(nodes)
        ]
        for node in self.nodes:
            routes = ", ".join(
                f"nats-route://{LOOPBACK}:{other.cluster_port}"
                for other in self.nodes
                if other is not node
            )
            node.conf.write_text(
                f'server_name: "{node.name}"\n'
                f"listen: {LOOPBACK}:{node.client_port}\n"
                f"http: {LOOPBACK}:{node.http_port}\n"
                f'jetstream {{ store_dir: "{node.store}", max_memory_store: 64MB, '
                "max_file_store: 256MB }\n"
                f"cluster {{ name: roommon-test, listen: {LOOPBACK}:{node.cluster_port}, "
                f"routes: [{routes}] }}\n"
                # every MQTT stream (sessions, QoS 1 messages, retained) on all three nodes
                f"mqtt {{ listen: {LOOPBACK}:{node.mqtt_port}, stream_replicas: 3 }}\n"
            )

    def start(self, *, timeout: float = 60.0) -> None:
        """Start every node; return when each one's JetStream is healthy and MQTT answers."""
        for node in self.nodes:
            self._spawn(node)
        clock = RealClock()
        deadline = clock.monotonic() + timeout
        for node in self.nodes:
            self._wait_ready(node, deadline, clock)

    def _spawn(self, node: NatsNode) -> None:
        node.proc = subprocess.Popen(
            [self.binary, "-c", str(node.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _wait_ready(self, node: NatsNode, deadline: float, clock: RealClock) -> None:
        """Wait for real resources: a healthy JetStream, then an accepted MQTT CONNECT."""
        assert node.proc is not None
        while clock.monotonic() < deadline:
            if node.proc.poll() is not None:
                err = node.proc.stderr.read().decode() if node.proc.stderr else ""
                raise RuntimeError(f"nats-server {node.name} exited at start: {err}")
            if self._healthy(node) and _mqtt_connack(node.mqtt_port, f"probe-{node.name}", 5) == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"nats-server {node.name} not ready (JetStream + MQTT) in time")

    @staticmethod
    def _healthy(node: NatsNode) -> bool:
        url = f"http://{LOOPBACK}:{node.http_port}/healthz"
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2) as r:
            return bool(json.loads(r.read()).get("status") == "ok")
        return False

    def kill(self, node: NatsNode) -> None:
        """SIGKILL one node: it vanishes mid-stream, as in a crash."""
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(timeout=10)
        self._release(node)

    @staticmethod
    def _release(node: NatsNode) -> None:
        if node.proc is not None and node.proc.stderr is not None:
            node.proc.stderr.close()
        node.proc = None

    def close(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(timeout=10)
            self._release(node)
        shutil.rmtree(self._dir, ignore_errors=True)
