"""Who may act from a page: accounts, sessions, CSRF tokens.

Accounts live in their own file (``--users FILE``), never in the site
config: one line per user, ``NAME scrypt$N$r$p$SALT$HASH`` (salt and hash
base64; written by ``roommon display-user``). The file is read at every sign-in,
so adding or removing a user needs no restart. A session is a random token
in an HttpOnly, SameSite=Strict cookie; it expires after ``idle_s`` without
use and ``max_s`` after sign-in, on the injected clock. Every state-changing
request must carry the session's CSRF token in ``X-CSRF-Token`` (a header a
cross-site form cannot set), checked in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from roommon.core.clock import Clock
from roommon.core.errors import ConfigError
from roommon.core.ids import validate_identifier
from roommon.core.log import get_logger

log = get_logger(__name__)

#: scrypt cost: 2**14 x 8 x 1 uses 16 MiB and about 50 ms here; OWASP's minimum is 2**13.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024
#: After this many failed sign-ins of one user within FAIL_WINDOW_S, refuse for LOCK_S.
MAX_FAILURES, FAIL_WINDOW_S, LOCK_S = 5, 300.0, 60.0


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=_MAXMEM
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(want),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


def read_accounts(path: Path) -> dict[str, str]:
    """User name -> encoded hash; ConfigError naming the file and line of a bad entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = ("(file)", f"cannot read the accounts file: {exc.strerror}")
        raise ConfigError(str(path), [problem]) from exc
    accounts: dict[str, str] = {}
    for no, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("scrypt$") or parts[1].count("$") != 5:
            raise ConfigError(str(path), [(f"line {no}", "expected 'NAME scrypt$N$r$p$SALT$HASH'")])
        try:
            validate_identifier(parts[0])
        except ValueError as exc:
            raise ConfigError(str(path), [(f"line {no}", f"user name {exc}")]) from exc
        accounts[parts[0]] = parts[1]
    return accounts


def set_account(path: Path, user: str, password: str) -> None:
    """Add or replace one user's password hash (file created 0600 if missing)."""
    try:
        validate_identifier(user)
    except ValueError as exc:
        raise ConfigError(str(path), [("user", str(exc))]) from exc
    if len(password) < 8:
        raise ConfigError(str(path), [("password", "at least 8 characters")])
    lines = (
        path.read_text(encoding="utf-8").splitlines()
        if path.exists()
        else ["# roommon display accounts: NAME scrypt$N$r$p$SALT$HASH (roommon display-user)"]
    )
    lines = [ln for ln in lines if ln.split()[:1] != [user]]
    lines.append(f"{user} {hash_password(password)}")
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(slots=True)
class Session:
    token: str
    user: str
    csrf: str
    started: float  # clock.monotonic()
    last_used: float


class Sessions:
    """Signed-in users, by session token, expiring on the clock."""

    def __init__(
        self, *, accounts: Path, clock: Clock, idle_s: float = 900.0, max_s: float = 12 * 3600.0
    ) -> None:
        self._accounts = accounts
        self._clock = clock
        self.idle_s = idle_s
        self.max_s = max_s
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, list[float]] = {}
        # verified against when the user is unknown, so timing does not tell who exists
        self._dummy = hash_password(secrets.token_hex(8))

    def sign_in(self, user: str, password: str) -> Session | None:
        now = self._clock.monotonic()
        recent = [t for t in self._failures.get(user, []) if now - t < FAIL_WINDOW_S]
        if len(recent) >= MAX_FAILURES and now - recent[-1] < LOCK_S:
            log.warning("display_sign_in_locked", user=user)
            return None
        encoded = read_accounts(self._accounts).get(user)
        ok = verify_password(password, encoded or self._dummy) and encoded is not None
        if not ok:
            self._failures[user] = [*recent, now]
            log.warning("display_sign_in_failed", user=user)
            return None
        self._failures.pop(user, None)
        session = Session(
            token=secrets.token_urlsafe(32),
            user=user,
            csrf=secrets.token_urlsafe(32),
            started=now,
            last_used=now,
        )
        self._sessions[session.token] = session
        log.info("display_signed_in", user=user)
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of a token (its idle time restarts), or None."""
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        now = self._clock.monotonic()
        if now - session.last_used > self.idle_s or now - session.started > self.max_s:
            del self._sessions[token]
            log.info("display_session_expired", user=session.user)
            return None
        session.last_used = now
        return session

    def sign_out(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(session.csrf, presented)
