"""Credentials kept by the server, not in the event store: password hashes, API tokens, sessions.

Why a server-side SQLite table and not events: the event store is an append-only audit trail
that is replicated and kept for ever; a credential must be revocable *and erasable*, and even a
hash of a secret does not belong in a log that many readers see (rule: secrets never in events).
Who holds which *role* stays in the event store (the core's Principal aggregate); this file only
answers "which username is this request?".

- Passwords: ``hashlib.scrypt`` (standard library; n=2**14, r=8, p=1, 16-byte salt).
- API tokens: 32 random bytes shown once (``tcs_<id>_<secret>``); stored as SHA-256 of the whole
  token. Tokens have 256 bits of entropy, so a fast hash is enough (no salt or stretching needed).
- Sessions: a random id in an HttpOnly SameSite=Strict cookie; stored as HMAC-SHA-256 under the
  session key, so a copy of the database alone cannot be replayed as cookies. The CSRF token is
  HMAC(session key, "csrf:" + id): bound to the session, nothing more to store.
- ``RateLimiter``: token buckets per key (login: per client address and per username; API: per
  token; unknown tokens: per client address).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import attrs

from tcs_core import ValidationError

__all__ = [
    "CredentialStore",
    "IssuedToken",
    "RateLimiter",
    "TokenInfo",
    "hash_password",
    "verify_password",
]

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS passwords (
    username TEXT PRIMARY KEY, hash TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, username TEXT NOT NULL, label TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    last_used TEXT);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, expires REAL NOT NULL);
"""


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (hex)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of a password against ``hash_password``'s output."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def check_password_strength(password: str) -> str:
    """At least 12 characters; at most 256 (scrypt works on any length, requests should not)."""
    if not isinstance(password, str) or not 12 <= len(password) <= 256:
        raise ValidationError("password", "use 12-256 characters")
    return password


@attrs.frozen
class TokenInfo:
    """An API token as listed (never the secret)."""

    id: str
    username: str
    label: str
    created_at: datetime
    expires_at: datetime
    last_used: datetime | None


