"""HTTP electronic boards (bảng tin điện tử công cộng): signed push, pull feed with server-sent
events, emergency overlays and proof of play.

``BoardTransport`` is the transport (name ``board``, channel ``board``); ``feed_app`` is the feed
server its pull boards call; ``transports.board.protocol`` is the wire protocol (signing and
verification) that boards implement. See ``docs/boards.md``.
"""

from transports.board.feed import FeedBoard, feed_app, sse_event
from transports.board.protocol import (
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    MAX_SKEW_S,
    PROTOCOL_VERSION,
    NonceCache,
    Verifier,
    sign,
    signed_headers,
)
from transports.board.transport import (
    AppSettings,
    BoardMode,
    BoardTransport,
    PlayCallback,
    PlayReport,
    SettingsSource,
    build_payload,
)

__all__ = [
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_SKEW_S",
    "PROTOCOL_VERSION",
    "AppSettings",
    "BoardMode",
    "BoardTransport",
    "FeedBoard",
    "NonceCache",
    "PlayCallback",
    "PlayReport",
    "SettingsSource",
    "Verifier",
    "build_payload",
    "feed_app",
    "sign",
    "signed_headers",
    "sse_event",
]
