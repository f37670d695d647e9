"""The shipped broker setup (config/mosquitto/) against a real Mosquitto: mutual TLS,
passwords, and an ACL in which identity is the broker's word (issue 11, defect 4, item 3).

The broker runs EXACTLY the shipped mosquitto.conf and roommon.acl; the test only
puts its own port, certificates (made here by openssl), password file (made here by
mosquitto_passwd) and temporary folders where the shipped file names /etc and /var
paths. Every role is shown doing what it must, and failing at what it must not:
the four impersonations of defect 4 among them.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from roommon.cli import main
from roommon.cli.timers import TimersSource, watch
from roommon.config import Config, parse_config
from roommon.core.clock import RealClock
from roommon.core.errors import DaemonFailedError
from roommon.runtime.daemon import Daemon
from roommon.runtime.preflight import preflight_problems
from roommon.testing import LOOPBACK, MosquittoBroker, MqttCollector
from roommon.testing.logs import capture_logs
from roommon.testing.pki import CertPair, issue, make_ca, openssl
from roommon.transports.broker import BrokerEndpoint
from roommon.transports.feed_subscriber import FeedConnectionError, FeedSubscriber

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "mosquitto"
SITE = "stmarys"
BASE = f"roommon/v1/{SITE}"
DAEMON = f"roommon-{SITE}-main"
T0 = 1_767_225_600.0


def password(account: str) -> str:
    return f"pw-{account}-secret"


def shipped_accounts() -> list[str]:
    """The accounts the shipped ACL names (its ``user`` lines)."""
    return re.findall(r"^user (\S+)$", (SHIPPED / "roommon.acl").read_text(), re.MULTILINE)


@dataclass(frozen=True, slots=True)
class SecuredBroker:
    broker: MosquittoBroker
    ca: CertPair
    client: CertPair

    def endpoint(
        self, account: str, *, cert: bool = True, secret: str | None = None
    ) -> BrokerEndpoint:
        return BrokerEndpoint(
            host=LOOPBACK,
            port=self.broker.port,
            tls=True,
            ca_file=self.ca.cert,
            cert_file=self.client.cert if cert else None,
            key_file=self.client.key if cert else None,
            username=account,
            password=password(account) if secret is None else secret,
        )

    def watch(self, account: str, filters: list[str], *, client_id: str = "") -> MqttCollector:
        return MqttCollector(
            self.broker.port,
            filters,
            client_id=client_id or account,
            endpoint=self.endpoint(account),
        )

    async def publish(self, account: str, topic: str | list[str], payload: bytes) -> None:
        """Publish as ``account`` on one connection (QoS 1: the broker has routed each
        message, or refused it, on return)."""
        async with self.endpoint(account).client(identifier=account, timeout=5) as c:
            for t in [topic] if isinstance(topic, str) else topic:
                await c.publish(t, payload, qos=1)


def shipped_config(broker: MosquittoBroker, files: dict[str, Path]) -> str:
    """The shipped mosquitto.conf with only its port and its paths replaced."""
    text = (SHIPPED / "mosquitto.conf").read_text()
    replacements = {
        "listener 8883": f"listener {broker.port} {LOOPBACK}",
        "/etc/mosquitto/certs/ca.pem": str(files["ca"]),
        "/etc/mosquitto/certs/server.pem": str(files["server"]),
        "/etc/mosquitto/certs/server.key": str(files["server_key"]),
        "/etc/mosquitto/roommon.passwd": str(files["passwd"]),
        "/etc/mosquitto/roommon.acl": str(files["acl"]),
        "/var/lib/mosquitto/": f"{files['var']}/",
        "/var/log/mosquitto/mosquitto.log": str(files["log"]),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"the shipped mosquitto.conf no longer names {old} once"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def secured() -> Iterator[SecuredBroker]:
    broker = MosquittoBroker()
    d = broker.dir
    # Mosquitto started as root reads its files as user mosquitto: readable by all,
    # its persistence and log folder writable by all (it is a private temporary folder).
    d.chmod(0o755)
    ca = make_ca(d, "ca")
    server = issue(d, ca, "server", ip=LOOPBACK)
    client = issue(d, ca, "client")
    passwd = d / "roommon.passwd"
    passwd.write_text("")
    for account in shipped_accounts():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwd), account, password(account)],
            check=True,
            capture_output=True,
        )
    acl = d / "roommon.acl"
    shutil.copy(SHIPPED / "roommon.acl", acl)
    var = d / "var"
    var.mkdir()
    files = {
        "ca": ca.cert,
        "server": server.cert,
        "server_key": server.key,
        "passwd": passwd,
        "acl": acl,
        "var": var,
        "log": var / "mosquitto.log",
    }
    for f in d.iterdir():
        f.chmod(0o644 if f.is_file() else 0o777)
    broker.conf.write_text(shipped_config(broker, files))
    broker.log_file = var / "mosquitto.log"
    broker.start()
    try:
        yield SecuredBroker(broker=broker, ca=ca, client=client)
    finally:
        broker.close()


def room(rules_below: float = 90) -> dict[str, Any]:
    return {
        "feeds": {"spo2": {"kind": "spo2", "stale_s": 1e6}},
        "checks": {
            "numeric_limits": {
                "rules": [
                    {"kind": "spo2", "field": "spo2", "below": rules_below, "priority": "medium"}
                ]
            }
        },
    }


def site_config(secured: SecuredBroker, state_dir: Path, **tls: Path) -> Config:
    """A site's config: mutual TLS, the daemon's own account (from the environment)."""
    files = {"ca_file": secured.ca.cert, "cert_file": secured.client.cert}
    files |= {"key_file": secured.client.key, **tls}
    return parse_config(
        {
            "site": {"id": SITE},
            "broker": {
                "host": LOOPBACK,
                "port": secured.broker.port,
                "tls": True,
                **{k: str(v) for k, v in files.items()},
                "username_env": "ROOMMON_MQTT_USERNAME",
                "password_env": "ROOMMON_MQTT_PASSWORD",
                "feed_username_env": "ROOMMON_MQTT_FEED_USERNAME",
                "feed_password_env": "ROOMMON_MQTT_FEED_PASSWORD",
            },
            "daemon": {"state_dir": str(state_dir), "display_clients": [f"roommon-display-{SITE}"]},
            "rooms": {"proc1": room(), "proc2": room()},
        }
    )


@pytest.fixture
def daemon_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOMMON_MQTT_USERNAME", DAEMON)
    monkeypatch.setenv("ROOMMON_MQTT_PASSWORD", password(DAEMON))
    monkeypatch.setenv("ROOMMON_MQTT_FEED_USERNAME", f"{DAEMON}-feed")
    monkeypatch.setenv("ROOMMON_MQTT_FEED_PASSWORD", password(f"{DAEMON}-feed"))


@pytest.fixture
async def daemon(
    secured: SecuredBroker, tmp_path: Path, daemon_account: None
) -> AsyncIterator[Daemon]:
    """The daemon with mutual TLS and its own account, from a config like a site's."""
    cfg = site_config(secured, tmp_path)
    assert preflight_problems(cfg) == []
    async with Daemon(config=cfg, clock=RealClock()) as d:
        assert d.link is not None
        async with asyncio.timeout(10):
            await d.link.connected.wait()
        yield d