@attrs.frozen
class IssuedToken:
    """A new token: ``secret`` is shown to the caller once and never stored."""

    info: TokenInfo
    secret: str = attrs.field(repr=False)


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class CredentialStore:
    """Passwords, tokens and sessions in one SQLite file (``:memory:`` for tests)."""

    def __init__(self, path: str, session_key: str) -> None:
        self._key = session_key.encode()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._dummy = hash_password(secrets.token_hex(16))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- passwords ------------------------------------------------------------------------------

    def set_password(self, username: str, password: str) -> None:
        """Store (or replace) a user's password hash."""
        h = hash_password(check_password_strength(password))
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._db.execute(
                "INSERT INTO passwords VALUES (?, ?, ?) ON CONFLICT(username) DO UPDATE "
                "SET hash = excluded.hash, updated_at = excluded.updated_at",
                (username, h, now),
            )

    def has_password(self, username: str) -> bool:
        """True if the user can log in with a password."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM passwords WHERE username = ?", (username,)
            ).fetchone()
        return row is not None

    def check_password(self, username: str, password: str) -> bool:
        """True if the password matches; the same work is done for unknown users."""
        with self._lock:
            row = self._db.execute(
                "SELECT hash FROM passwords WHERE username = ?", (username,)
            ).fetchone()
        if row is None:
            verify_password(password, self._dummy)  # same cost: no user enumeration by timing
            return False
        return verify_password(password, row[0])

    # -- API tokens -----------------------------------------------------------------------------

    @staticmethod
    def _token_hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def issue_token(self, username: str, label: str, ttl: timedelta) -> IssuedToken:
        """A new random token for ``username``; only its SHA-256 is stored."""
        tid = secrets.token_hex(8)
        token = f"tcs_{tid}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC).replace(microsecond=0)
        info = TokenInfo(tid, username, label, now, now + ttl, None)
        with self._lock:
            self._db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    tid,
                    username,
                    label,
                    self._token_hash(token),
                    now.isoformat(),
                    info.expires_at.isoformat(),
                ),
            )
        return IssuedToken(info, token)

    def token_user(self, token: str) -> TokenInfo | None:
        """The live token matching ``token``, or None (unknown, revoked or expired)."""
        h = self._token_hash(token)
        now = datetime.now(UTC)
        with self._lock:
            row = self._db.execute(
                "SELECT id, username, label, created_at, expires_at, last_used FROM tokens "
                "WHERE hash = ?",
                (h,),
            ).fetchone()
            if row is None:
                return None
            info = TokenInfo(row[0], row[1], row[2], _ts(row[3]), _ts(row[4]), _ts(row[5]))  # type: ignore[arg-type]
            if info.expires_at <= now:
                return None
            self._db.execute(
                "UPDATE tokens SET last_used = ? WHERE id = ?",
                (now.replace(microsecond=0).isoformat(), info.id),
            )
        return info

    def tokens(self, username: str | None = None) -> list[TokenInfo]:
        """Tokens of one user (None: everyone's), newest first."""
        q = "SELECT id, username, label, created_at, expires_at, last_used FROM tokens"
        args: tuple[str, ...] = ()
        if username is not None:
            q += " WHERE username = ?"
            args = (username,)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY created_at DESC, id", args).fetchall()
        return [TokenInfo(r[0], r[1], r[2], _ts(r[3]), _ts(r[4]), _ts(r[5])) for r in rows]  # type: ignore[arg-type]

    def token(self, token_id: str) -> TokenInfo | None:
        """One token's listing by id."""
        return next((t for t in self.tokens() if t.id == token_id), None)

    def revoke_token(self, token_id: str) -> bool:
        """Delete a token; False if there was none."""
        with self._lock:
            cur = self._db.execute("DELETE FROM tokens WHERE id = ?", (token_id,))
        return cur.rowcount > 0

    # -- sessions -------------------------------------------------------------------------------

    def _session_hash(self, sid: str) -> str:
        return hmac.new(self._key, b"session:" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_token(self, sid: str) -> str:
        """The CSRF token bound to a session id."""
        return hmac.new(self._key, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()

    def login_csrf(self, nonce: str) -> str:
        """The login form's token, bound to the pre-session cookie nonce."""
        return hmac.new(self._key, b"login:" + nonce.encode(), hashlib.sha256).hexdigest()

    def start_session(self, username: str, ttl_s: float) -> str:
        """A new session id for ``username`` (goes in the cookie; stored only as an HMAC)."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?)",
                (self._session_hash(sid), username, time.time() + ttl_s),
            )
        return sid

    def session_user(self, sid: str) -> str | None:
        """The username of a live session."""
        with self._lock:
            row = self._db.execute(
                "SELECT username, expires FROM sessions WHERE id_hash = ?",
                (self._session_hash(sid),),
            ).fetchone()
        if row is None or row[1] < time.time():
            return None
        return str(row[0])

    def end_session(self, sid: str) -> None:
        """Log out."""
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE id_hash = ?", (self._session_hash(sid),))


class RateLimiter:
    """Token buckets by key: ``burst`` requests at once, refilled at ``rate`` per second.

    Evaluated: ``limits`` and ``pyrate-limiter``; both are fine, but for a per-process bucket of a
    few keys twenty lines of code are smaller than a new dependency. Keys are bounded (LRU).
    """

    def __init__(self, burst: int, rate: float, max_keys: int = 100_000) -> None:
        self.burst, self.rate, self.max_keys = float(burst), rate, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked(self, key: str) -> float:
        """Seconds until ``key`` may try again (0.0: it may), without counting a request."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: str) -> float:
        """0.0 if allowed (and counted); otherwise the seconds to wait before retrying."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return wait
