"""The broker: its settings, its address on a command line, and the one MQTT client factory.

Every MQTT connection roommon makes (the daemon's link, ``record``,
``simulate``, ``replay --broker``, ``timers``, the test helpers) is built by
:meth:`BrokerEndpoint.client`, from a :class:`BrokerConfig` and optionally a
``--broker`` URL parsed by :func:`parse_broker_url`. So TLS, credentials,
protocol version, keepalive and reconnect pacing are decided once.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from roommon.core.errors import UsageError
from roommon.transports.backoff import Backoff

if TYPE_CHECKING:
    import aiomqtt

DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}


class BrokerConfig(BaseModel):
    """``[broker]``: the MQTT broker roommon talks to."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    host: str = Field(default="127.0.0.1", description="MQTT broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="MQTT broker TCP port.")
    tls: bool = Field(default=False, description="Use TLS to the broker.")
    ca_file: Path | None = Field(
        default=None, description="CA bundle for TLS; system CAs if unset."
    )
    cert_file: Path | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS."
    )
    key_file: Path | None = Field(
        default=None,
        description="Unencrypted private key (PEM) of cert_file, if not in cert_file itself.",
    )
    username_env: str | None = Field(
        default=None, description="Name of the environment variable holding the MQTT user name."
    )
    password_env: str | None = Field(
        default=None, description="Name of the environment variable holding the MQTT password."
    )
    keepalive_s: int = Field(default=15, ge=2, le=600, description="MQTT keep-alive interval.")
    reconnect_initial_s: float = Field(
        default=0.5, gt=0, description="First reconnect delay; doubles up to reconnect_max_s."
    )
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Cap on the reconnect delay.")
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description='MQTT protocol version of every connection: "5" or "3.1.1" (for brokers '
        "that speak only 3.1.1, such as NATS).",
    )
    failover: list[str] = Field(
        default_factory=list,
        description="Further nodes of the same broker cluster, HOST[:PORT] each (port defaults "
        "to port; same TLS and credentials): when a connection is lost or refused the daemon "
        "tries the next address at once, and after a whole round the reconnect delay.",
    )
    session_expiry_s: int = Field(
        default=3600,
        ge=0,
        le=2**32 - 1,
        description="How long the broker keeps the daemon's session (its subscriptions and the "
        "QoS 1 commands and feed data queued for it) after a disconnect; the daemon resumes it "
        "on every connection. 0: a clean session on every connection (what arrives while the "
        "daemon reconnects is lost). With MQTT 3.1.1 any value above 0 means clean_session = "
        "false and the broker's own expiry applies.",
    )

    @model_validator(mode="after")
    def _failover_addresses(self) -> BrokerConfig:
        for i, text in enumerate(self.failover):
            try:
                parse_host_port(text, default_port=self.port)
            except ValueError as exc:
                raise ValueError(f"failover[{i}]: {exc}") from None
        return self

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> BrokerConfig:
        for field in ("ca_file", "cert_file", "key_file"):
            if getattr(self, field) is not None and not self.tls:
                raise ValueError(f"{field}: only used with tls = true (it would be ignored)")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: needs cert_file (the client certificate it belongs to)")
        return self

    def credentials(self) -> tuple[str | None, str | None]:
        """Read user name and password from the named environment variables."""
        user = os.environ.get(self.username_env) if self.username_env else None
        password = os.environ.get(self.password_env) if self.password_env else None
        return user, password