def reading(seq: int, spo2: float) -> bytes:
    body = {"v": 1, "kind": "spo2", "seq": seq, "t": T0 + seq, "values": {"spo2": spo2}}
    return json.dumps(body).encode()


def probe(account: str) -> str:
    """The one topic every account may write and read: its own ``_view`` probe."""
    return f"{BASE}/_view/{account}"


def commands(d: Daemon) -> int:
    return d.counters["commands_ok"] + d.counters["commands_refused"]


async def raise_alarm(secured: SecuredBroker, wall: MqttCollector, room_id: str) -> str:
    """A low SpO2 from the room's gateway; the alarm's id, as the wall display saw it."""
    await secured.publish(f"gw-{room_id}", f"{BASE}/{room_id}/feed/spo2", reading(1, 84))
    ms = await wall.wait_for(lambda ms: any(m.topic == f"{BASE}/{room_id}/alarm" for m in ms))
    alarm_id: str = next(m for m in ms if m.topic == f"{BASE}/{room_id}/alarm").json()["alarm_id"]
    return alarm_id


def ack(room_id: str, alarm_id: str, cmd_id: str) -> bytes:
    body = {"v": 1, "id": cmd_id, "room": room_id, "action": "acknowledge", "alarm_id": alarm_id}
    return json.dumps(body).encode()


