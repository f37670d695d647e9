"""Config checks that need more than the file: what would otherwise be silently ignored.

:func:`roommon.config.load_config` validates the file's shape. These checks
need the rest of roommon or the machine, so they live above it and run at
``check-config`` and at ``run`` (``roommon.cli.common.load_or_report``), each
problem one ``(field, message)`` line of a :class:`~roommon.core.errors.ConfigError`:

* every alarm override (``[rooms.R.alarms."CODE"]``) and profile entry
  (``[rooms.R.profiles.PHASE]``, a code or ``prefix.*``) must match a condition
  the room can report: its checks' conditions, the feeds', the room's own, the
  recovery timer's, HL7's when HL7 is configured. An override that matches
  nothing does nothing, and a clinician who believes they lengthened a delay
  did not (issue 11, defect 12); the message suggests the nearest code;
* TLS files named in ``[broker]`` exist and parse (CA bundle, client
  certificate and key);
* the environment variables ``[broker]`` names for credentials are set;
* the state dir can be created and written, and an alarm store already in it
  is an SQLite database (``run`` itself exits 2 naming the path when a store
  cannot be opened).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path

from roommon.alerts.faults import DAEMON_OVERLOADED, STORE_FILE, STORE_UNWRITABLE
from roommon.config import Config, RoomConfig
from roommon.recovery.conditions import RECOVERY_CONDITIONS
from roommon.room.conditions import FEED_CONDITIONS, ROOM_CONDITIONS, declared_conditions
from roommon.transports.broker import BrokerConfig, tls_file_problems


def room_condition_codes(room: RoomConfig, *, hl7: bool) -> set[str]:
    """Every condition code the room can report with this configuration."""
    specs = list(declared_conditions(room))
    specs += [
        *FEED_CONDITIONS,
        *ROOM_CONDITIONS,
        *RECOVERY_CONDITIONS,
        STORE_UNWRITABLE,
        DAEMON_OVERLOADED,
    ]
    if hl7:  # imported only then: check-config of a room without HL7 stays light
        from roommon.runtime.hl7_output import FAILED, REJECTED, UNDELIVERED

        specs += (REJECTED, UNDELIVERED, FAILED)
    return {s.code for s in specs}


def _matches(key: str, codes: set[str]) -> bool:
    # The engine looks a code up exactly, then as "prefix.*" (RoomAlarms._override).
    if key.endswith(".*"):
        return any(code.split(".", 1)[0] == key[:-2] for code in codes)
    return key in codes


def _unmatched(key: str, codes: set[str]) -> str:
    pattern = key.endswith(".*")
    prefixes = {code.split(".", 1)[0] + ".*" for code in codes}
    close = difflib.get_close_matches(key, sorted(prefixes if pattern else codes), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else _other_check(key)
    what = f"starting with {key[:-1]!r}" if pattern else f"{key!r}"
    return f"no condition {what} among this room's checks, feeds and recovery{hint}"


def _other_check(key: str) -> str:
    """`` (a condition of the ecg check, which this room does not run)``, if it is one."""
    from roommon.checks import CHECKS

    for check in CHECKS.declarations():
        if _matches(key, {spec.code for spec in check.conditions}):
            return f" (a condition of the {check.name} check, which this room does not run)"
    return ""


def condition_problems(config: Config) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for room_id, room in config.rooms.items():
        codes = room_condition_codes(room, hl7=config.hl7 is not None)
        for key in room.alarms:
            if "." in key and not _matches(key, codes):
                problems.append((f"rooms.{room_id}.alarms.{key}", _unmatched(key, codes)))
        for phase, table in room.profiles.items():
            for key in table:
                if not _matches(key, codes):
                    path = f"rooms.{room_id}.profiles.{phase.value}.{key}"
                    problems.append((path, _unmatched(key, codes)))
    return problems


def tls_problems(broker: BrokerConfig) -> list[tuple[str, str]]:
    """The TLS files named in ``[broker]``: present, readable, PEM that OpenSSL accepts,
    the key the certificate's (the same checks name the file when a connection is made)."""
    return tls_file_problems(
        ca_file=broker.ca_file, cert_file=broker.cert_file, key_file=broker.key_file
    )


def credential_problems(broker: BrokerConfig) -> list[tuple[str, str]]:
    problems = []
    for field in ("username_env", "password_env", "feed_username_env", "feed_password_env"):
        var: str | None = getattr(broker, field)
        if var is not None and os.environ.get(var) in (None, ""):
            problems.append((f"broker.{field}", f"environment variable {var} is not set"))
    return problems


#: The first bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def state_problems(state_dir: Path) -> list[tuple[str, str]]:
    """The state dir can be made and written, and the alarm store in it is a database."""
    existing = state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        why = f"{existing} is not a directory" if existing != state_dir else "not a directory"
        return [("daemon.state_dir", f"{state_dir}: {why}")]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [("daemon.state_dir", f"{state_dir}: {existing} is not writable")]
    store = state_dir / STORE_FILE
    if store.exists():
        try:
            with store.open("rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            return [("daemon.state_dir", f"{store} cannot be read ({exc.strerror or exc})")]
        if head and head != SQLITE_HEADER:
            return [("daemon.state_dir", f"{store} is not an SQLite database")]
    return []


def preflight_problems(config: Config, *, broker: bool = True) -> list[tuple[str, str]]:
    """Every problem above, in file order: broker, daemon, then the rooms."""
    out: Iterable[tuple[str, str]] = []
    if broker:
        out = [*tls_problems(config.broker), *credential_problems(config.broker)]
    return [*out, *state_problems(config.daemon.state_dir), *condition_problems(config)]
