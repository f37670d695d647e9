"""The broker: its settings, its address on a command line, and the one MQTT client factory.

Every MQTT connection roommon makes (the daemon's link, ``record``,
``simulate``, ``replay --broker``, ``timers``, the test helpers) is built by
:meth:`BrokerEndpoint.client`, from a :class:`BrokerConfig` and optionally a
``--broker`` URL parsed by :func:`parse_broker_url`. So TLS, credentials,
protocol version, keepalive and reconnect pacing are decided once.

TLS errors are put in words here too, naming the file concerned: the files'
own problems (:func:`tls_file_problems`, also the preflight's check), a TLS
context that cannot be built at connect (:class:`BrokerTlsError`), and a
handshake the broker or roommon refused (:meth:`BrokerEndpoint.connect_failure`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from roommon.core.errors import FeedError, UsageError
from roommon.transports.backoff import Backoff

if TYPE_CHECKING:
    import aiomqtt

DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}


class BrokerTlsError(FeedError):
    """The TLS context for the broker cannot be built (a file named in ``[broker]``
    vanished, changed or does not load): the message names the field and the file."""


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
    feed_username_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the MQTT user name of the "
        "daemon's feed-only connection; unset: the same account as the control connection. "
        "Needed with a broker that makes the account the client id (Mosquitto's "
        "use_username_as_clientid): one connection per account (docs/broker-security.md).",
    )
    feed_password_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding that account's password.",
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
    feed_protocol: Literal["5", "3.1.1"] = Field(
        default="3.1.1",
        description="MQTT protocol version of the daemon's feed-only connection (its own "
        "client id and session beside the control connection, so a feed backlog never delays "
        "an alarm's acknowledgement, read by roommon's own subscriber). 3.1.1 costs a little "
        "less per message (no properties) and every broker that speaks 5 speaks 3.1.1; with "
        'protocol = "3.1.1" the feed connection speaks 3.1.1 too.',
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
        "on every reconnect (a session left by a previous run is dropped at start). 0: a clean "
        "session on every connection (what arrives while the "
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

    def feed_credentials(self) -> tuple[str | None, str | None] | None:
        """The feed connection's own account, or None: the control connection's."""
        if self.feed_username_env is None and self.feed_password_env is None:
            return None
        user = os.environ.get(self.feed_username_env) if self.feed_username_env else None
        password = os.environ.get(self.feed_password_env) if self.feed_password_env else None
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


async def connect(
    protocol: asyncio.Protocol, host: str, port: int, tls: ssl.SSLContext | None
) -> asyncio.Transport:
    """Connect ``protocol`` to ``host:port``, then start TLS over it if ``tls``: in two
    steps so that a connection cancelled or refused during the handshake is closed here
    at once (asyncio's one-step TLS connect can leave its socket to the garbage
    collector). Returns the transport to use (the TLS one with ``tls``)."""
    loop = asyncio.get_running_loop()
    raw, _ = await loop.create_connection(lambda: protocol, host, port)
    if tls is None:
        return raw
    try:
        secured = await loop.start_tls(raw, protocol, tls, server_hostname=host)
    except BaseException:
        raw.abort()
        raise
    if secured is None:  # (the connection closed meanwhile)
        raw.abort()
        raise ConnectionResetError("the connection closed during the TLS handshake")
    return secured


class _VerdictProtocol(asyncio.Protocol):
    """Receives nothing; :attr:`lost` is the error the connection ended with, or None."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


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
    #: The daemon's feed-only connection's version (see BrokerConfig.feed_protocol).
    feed_protocol: Literal["5", "3.1.1"] = "3.1.1"
    #: Its own account (user, password), or None: the same as this endpoint's.
    feed_account: tuple[str | None, str | None] | None = None
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
            feed_protocol=config.feed_protocol,
            feed_account=config.feed_credentials(),
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

    def for_feeds(self) -> BrokerEndpoint:
        """This endpoint with the feed connection's account, if it has one of its own."""
        if self.feed_account is None:
            return self
        return replace(self, username=self.feed_account[0], password=self.feed_account[1])

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
        """The TLS context, or :class:`BrokerTlsError` naming the file that does not load."""
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file is not None:
                key = str(self.key_file) if self.key_file else None
                ctx.load_cert_chain(
                    certfile=str(self.cert_file), keyfile=key, password=_no_password
                )
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems = tls_file_problems(
                ca_file=self.ca_file, cert_file=self.cert_file, key_file=self.key_file
            ) or [("broker", f"the TLS context does not load ({_reason(exc)})")]
            raise BrokerTlsError("; ".join(f"{f}: {m}" for f, m in problems)) from exc
        ctx.sslsocket_class = _ClosingSSLSocket
        return ctx

    def connect_failure(self, errors: Sequence[BaseException], *, identifier: str | None) -> str:
        """Why a connection failed, in one line; a TLS refusal in words naming the file.

        With TLS 1.3 a broker refuses a client certificate after the handshake, so
        the client only sees its CONNACK never come ("Operation timed out"): the
        TLS alert behind it is what paho logged for the client ``identifier``
        (None: a connection not made by paho, whose errors say it themselves).
        """
        text = "; ".join(str(e) or type(e).__name__ for e in errors)
        if not self.tls:
            return text
        seen = _TLS_SEEN.get(identifier) if identifier is not None else None
        for message in (text, seen.last if seen is not None else None):
            if message and "[SSL" in message:
                return self._tls_words(message)
        return text

    async def explain_failure(
        self, errors: Sequence[BaseException], *, identifier: str | None
    ) -> str:
        """:meth:`connect_failure`, and where that found no TLS verdict on a TLS
        connection, the broker's verdict read by a second connection that sends nothing.

        In TLS 1.3 a refused client certificate is an alert sent after the handshake,
        and a reset can overtake it (paho then logs only "Connection reset by peer" and
        the connect times out): the refusal would go unnamed about once in a loaded run.
        """
        text = self.connect_failure(errors, identifier=identifier)
        if not self.tls or text.startswith("TLS"):
            return text
        verdict = await self.tls_verdict()
        return self._tls_words(verdict) if verdict is not None else text

    async def tls_verdict(
        self, timeout_s: float = 1.0, *, ctx: ssl.SSLContext | None = None
    ) -> str | None:
        """The TLS error a connection that sends nothing gets from the broker (its alert
        refusing the client certificate, or a failed verification), or None (silence).

        ``ctx``: the TLS context to connect with (default: this endpoint's); the
        connection is made by :func:`connect`.
        """
        if ctx is None:
            try:
                ctx = self.tls_context()
            except BrokerTlsError:
                return None
            if ctx is None:
                return None
        proto = _VerdictProtocol(asyncio.get_running_loop())
        transport: asyncio.Transport | None = None
        try:
            async with asyncio.timeout(timeout_s):
                transport = await connect(proto, self.host, self.port, ctx)
                lost = await proto.lost
        except ssl.SSLError as exc:
            return str(exc)
        except (OSError, TimeoutError):  # refused, unreachable, closed, or silence
            return None
        finally:
            if transport is not None:
                transport.abort()
        return str(lost) if lost is not None and "[SSL" in str(lost) else None

    def _tls_words(self, message: str) -> str:
        detail = message.split("] ", 1)[-1].split(" (_ssl.c", 1)[0]
        where = f"broker {self.host}:{self.port}"
        if "CERTIFICATE_VERIFY_FAILED" in message:
            trust = f"ca_file {self.ca_file}" if self.ca_file else "the system CAs (no ca_file)"
            detail = detail.removeprefix("certificate verify failed: ")
            return f"TLS: the certificate of {where} does not verify against {trust} ({detail})"
        if "CERTIFICATE_REQUIRED" in message and self.cert_file is None:
            return (
                f"TLS: {where} requires a client certificate and none is configured "
                f"(broker.cert_file, broker.key_file) ({detail})"
            )
        if "ALERT" in message and self.cert_file is not None:
            return f"TLS: {where} refused the client certificate {self.cert_file} ({detail})"
        if "WRONG_VERSION_NUMBER" in message:
            return f"TLS: {where} does not answer in TLS (a plain MQTT port?) ({detail})"
        return f"TLS with {where} failed ({detail})"

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
            "logger": _paho_logger(identifier) if self.tls else None,
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