async def reply_to(nurse: MqttCollector, topic: str, cmd_id: str) -> dict[str, Any]:
    ms = await nurse.wait_for(
        lambda ms: any(m.topic == topic and m.json()["id"] == cmd_id for m in ms)
    )
    reply: dict[str, Any] = next(
        m for m in ms if m.topic == topic and m.json()["id"] == cmd_id
    ).json()
    return reply


# --------------------------------------------------------------------------- mutual TLS


async def test_the_daemon_connects_with_mutual_tls_and_its_account_and_publishes_status(
    secured: SecuredBroker, daemon: Daemon
) -> None:
    async with secured.watch("wall-proc1", [f"{BASE}/status/+", f"{BASE}/+/state"]) as wall:
        ms = await wall.wait_for(
            lambda ms: (
                any(m.topic == f"{BASE}/status/main" for m in ms)
                and any(m.topic == f"{BASE}/proc1/state" for m in ms)
            )
        )
    status = next(m for m in ms if m.topic == f"{BASE}/status/main")
    assert status.json()["status"] == "online"
    assert status.retain


async def test_the_broker_refuses_a_client_without_certificate_or_password(
    secured: SecuredBroker,
) -> None:
    async with secured.watch("wall-proc1", []) as wall:  # the right credentials connect
        await wall.sync(probe("wall-proc1"))
    # TLS 1.3 refuses a missing certificate after the handshake: no CONNACK comes.
    with pytest.raises(aiomqtt.MqttError):
        async with secured.endpoint("wall-proc1", cert=False).client(
            identifier="wall-proc1", timeout=2
        ):
            pass
    with pytest.raises(aiomqtt.MqttCodeError, match="Not authorized"):
        async with secured.endpoint("wall-proc1", secret="guess").client(
            identifier="wall-proc1", timeout=5
        ):
            pass
    with pytest.raises(aiomqtt.MqttCodeError, match="Not authorized"):
        async with secured.endpoint("intruder").client(identifier="intruder", timeout=5):
            pass


# --------------------------------------------------------------------------- roles


async def test_a_gateway_writes_only_its_own_rooms_feeds(
    secured: SecuredBroker, daemon: Daemon
) -> None:
    feeds = [f"{BASE}/proc1/feed/spo2", f"{BASE}/proc2/feed/spo2"]
    async with secured.watch("wall-proc1", [*feeds, f"{BASE}/+/alarm"]) as wall:
        await secured.publish("gw-proc1", f"{BASE}/proc2/feed/spo2", reading(1, 80))  # refused
        await secured.publish("gw-proc1", f"{BASE}/proc1/feed/spo2", reading(1, 84))  # its own
        await wall.wait_for(lambda ms: any(m.topic == f"{BASE}/proc1/alarm" for m in ms))
        await secured.publish("gw-proc2", f"{BASE}/proc2/feed/spo2", reading(1, 97))  # its own
        await wall.wait_for(lambda ms: any(m.topic == f"{BASE}/proc2/feed/spo2" for m in ms))
        await wall.sync(probe("wall-proc1"))
    seen = [(m.topic, m.json()["values"]["spo2"]) for m in wall.messages if "/feed/" in m.topic]
    assert seen == [(feeds[0], 84), (feeds[1], 97)]
    assert not [m for m in wall.messages if m.topic == f"{BASE}/proc2/alarm"]
    assert daemon.pipelines["proc2"].engine.alarms() == []  # the forged 80 % never reached it


FORGED_TOPICS = [
    f"{BASE}/proc1/alarm",
    f"{BASE}/proc1/state",
    f"{BASE}/proc1/event",
    f"{BASE}/proc1/timer",
    f"{BASE}/proc1/timer/event",
    f"{BASE}/status/main",
]


