"""check-config and run refuse what would otherwise be silently ignored (issue 11 defect 12,
item 2): alarm codes and profile patterns matching nothing, TLS files that are missing or
not PEM, credential variables that are not set. Certificates are made by the openssl
binary; the mutual-TLS client is shown against a real Mosquitto requiring certificates."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from roommon.cli import main
from roommon.config import load_config, parse_config
from roommon.runtime.preflight import preflight_problems, room_condition_codes
from roommon.testing import MosquittoBroker
from roommon.testing.broker import free_port
from roommon.testing.pki import issue, make_ca
from roommon.transports.broker import BrokerEndpoint

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "example-room.toml"

ROOM = """
[site]
id = "s"
[rooms.proc1.feeds.spo2]
kind = "spo2"
[rooms.proc1.feeds.cement]
kind = "cement_pressure"
fs = 50
required = false
[rooms.proc1.checks.spo2]
[rooms.proc1.checks.cement]
[rooms.proc1.checks.numeric_limits]
rules = [{ kind = "spo2", field = "spo2", below = 88, name = "spo2_floor" }]
"""


def check_config(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str]]:
    f = tmp_path / "room.toml"
    f.write_text(text)
    code = main(["check-config", str(f)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines() if code else captured.out.strip().splitlines()
    return code, [line.removeprefix(f"{f}: ") for line in lines]


def test_known_codes_come_from_the_checks_feeds_room_and_recovery(tmp_path: Path) -> None:
    f = tmp_path / "room.toml"
    f.write_text(ROOM)
    cfg = load_config(f)
    codes = room_condition_codes(cfg.rooms["proc1"], hl7=False)
    assert {"spo2.desat", "cement.over_pressure", "limit.spo2_floor"} <= codes
    assert {"feed.silent", "room.failed", "check.failed", "recovery.check_overdue"} <= codes
    assert "ecg.tachy" not in codes
    assert "hl7.failed" not in codes
    assert "hl7.failed" in room_condition_codes(cfg.rooms["proc1"], hl7=True)


def test_valid_overrides_and_patterns_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ROOM + (
        '[rooms.proc1.alarms."spo2.desat"]\ndelay_s = 20\n'
        '[rooms.proc1.alarms."limit.spo2_floor"]\ndelay_s = 5\n'
        '[rooms.proc1.alarms."feed.*"]\npriority = "low"\n'
        '[rooms.proc1.profiles.recovery]\n"cement.*" = { enabled = false }\n'
        '"recovery.check_overdue" = { priority = "high" }\n'
    )
    code, lines = check_config(tmp_path, text, capsys)
    assert code == 0, lines


@pytest.mark.parametrize(
    ("table", "field", "message"),
    [
        (
            '[rooms.proc1.alarms."spo2.desaturation"]\ndelay_s = 30\n',
            "rooms.proc1.alarms.spo2.desaturation",
            "no condition 'spo2.desaturation' among this room's checks, feeds and recovery "
            "(did you mean 'spo2.desat'?)",
        ),
        (
            '[rooms.proc1.profiles.recovery]\n"cemnt.*" = { enabled = false }\n',
            "rooms.proc1.profiles.recovery.cemnt.*",
            "no condition starting with 'cemnt.' among this room's checks, feeds and recovery "
            "(did you mean 'cement.*'?)",
        ),
        (
            '[rooms.proc1.profiles.procedure]\n"ecg.tachy" = { delay_s = 5 }\n',
            "rooms.proc1.profiles.procedure.ecg.tachy",
            "(a condition of the ecg check, which this room does not run)",
        ),
        (
            # the room's rule is named spo2_floor
            '[rooms.proc1.alarms."limit.spo2_low"]\ndelay_s = 5\n',
            "rooms.proc1.alarms.limit.spo2_low",
            "(did you mean 'limit.spo2_floor'?)",
        ),
    ],
)
def test_an_override_matching_no_condition_is_one_line_with_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, field: str, message: str
) -> None:
    code, lines = check_config(tmp_path, ROOM + table, capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{field}: ")
    assert message in lines[0]


def test_run_refuses_it_the_same_way_without_a_traceback(tmp_path: Path) -> None:
    f = tmp_path / "room.toml"
    f.write_text(ROOM + '[rooms.proc1.alarms."spo2.desaturation"]\ndelay_s = 30\n')
    proc = subprocess.run(
        [sys.executable, "-m", "roommon", "run", "--config", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"{f}: rooms.proc1.alarms.spo2.desaturation: no condition 'spo2.desaturation' among "
        "this room's checks, feeds and recovery (did you mean 'spo2.desat'?)"
    ]


def test_the_example_config_needs_its_credential_variables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROOMMON_MQTT_USERNAME", raising=False)
    monkeypatch.setenv("ROOMMON_MQTT_PASSWORD", "")
    assert main(["check-config", str(EXAMPLE)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{EXAMPLE}: broker.username_env: environment variable ROOMMON_MQTT_USERNAME is not set",
        f"{EXAMPLE}: broker.password_env: environment variable ROOMMON_MQTT_PASSWORD is not set",
    ]
    monkeypatch.setenv("ROOMMON_MQTT_USERNAME", "roommon")
    monkeypatch.setenv("ROOMMON_MQTT_PASSWORD", "s3cret")
    assert main(["check-config", str(EXAMPLE)]) == 0


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other")
    server = issue(d, ca, "server", ip="127.0.0.1")
    client = issue(d, ca, "client")
    garbled = d / "garbled.pem"
    garbled.write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n"
    )
    text = d / "notes.txt"
    text.write_text("this is no certificate\n")
    return {
        "ca": ca.cert,
        "server": server.cert,
        "server_key": server.key,
        "client": client.cert,
        "client_key": client.key,
        "other_key": other_ca.key,
        "garbled": garbled,
        "text": text,
    }


def broker_toml(**files: Path | str) -> str:
    lines = ["[broker]", "tls = true", *(f'{k} = "{v}"' for k, v in files.items())]
    return "\n".join(lines) + "\n" + ROOM


@pytest.mark.parametrize(
    ("files", "field", "message"),
    [
        (
            {"ca_file": "/nonexistent/ca.pem"},
            "broker.ca_file",
            "CA file /nonexistent/ca.pem does not exist",
        ),
        ({"ca_file": "text"}, "broker.ca_file", "is not a PEM certificate (no BEGIN CERTIFICATE"),
        ({"ca_file": "garbled"}, "broker.ca_file", "does not load"),
        (
            {"ca_file": "ca", "cert_file": "client", "key_file": "/nonexistent/k.pem"},
            "broker.key_file",
            "client key /nonexistent/k.pem does not exist",
        ),
        (
            {"ca_file": "ca", "cert_file": "client", "key_file": "text"},
            "broker.key_file",
            "is not a PEM private key",
        ),
        (
            {"ca_file": "ca", "cert_file": "text", "key_file": "client_key"},
            "broker.cert_file",
            "is not a PEM certificate",
        ),
        (
            {"ca_file": "ca", "cert_file": "client", "key_file": "other_key"},
            "broker.key_file",
            "do not load together",
        ),
    ],
)
def test_tls_files_must_exist_and_parse(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pki: dict[str, Path],
    files: dict[str, str],
    field: str,
    message: str,
) -> None:
    named = {k: pki.get(v, v) for k, v in files.items()}
    code, lines = check_config(tmp_path, broker_toml(**named), capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{field}: ")
    assert message in lines[0]


def test_tls_file_without_tls_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pki: dict[str, Path]
) -> None:
    code, lines = check_config(tmp_path, f'[broker]\nca_file = "{pki["ca"]}"\n' + ROOM, capsys)
    assert code == 2
    assert lines == ["broker.ca_file: only used with tls = true (it would be ignored)"]


@pytest.fixture
def mtls_broker(pki: dict[str, Path]) -> Iterator[MosquittoBroker]:
    """A real Mosquitto whose TLS listener requires a client certificate from our CA."""
    # Mosquitto started as root reads its certificates as user mosquitto: give it copies
    # it can read (pytest's temporary folders are private to this user).
    shared = Path(tempfile.mkdtemp(prefix="roommon-mtls-"))
    shared.chmod(0o755)
    for name in ("ca", "server", "server_key"):
        shutil.copy(pki[name], shared / name)
        (shared / name).chmod(0o644)
    broker = MosquittoBroker()
    broker.conf.write_text(
        f"listener {broker.port} 127.0.0.1\n"
        f"cafile {shared / 'ca'}\ncertfile {shared / 'server'}\n"
        f"keyfile {shared / 'server_key'}\n"
        "require_certificate true\nallow_anonymous true\npersistence false\n"
        "log_dest stderr\nlog_type error\n"
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.close()
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.broker
async def test_the_client_certificate_is_presented_to_a_broker_that_requires_one(
    mtls_broker: MosquittoBroker, pki: dict[str, Path]
) -> None:
    files = {"ca_file": pki["ca"], "cert_file": pki["client"], "key_file": pki["client_key"]}
    cfg = parse_config(
        {
            "site": {"id": "s"},
            "broker": {"port": mtls_broker.port, "tls": True, **files},
            "rooms": {"r1": {"feeds": {"spo2": {"kind": "spo2"}}}},
        }
    )
    assert preflight_problems(cfg) == []
    endpoint = BrokerEndpoint.from_config(cfg.broker)
    async with asyncio.timeout(10), endpoint.client(identifier="mtls-test") as client:
        await client.publish("roommon/v1/s/probe", b"1", qos=1)
    without = BrokerEndpoint.from_config(
        cfg.broker.model_copy(update={"cert_file": None, "key_file": None})
    )
    # Refused (TLS 1.3 sends "certificate required" after the handshake: the CONNACK
    # never comes, so either the client's connect timeout or ours ends it).
    with pytest.raises((aiomqtt.MqttError, TimeoutError)):
        async with (
            asyncio.timeout(5),
            without.client(identifier="no-cert", timeout=3) as client,
        ):
            await client.publish("roommon/v1/s/probe", b"1", qos=1)


# --------------------------------------------------------------------------- state dir


def state_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "roommon.sqlite3").write_bytes(b"this is no database, just bytes" * 200)
    return {
        "under_a_file": (a_file / "var", f"{a_file / 'var'}: {a_file} is not a directory"),
        "not_a_database": (garbage, f"{garbage / 'roommon.sqlite3'} is not an SQLite database"),
    }


@pytest.mark.parametrize("case", ["under_a_file", "not_a_database"])
def test_a_state_dir_that_cannot_hold_the_store_is_refused_at_check_config_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """Issue 11, defect 2: check-config said ok; run died with a traceback naming no path."""
    state, message = state_cases(tmp_path)[case]
    # a free loopback port nobody listens on: should the store open, run connects nowhere
    head = f'[site]\nid = "s"\n[broker]\nport = {free_port()}\n[daemon]\nstate_dir = "{state}"\n'
    text = ROOM.replace('[site]\nid = "s"\n', head)
    code, lines = check_config(tmp_path, text, capsys)
    assert code == 2
    assert lines == [f"daemon.state_dir: {message}"]

    # run opens the store itself too (the state dir may change after check-config):
    # with the preflight's state-dir check off, run's own refusal is the same one line.
    f = tmp_path / "room.toml"
    proc = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_PREFLIGHT, str(f)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    store = state / "roommon.sqlite3"
    assert line.startswith(f"roommon run: cannot open {store}: ")
    assert ("Not a directory" if case == "under_a_file" else "file is not a database") in line


#: ``roommon run`` with the preflight's state-dir check switched off, to show what run
#: does on its own when the store cannot be opened (a state dir broken after check-config).
RUN_WITHOUT_PREFLIGHT = """
import sys
import roommon.runtime.preflight as preflight
preflight.state_problems = lambda state_dir: []
from roommon.cli import main
sys.exit(main(["run", "--config", sys.argv[1]]))
"""