# --------------------------------------------------------------------------- TLS files

_LABELS = {"ca_file": "CA file", "cert_file": "client certificate", "key_file": "client key"}


def _file_problem(path: Path, field: str) -> str | None:
    what = _LABELS[field]
    if not path.exists():
        return f"{what} {path} does not exist"
    if not path.is_file():
        return f"{what} {path} is not a file"
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        return f"{what} {path} cannot be read ({exc.strerror or exc})"
    marker = "PRIVATE KEY-----" if field == "key_file" else "-----BEGIN CERTIFICATE-----"
    if marker not in text:
        kind = "private key" if field == "key_file" else "certificate"
        return f"{what} {path} is not a PEM {kind} (no {marker.strip('-')} block)"
    return None


class _EncryptedKeyError(ValueError):
    """OpenSSL asked for the key's passphrase: roommon has none to give."""


def _no_password() -> str:
    raise _EncryptedKeyError("the key is encrypted")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc)


def tls_file_problems(
    *, ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> list[tuple[str, str]]:
    """The TLS files: present, readable, PEM that OpenSSL accepts, the key the
    certificate's; one ``(broker.FIELD, message naming the file)`` per problem."""
    problems: list[tuple[str, str]] = []
    bad = set()
    for field, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        problem = None if path is None else _file_problem(path, field)
        if problem:
            problems.append((f"broker.{field}", problem))
            bad.add(field)
    if ca_file is not None and "ca_file" not in bad:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(("broker.ca_file", f"CA file {ca_file} does not load ({_reason(exc)})"))
    if cert_file is not None and not bad & {"cert_file", "key_file"}:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        key = str(key_file) if key_file else None
        try:
            ctx.load_cert_chain(certfile=str(cert_file), keyfile=key, password=_no_password)
        except _EncryptedKeyError:
            field, path = ("key_file", key_file) if key_file else ("cert_file", cert_file)
            why = "is encrypted; roommon needs an unencrypted key (openssl pkey -in KEY -out NEW)"
            problems.append((f"broker.{field}", f"client key {path} {why}"))
        except (ssl.SSLError, OSError, ValueError) as exc:
            field = "broker.key_file" if key_file else "broker.cert_file"
            pair = f"{cert_file} and key {key_file}" if key_file else f"{cert_file} and its key"
            problems.append(
                (field, f"client certificate {pair} do not load together ({_reason(exc)})")
            )
    return problems


class _ClosingSSLSocket(ssl.SSLSocket):
    """A TLS socket closed when its handshake fails: paho leaves it open (only the
    garbage collector frees it, with a ResourceWarning), once per refused attempt."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class _TlsAlerts(logging.Handler):
    """Keeps the last TLS error paho logged for one client."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "[SSL" in message:
            self.last = message


#: Client identifier -> the TLS alerts of its newest client (one entry per identifier).
_TLS_SEEN: dict[str, _TlsAlerts] = {}


def _paho_logger(identifier: str) -> logging.Logger:
    """paho's logger for one TLS client: what it logs goes where it always went (the
    ``mqtt`` logger), and its TLS errors are kept for :meth:`BrokerEndpoint.connect_failure`."""
    seen = _TLS_SEEN[identifier] = _TlsAlerts()
    logger = logging.Logger(f"mqtt.{identifier}")  # not registered: freed with its client
    logger.parent = logging.getLogger("mqtt")
    logger.addHandler(seen)
    return logger


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