async def test_only_the_daemon_publishes_alarms_state_events_timers_and_status(
    secured: SecuredBroker, daemon: Daemon
) -> None:
    impostors = [a for a in shipped_accounts() if a not in (DAEMON, "wall-proc1", "nurse1")]
    async with (
        secured.watch("wall-proc1", FORGED_TOPICS) as wall,
        secured.watch("nurse1", [f"{BASE}/notify/nurse1", f"{BASE}/proc1/reply/nurse1"]) as nurse,
    ):
        # The readers can read them: the daemon's own retained state and status arrive.
        await wall.wait_for(
            lambda ms: {f"{BASE}/proc1/state", f"{BASE}/status/main"} <= {m.topic for m in ms}
        )
        wall.messages.clear()
        topics = [*FORGED_TOPICS, f"{BASE}/notify/nurse1", f"{BASE}/proc1/reply/nurse1"]
        for account in impostors:
            await secured.publish(account, topics, f"forged by {account}".encode())
        # ...and the two readers themselves
        for c, account in ((wall, "wall-proc1"), (nurse, "nurse1")):
            for topic in FORGED_TOPICS:
                await c.publish(topic, f"forged by {account}".encode())
        await wall.sync(probe("wall-proc1"))
        await nurse.sync(probe("nurse1"))
    forged_seen = [m for m in [*wall.messages, *nurse.messages] if m.payload.startswith(b"forged")]
    assert forged_seen == []
    assert daemon.link is not None
    assert daemon.link.connects == 1


async def test_a_wall_display_reads_only(secured: SecuredBroker, daemon: Daemon) -> None:
    async with (
        secured.watch("wall-proc1", [f"{BASE}/proc1/state", f"{BASE}/+/alarm"]) as wall,
        secured.watch(f"roommon-display-{SITE}", [f"{BASE}/proc1/feed/spo2"]) as display,
        secured.watch("nurse1", [f"{BASE}/proc1/reply/nurse1"]) as nurse,
    ):
        await wall.wait_for(lambda ms: any(m.topic == f"{BASE}/proc1/state" for m in ms))
        alarm_id = await raise_alarm(secured, wall, "proc1")
        before = commands(daemon)
        await wall.publish(f"{BASE}/proc1/feed/spo2", reading(2, 70))
        await wall.publish(f"{BASE}/proc1/command/wall-proc1", ack("proc1", alarm_id, "w1"))
        # the nurse's command comes after the wall's: once it is answered, the daemon has
        # seen everything the broker routed to it before
        await nurse.publish(f"{BASE}/proc1/command/nurse1", ack("proc1", alarm_id, "n1"))
        assert (await reply_to(nurse, f"{BASE}/proc1/reply/nurse1", "n1"))["ok"]
        await display.sync(probe(f"roommon-display-{SITE}"))
    assert commands(daemon) == before + 1
    assert [m.json()["values"]["spo2"] for m in display.messages] == [84]  # the gateway's only


async def test_a_nurse_acts_only_as_herself_whatever_client_id_she_asks_for(
    secured: SecuredBroker, daemon: Daemon
) -> None:
    """Defect 4: nurse1 connecting with client id ``charge-nurse`` cannot act as her."""
    async with (
        secured.watch("wall-proc1", [f"{BASE}/+/alarm"]) as wall,
        secured.watch("charge-nurse", [f"{BASE}/+/reply/charge-nurse"]) as charge,
        secured.watch("nurse1", [f"{BASE}/proc1/reply/+"], client_id="charge-nurse") as nurse1,
    ):
        alarm_id = await raise_alarm(secured, wall, "proc1")
        before = commands(daemon)
        await nurse1.publish(f"{BASE}/proc1/command/charge-nurse", ack("proc1", alarm_id, "x1"))
        await nurse1.publish(f"{BASE}/proc1/command/nurse1", ack("proc1", alarm_id, "n1"))
        reply = await reply_to(nurse1, f"{BASE}/proc1/reply/nurse1", "n1")
        ms = await wall.wait_for(
            lambda ms: any(m.json().get("transition") == "acknowledged" for m in ms)
        )
        # the real charge nurse was not disconnected by the connection naming her id
        await charge.sync(probe("charge-nurse"))
        await nurse1.sync(probe("nurse1"))
    assert (reply["ok"], reply["client"]) == (True, "nurse1")
    acked = [m.json() for m in ms if m.json().get("transition") == "acknowledged"]
    assert [e["actor"] for e in acked] == ["nurse1"]
    assert commands(daemon) == before + 1  # the command as charge-nurse never reached it
    assert not [m for m in nurse1.messages if m.topic.endswith("/reply/charge-nurse")]


