"""The board wire protocol: request signing, verification and the JSON payloads.

Every request between the province and a board (pushes to the board, and the board's own requests
to its feed) carries three headers::

    X-TCS-Timestamp: 1767225600            # Unix time in seconds, the sender's clock
    X-TCS-Nonce: 9f2c0d...                 # 16-64 characters [A-Za-z0-9_-], never reused
    X-TCS-Signature: 5b1e...               # hex HMAC-SHA256 with the board's key over
                                           # timestamp \\n nonce \\n METHOD \\n path \\n body

The receiver recomputes the HMAC (constant-time comparison), refuses timestamps more than
``MAX_SKEW_S`` (30 s) away from its own clock, and remembers the nonces it accepted (a bounded
cache, kept as long as a timestamp can be accepted) so a captured request cannot be replayed.
Binding the method and the path means a signed body cannot be sent to another endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

__all__ = [
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_SKEW_S",
    "PROTOCOL_VERSION",
    "NonceCache",
    "Verifier",
    "canonical",
    "iso",
    "parse_iso",
    "parse_key",
    "seconds",
    "sign",
    "signed_headers",
    "slot_of",
]

PROTOCOL_VERSION = 1
HEADER_TIMESTAMP = "X-TCS-Timestamp"
HEADER_NONCE = "X-TCS-Nonce"
HEADER_SIGNATURE = "X-TCS-Signature"
MAX_SKEW_S = 30.0

_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")


def canonical(timestamp: str, nonce: str, method: str, path: str, body: bytes) -> bytes:
    """The bytes that are signed: ``timestamp \\n nonce \\n METHOD \\n path \\n`` then the body."""
    return f"{timestamp}\n{nonce}\n{method.upper()}\n{path}\n".encode() + body


def sign(key: bytes, timestamp: str, nonce: str, method: str, path: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of the canonical bytes."""
    return hmac.new(
        key, canonical(timestamp, nonce, method, path, body), hashlib.sha256
    ).hexdigest()


def signed_headers(
    key: bytes,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The three protocol headers for one request (a fresh nonce unless one is given)."""
    ts = str(int(time.time() if now is None else now))
    n = nonce if nonce is not None else secrets.token_hex(16)
    return {
        HEADER_TIMESTAMP: ts,
        HEADER_NONCE: n,
        HEADER_SIGNATURE: sign(key, ts, n, method, path, body),
    }


class NonceCache:
    """Nonces seen within the acceptance window, bounded in size.

    An entry is kept for ``ttl_s`` (twice the clock skew a timestamp may have: after that the
    timestamp check alone refuses the request). When the cache is full of live entries it refuses
    new nonces rather than forgetting one that could still be replayed.
    """

    def __init__(self, capacity: int = 4096, ttl_s: float = 2 * MAX_SKEW_S + 1) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._seen

    def add(self, nonce: str, now: float) -> str | None:
        """Remember ``nonce``; a reason if it was seen already or the cache is full."""
        seen = self._seen
        while seen:
            oldest, at = next(iter(seen.items()))
            if now - at < self.ttl_s:
                break
            del seen[oldest]
        if nonce in seen:
            return f"replayed nonce {nonce[:16]}: this request was accepted before"
        if len(seen) >= self.capacity:
            return "too many requests: the nonce cache is full, try again in a minute"
        seen[nonce] = now
        return None


class Verifier:
    """Checks the protocol headers of incoming requests against a key (one per board)."""

    def __init__(self, max_skew_s: float = MAX_SKEW_S, nonce_capacity: int = 4096) -> None:
        self.max_skew_s = max_skew_s
        self.nonces = NonceCache(nonce_capacity, 2 * max_skew_s + 1)

    def verify(
        self,
        key: bytes,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        now: float | None = None,
    ) -> str | None:
        """None if the request is authentic, fresh and new; otherwise the reason to refuse it."""
        now = time.time() if now is None else now
        ts = headers.get(HEADER_TIMESTAMP)
        nonce = headers.get(HEADER_NONCE)
        signature = headers.get(HEADER_SIGNATURE)
        for name, value in (
            (HEADER_TIMESTAMP, ts),
            (HEADER_NONCE, nonce),
            (HEADER_SIGNATURE, signature),
        ):
            if not value:
                return f"missing {name} header"
        assert ts is not None and nonce is not None and signature is not None
        try:
            sent = int(ts)
        except ValueError:
            return f"bad {HEADER_TIMESTAMP} {ts[:32]!r}: give Unix seconds"
        skew = sent - now
        if abs(skew) > self.max_skew_s:
            return (
                f"stale timestamp: {skew:+.0f} s from the receiver's clock "
                f"(limit ±{self.max_skew_s:g} s)"
            )
        if not _NONCE.fullmatch(nonce):
            return f"bad {HEADER_NONCE}: 16-64 characters of [A-Za-z0-9_-]"
        if not _SIGNATURE.fullmatch(signature):
            return f"bad {HEADER_SIGNATURE}: give 64 hex digits"
        expected = sign(key, ts, nonce, method, path, body)
        if not hmac.compare_digest(expected, signature.lower()):
            return (
                "bad signature: the body, timestamp, nonce or path was altered, or the key is wrong"
            )
        return self.nonces.add(nonce, now)


def parse_key(key: str) -> tuple[UUID, UUID, int] | None:
    """``(dispatch id, device id, play)`` of an idempotency key (``dispatch.device[.play]``)."""
    parts = key.split(".")
    if len(parts) not in (2, 3):
        return None
    try:
        play = int(parts[2]) if len(parts) == 3 else 1
        return UUID(hex=parts[0]), UUID(hex=parts[1]), play
    except ValueError:
        return None


def slot_of(key: str) -> str:
    """The playlist slot of an item: the key without its play number (a resumed play of the same
    delivery replaces the earlier one instead of adding a copy)."""
    parts = key.split(".")
    return ".".join(parts[:2]) if len(parts) == 3 else key


def iso(t: datetime) -> str:
    """UTC instant in ISO 8601 with a ``Z``."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: Any) -> datetime | None:
    """An aware instant from ISO 8601 (``Z`` accepted); None if it is not one."""
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def seconds(td: timedelta) -> float:
    """Seconds of a timedelta, rounded to milliseconds."""
    return round(td.total_seconds(), 3)