def parse_host_port(text: str, *, default_port: int) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError saying why not."""
    try:
        url = urlsplit(f"//{text}")
        port = url.port
    except ValueError as exc:
        raise ValueError(f"expected HOST[:PORT], got {text!r} ({exc})") from None
    if not url.hostname or url.path or url.query or url.fragment or url.username:
        raise ValueError(f"expected HOST[:PORT], got {text!r}")
    return url.hostname, port or default_port


def parse_broker_url(text: str, *, option: str = "--broker") -> tuple[str, int, bool]:
    """``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]`` -> (host, port, tls).

    Anything else is a :class:`UsageError` naming ``option`` and the text:
    never a silent fallback to a default broker.
    """
    expected = f"{option}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {text!r}"
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError as exc:
        raise UsageError(f"{expected} ({exc})") from None
    if url.scheme not in DEFAULT_PORTS or not url.hostname:
        raise UsageError(expected)
    if url.path not in ("", "/") or url.query or url.fragment or url.username:
        raise UsageError(f"{expected} (no path, query or user part)")
    return url.hostname, port or DEFAULT_PORTS[url.scheme], url.scheme == "mqtts"


def parse_broker_urls(text: str, *, option: str = "--broker") -> list[tuple[str, int, bool]]:
    """Comma-separated broker URLs (the first, then the nodes to fail over to).

    All must use the same scheme: one TLS setting applies to every node.
    """
    parsed = [parse_broker_url(part.strip(), option=option) for part in text.split(",")]
    if len({tls for _h, _p, tls in parsed}) > 1:
        raise UsageError(f"{option}: mix of mqtt:// and mqtts:// in {text!r} (one TLS setting)")
    return parsed


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerEndpoint:
    """Where and how to connect: a broker config with any ``--broker`` override applied."""

    host: str
    port: int
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 15
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    protocol: Literal["5", "3.1.1"] = "5"
    #: Further nodes of the cluster, tried in turn after this one (see :meth:`addresses`).
    failover: tuple[tuple[str, int], ...] = ()
    #: The daemon's persistent session (see BrokerConfig.session_expiry_s).
    session_expiry_s: int = 3600

    @classmethod
    def from_config(cls, config: BrokerConfig, *, url: str | None = None) -> BrokerEndpoint:
        """The config's broker, or ``url`` (credentials still from the config's variables)."""
        user, password = config.credentials()
        endpoint = cls(
            host=config.host,
            port=config.port,
            tls=config.tls,
            ca_file=config.ca_file,
            cert_file=config.cert_file,
            key_file=config.key_file,
            username=user,
            password=password,
            keepalive_s=config.keepalive_s,
            reconnect_initial_s=config.reconnect_initial_s,
            reconnect_max_s=config.reconnect_max_s,
            protocol=config.protocol,
            failover=tuple(parse_host_port(a, default_port=config.port) for a in config.failover),
            session_expiry_s=config.session_expiry_s,
        )
        return endpoint.with_url(url) if url is not None else endpoint

    def with_url(self, url: str, *, option: str = "--broker") -> BrokerEndpoint:
        """``url`` (one broker, or several comma-separated: the first and its failover nodes)."""
        (host, port, tls), *rest = parse_broker_urls(url, option=option)
        return replace(
            self, host=host, port=port, tls=tls, failover=tuple((h, p) for h, p, _ in rest)
        )

    def addresses(self) -> list[BrokerEndpoint]:
        """This node and each failover node, in order, each as a one-address endpoint."""
        return [self] + [replace(self, host=h, port=p, failover=()) for h, p in self.failover]

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def backoff(self) -> Backoff:
        initial = min(self.reconnect_initial_s, self.reconnect_max_s)
        return Backoff(initial_s=initial, cap_s=self.reconnect_max_s)

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            key = str(self.key_file) if self.key_file else None
            ctx.load_cert_chain(certfile=str(self.cert_file), keyfile=key)
        return ctx

    def client(
        self,
        *,
        identifier: str,
        will: aiomqtt.Will | None = None,
        clean_start: bool = True,
        timeout: float = 10.0,
        max_queued_outgoing: int | None = None,
        session_expiry_s: int | None = None,
        mqtt311: bool = False,
    ) -> aiomqtt.Client:
        """A new (not yet connected) client for this endpoint, in its protocol version.

        ``session_expiry_s``: keep the broker-side session (subscriptions and
        queued QoS 1 messages) this long after a disconnect; with
        ``clean_start=False`` a reconnect resumes it. ``mqtt311``: an MQTT 3.1.1
        client whatever the endpoint's protocol, for a subscriber that needs no
        v5 feature (paho builds a v5 properties object for every message
        received). In 3.1.1 a session is ``clean_session = clean_start``; its
        expiry is the broker's.
        """
        import aiomqtt  # the MQTT client loads when a connection is made, not at start-up
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        common: dict[str, Any] = {
            "identifier": identifier,
            "username": self.username,
            "password": self.password,
            "will": will,
            "keepalive": self.keepalive_s,
            "tls_context": self.tls_context(),
            "timeout": timeout,
            "max_queued_outgoing_messages": max_queued_outgoing,
        }
        if mqtt311 or self.protocol == "3.1.1":
            return aiomqtt.Client(
                self.host,
                self.port,
                protocol=aiomqtt.ProtocolVersion.V311,
                clean_session=clean_start,
                **common,
            )
        props = None
        if session_expiry_s is not None:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = session_expiry_s
        return aiomqtt.Client(
            self.host,
            self.port,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=clean_start,
            properties=props,
            **common,
        )


#: MQTT 5 CONNACK reason codes that mean "try again later" rather than "no":
#: server unavailable, server busy, quota exceeded, connection rate exceeded.
RETRYABLE_CONNACK: Final = frozenset({3, 136, 137, 151, 159})


def connack_code(exc: aiomqtt.MqttError) -> int | None:
    """The CONNACK reason code behind a connection error, if it carries one."""
    import aiomqtt

    if not isinstance(exc, aiomqtt.MqttCodeError):
        return None
    rc = exc.rc
    if isinstance(rc, int):
        return rc
    value = getattr(rc, "value", None)
    return value if isinstance(value, int) else None