async def test_a_nurse_commands_only_the_rooms_assigned_to_her(
    secured: SecuredBroker, daemon: Daemon
) -> None:
    async with (
        secured.watch("wall-proc1", [f"{BASE}/+/alarm"]) as wall,
        secured.watch("nurse1", [f"{BASE}/+/reply/nurse1"]) as nurse1,
        secured.watch("nurse2", [f"{BASE}/+/reply/nurse2"]) as nurse2,
        secured.watch("charge-nurse", [f"{BASE}/+/reply/charge-nurse"]) as charge,
    ):
        alarm_id = await raise_alarm(secured, wall, "proc2")
        before = commands(daemon)
        await nurse1.publish(f"{BASE}/proc2/command/nurse1", ack("proc2", alarm_id, "n1"))
        await nurse2.publish(f"{BASE}/proc2/command/nurse2", ack("proc2", alarm_id, "n2"))
        assert (await reply_to(nurse2, f"{BASE}/proc2/reply/nurse2", "n2"))["ok"]
        ms = await wall.wait_for(
            lambda ms: any(m.json().get("transition") == "acknowledged" for m in ms)
        )
        # the charge nurse is assigned both rooms
        for room_id in ("proc1", "proc2"):
            pause = {"v": 1, "id": f"c-{room_id}", "room": room_id, "action": "audio_pause"}
            await charge.publish(
                f"{BASE}/{room_id}/command/charge-nurse", json.dumps(pause).encode()
            )
            topic = f"{BASE}/{room_id}/reply/charge-nurse"
            assert (await reply_to(charge, topic, f"c-{room_id}"))["ok"]
        await nurse1.sync(probe("nurse1"))
    acked = [m.json() for m in ms if m.json().get("transition") == "acknowledged"]
    assert [(e["room"], e["actor"]) for e in acked] == [("proc2", "nurse2")]
    assert commands(daemon) == before + 3  # nurse1's for proc2 never reached the daemon
    assert nurse1.messages == []


async def test_no_client_takes_over_the_daemons_session(
    secured: SecuredBroker, daemon: Daemon
) -> None:
    """Defect 4: connecting with the daemon's client id neither disconnects it nor
    makes the broker publish its last will."""
    assert daemon.link is not None
    status = f"{BASE}/status/main"
    async with (
        secured.watch("wall-proc1", [status]) as wall,
        secured.watch("nurse1", [f"{BASE}/proc1/reply/nurse1"]) as nurse,
    ):
        await wall.wait_for(lambda ms: any(m.topic == status for m in ms))
        for account in ("nurse2", "gw-proc1", f"roommon-display-{SITE}"):
            async with secured.endpoint(account).client(identifier=DAEMON, timeout=5) as c:
                await c.publish(probe(account), b"", qos=1)
        await wall.sync(probe("wall-proc1"))
        # the daemon is still there and answering
        pause = {"v": 1, "id": "n1", "room": "proc1", "action": "audio_pause"}
        await nurse.publish(f"{BASE}/proc1/command/nurse1", json.dumps(pause).encode())
        assert (await reply_to(nurse, f"{BASE}/proc1/reply/nurse1", "n1"))["ok"]
    # only the daemon's own "online" (its heartbeat may repeat it), never its last will
    assert {m.json()["status"] for m in wall.on(status)} == {"online"}
    assert (daemon.link.connects, daemon.link.disconnects) == (1, 0)


# --------------------------------------------------------------------------- TLS refusals


@pytest.fixture(scope="module")
def foreign(secured: SecuredBroker) -> CertPair:
    """A client certificate from a CA the broker does not know; that CA's certificate is
    ``foreign-ca.pem`` beside it."""
    d = secured.broker.dir
    return issue(d, make_ca(d, "foreign-ca"), "foreign")


async def refusal(endpoint: BrokerEndpoint, identifier: str) -> str:
    with pytest.raises(aiomqtt.MqttError) as caught:
        async with endpoint.client(identifier=identifier, timeout=2):
            pass
    return await endpoint.explain_failure([caught.value], identifier=identifier)


async def test_a_broker_certificate_not_from_the_ca_file_is_named_with_the_file(
    secured: SecuredBroker, foreign: CertPair
) -> None:
    other_ca = secured.broker.dir / "foreign-ca.pem"
    endpoint = replace(secured.endpoint("nurse1"), ca_file=other_ca)
    why = await refusal(endpoint, "nurse1")
    assert why == (
        f"TLS: the certificate of broker {LOOPBACK}:{secured.broker.port} does not verify "
        f"against ca_file {other_ca} (self-signed certificate in certificate chain)"
    )


async def test_a_missing_or_refused_client_certificate_is_named(
    secured: SecuredBroker, foreign: CertPair
) -> None:
    where = f"broker {LOOPBACK}:{secured.broker.port}"
    why = await refusal(secured.endpoint("nurse1", cert=False), "nurse1")
    assert why.startswith(
        f"TLS: {where} requires a client certificate and none is configured "
        "(broker.cert_file, broker.key_file) ("
    )
    endpoint = replace(secured.endpoint("nurse1"), cert_file=foreign.cert, key_file=foreign.key)
    why = await refusal(endpoint, "nurse1")
    assert why.startswith(f"TLS: {where} refused the client certificate {foreign.cert} (")
    assert "unknown ca" in why


async def feed_refusal(endpoint: BrokerEndpoint, identifier: str) -> str:
    """Why the daemon's feed connection (its own subscriber, not aiomqtt) was refused."""
    with pytest.raises(FeedConnectionError) as caught:
        async with FeedSubscriber(
            endpoint, client_id=identifier, on_messages=lambda _m: None, connect_timeout_s=5
        ):
            pass
    return endpoint.connect_failure([caught.value], identifier=None)


async def test_the_feed_connection_names_a_refused_certificate_or_password_as_the_control_one(
    secured: SecuredBroker, foreign: CertPair
) -> None:
    where = f"broker {LOOPBACK}:{secured.broker.port}"
    other_ca = secured.broker.dir / "foreign-ca.pem"
    why = await feed_refusal(replace(secured.endpoint("nurse1"), ca_file=other_ca), "nurse1")
    assert why == (
        f"TLS: the certificate of {where} does not verify against ca_file {other_ca} "
        "(self-signed certificate in certificate chain)"
    )
    why = await feed_refusal(secured.endpoint("nurse1", cert=False), "nurse1")
    assert why.startswith(
        f"TLS: {where} requires a client certificate and none is configured "
        "(broker.cert_file, broker.key_file) ("
    )
    endpoint = replace(secured.endpoint("nurse1"), cert_file=foreign.cert, key_file=foreign.key)
    why = await feed_refusal(endpoint, "nurse1")
    assert why.startswith(f"TLS: {where} refused the client certificate {foreign.cert} (")
    why = await feed_refusal(secured.endpoint("nurse1", secret="wrong"), "nurse1")
    assert why == (
        f"mqtts://{LOOPBACK}:{secured.broker.port} refused the connection: not authorized (code 5)"
    )
    async with FeedSubscriber(  # and with the right ones it is up
        secured.endpoint("nurse1"), client_id="nurse1", on_messages=lambda _m: None
    ):
        pass


async def test_the_daemon_logs_a_refused_handshake_in_one_line_naming_the_ca_file(
    secured: SecuredBroker, foreign: CertPair, tmp_path: Path, daemon_account: None
) -> None:
    other_ca = secured.broker.dir / "foreign-ca.pem"
    cfg = site_config(secured, tmp_path, ca_file=other_ca)
    assert preflight_problems(cfg) == []  # a good file: only the broker can say it is wrong
    with capture_logs() as logs:
        async with Daemon(config=cfg, clock=RealClock()) as d:
            async with asyncio.timeout(10):
                while not logs.named("mqtt_disconnected"):  # noqa: ASYNC110 (no event to await)
                    await asyncio.sleep(0.02)
            assert d.link is not None
            assert not d.link.connected.is_set()
    assert logs.named("mqtt_disconnected")[0]["error"] == (
        f"TLS: the certificate of broker {LOOPBACK}:{secured.broker.port} does not verify "
        f"against ca_file {other_ca} (self-signed certificate in certificate chain)"
    )


async def test_a_tls_file_gone_at_connect_ends_the_daemon_with_one_line_naming_it(
    secured: SecuredBroker, tmp_path: Path, daemon_account: None
) -> None:
    key = tmp_path / "client.key"
    shutil.copy(secured.client.key, key)
    cfg = site_config(secured, tmp_path, key_file=key)
    assert preflight_problems(cfg) == []
    key.unlink()  # after the preflight: a certificate rotation gone wrong
    with pytest.raises(DaemonFailedError) as caught:
        async with Daemon(config=cfg, clock=RealClock()), asyncio.timeout(10):
            await asyncio.Event().wait()  # the link's failure ends the block
    assert str(caught.value) == (
        f"BrokerTlsError: broker.key_file: client key {key} does not exist"
    )


def test_run_refuses_a_client_key_that_is_not_the_certificates_or_is_encrypted(
    secured: SecuredBroker,
    foreign: CertPair,
    tmp_path: Path,
    daemon_account: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """At ``run`` as at ``check-config``: one line naming the file, exit 2, no traceback."""
    encrypted = tmp_path / "encrypted.key"
    openssl("ec", "-in", secured.client.key, "-out", encrypted, "-aes256", "-passout", "pass:x")
    cert = secured.client.cert
    for key, words in (
        (foreign.key, f"client certificate {cert} and key {foreign.key} do not load together ("),
        (encrypted, f"client key {encrypted} is encrypted; roommon needs an unencrypted key"),
    ):
        broker = f"""[broker]
host = "{LOOPBACK}"
port = {secured.broker.port}
tls = true
ca_file = "{secured.ca.cert}"
cert_file = "{secured.client.cert}"
key_file = "{key}"
"""
        config = tmp_path / "site.toml"
        config.write_text(
            f'[site]\nid = "{SITE}"\n{broker}[rooms.proc1.feeds.spo2]\nkind = "spo2"\n'
        )
        for command in (["run", "--config", str(config)], ["check-config", str(config)]):
            assert main(command) == 2
            lines = capsys.readouterr().err.splitlines()
            assert len(lines) == 1, lines
            assert lines[0].startswith(f"{config}: broker.key_file: {words}")


async def test_roommon_timers_once_gets_its_probe_back_under_the_shipped_acl(
    secured: SecuredBroker, daemon: Daemon
) -> None:
    out = io.StringIO()
    source = TimersSource(broker=secured.endpoint("nurse1"), site=SITE)
    with capture_logs() as logs:
        assert await watch(source, clock=RealClock(), out=out, once=True, wait_s=10) == 0
    assert logs.named("timers_probe_not_returned") == []
    assert out.getvalue()


async def test_a_refusal_that_paho_saw_only_as_a_timeout_is_still_named(
    secured: SecuredBroker, foreign: CertPair
) -> None:
    """TLS 1.3: the broker's alert refusing the client certificate can be overtaken by a
    reset, so paho logs no TLS error and the connect just times out (once in a loaded CI
    run). The endpoint then reads the broker's verdict on a second connection."""
    where = f"broker {LOOPBACK}:{secured.broker.port}"
    timed_out = [aiomqtt.MqttError("Operation timed out")]
    no_cert = secured.endpoint("nurse1", cert=False)
    assert no_cert.connect_failure(timed_out, identifier=None) == "Operation timed out"
    why = await no_cert.explain_failure(timed_out, identifier=None)
    assert why.startswith(f"TLS: {where} requires a client certificate and none is configured")
    wrong = replace(secured.endpoint("nurse1"), cert_file=foreign.cert, key_file=foreign.key)
    why = await wrong.explain_failure(timed_out, identifier=None)
    assert why.startswith(f"TLS: {where} refused the client certificate {foreign.cert} (")
    # the right certificate: the broker has no verdict to give, the timeout stays as it was
    assert await secured.endpoint("nurse1").explain_failure(timed_out, identifier=None) == (
        "Operation timed out"
    )
