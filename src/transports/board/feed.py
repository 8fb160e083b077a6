"""The pull side: one feed per board, server-sent events for instant overlays, proof of play.

Boards behind NAT cannot be reached; they fetch their playlist instead. ``feed_app(transport)``
returns an aiohttp application the province server mounts (``parent.add_subapp("/tcs",
feed_app(transport))``) or runs on its own. Every request is signed by the board with its key,
exactly like the pushes the province signs (see ``transports.board.protocol``):

- ``GET /boards/{board_id}/feed``: the board's playlist and overlay as JSON, with an ``ETag``;
  ``If-None-Match`` with the current tag answers ``304 Not Modified``.
- ``GET /boards/{board_id}/events``: ``text/event-stream``; events ``hello`` (on connect: the
  current tag and overlay), ``overlay`` (an emergency: show it at once), ``clear`` (remove the
  overlay with that id), ``feed`` (the feed changed: fetch it).
- ``POST /boards/{board_id}/played``: proof of play, ``{"played": [{"id": KEY, "at": ISO}]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiohttp import HttpVersion11, web

from transports.board.protocol import Verifier, parse_iso, slot_of

if TYPE_CHECKING:
    from transports.board.transport import BoardTransport

__all__ = ["FeedBoard", "Subscriber", "feed_app", "sse_event"]

log = logging.getLogger("transports.board.feed")

_PLAYED_KEEP = 4096  # proof-of-play keys remembered per board
_MAX_BUFFER = 256 * 1024  # bytes queued for a subscriber before it is dropped as too slow
KEEPALIVE_S = 15.0


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def sse_event(event: str, data: Any) -> bytes:
    """One server-sent event; ``data`` as compact JSON on one line."""
    return b"event: " + event.encode() + b"\ndata: " + _json(data) + b"\n\n"


def _expired(item: dict[str, Any], now: datetime, field: str) -> bool:
    until = parse_iso(item.get(field))
    return until is not None and until <= now


class FeedBoard:
    """What one pull board should show, who listens for it, and what it reported playing."""

    def __init__(self, board_id: UUID, poll_interval_s: float) -> None:
        self.board_id = board_id
        self.poll_interval_s = poll_interval_s
        self.items: dict[str, dict[str, Any]] = {}  # by slot
        self.overlay: dict[str, Any] | None = None
        self.verifier = Verifier()
        self.last_seen: float | None = None  # wall-clock time of the last authenticated request
        self.subscribers: set[Subscriber] = set()
        self.played: OrderedDict[str, datetime] = OrderedDict()
        self.waiters: dict[str, list[asyncio.Future[datetime]]] = {}
        self.fresh: set[str] = set()  # overlays published in this turn of the event loop
        self._body: bytes | None = None
        self._etag = ""

    # -- content ---------------------------------------------------------------------------

    def feed(self, now: datetime | None = None) -> tuple[bytes, str]:
        """The feed body and its ETag (a hash of the body, stable across restarts)."""
        now = now or datetime.now(UTC)
        stale = [s for s, it in self.items.items() if _expired(it, now, "valid_until")]
        for s in stale:
            del self.items[s]
        if self.overlay is not None and _expired(self.overlay, now, "ends_at"):
            self.overlay = None
            stale.append("overlay")
        if self._body is None or stale:
            doc = {
                "v": 1,
                "board": str(self.board_id),
                "poll_interval_s": self.poll_interval_s,
                "items": sorted(self.items.values(), key=lambda i: (i["valid_from"], i["id"])),
                "overlay": self.overlay,
            }
            self._body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
            self._etag = '"' + hashlib.sha256(self._body).hexdigest()[:32] + '"'
        return self._body, self._etag

    def publish(self, payload: dict[str, Any], encoded: bytes | None = None) -> bool:
        """Put an item (or an overlay) into the feed and tell the listeners; False if the feed
        already had exactly this item (a redelivery with the same key). ``encoded``: the payload
        as JSON already, if the caller has it."""
        if payload["type"] == "overlay":
            if self.overlay is not None and self.overlay["id"] == payload["id"]:
                return False
            self.overlay = payload
            self._body = None
            if self.subscribers:
                data = encoded if encoded is not None else _json(payload)
                self._notify(b"event: overlay\ndata: " + data + b"\n\n")
            return True
        slot = slot_of(payload["id"])
        old = self.items.get(slot)
        if old is not None and old["id"] == payload["id"]:
            return False
        self.items[slot] = payload
        self._body = None
        if self.subscribers:
            _, etag = self.feed()
            self._notify(sse_event("feed", {"etag": etag}))
        return True

    def clear(self, overlay_id: str | None) -> str | None:
        """Remove the overlay (only the one named, if a name is given); the id removed, if any."""
        ov = self.overlay
        if ov is None or (overlay_id is not None and ov["id"] != overlay_id):
            return None
        self.overlay = None
        self._body = None
        if self.subscribers:
            self._notify(sse_event("clear", {"id": ov["id"]}))
        return str(ov["id"])

    def _notify(self, event: bytes) -> None:
        for sub in list(self.subscribers):
            if not sub.send(event):  # gone, or too slow: it reconnects and resynchronises
                self.subscribers.discard(sub)
                sub.end()

    # -- proof of play ---------------------------------------------------------------------

    def mark_played(self, key: str, at: datetime) -> bool:
        """Remember a play; True if a delivery was waiting for it."""
        self.played[key] = at
        self.played.move_to_end(key)
        while len(self.played) > _PLAYED_KEEP:
            self.played.popitem(last=False)
        futures = self.waiters.pop(key, [])
        for f in futures:
            if not f.done():
                f.set_result(at)
        return bool(futures)

    def keepalive(self) -> None:
        """Send a keep-alive comment down every event stream."""
        self._notify(b": keep-alive\n\n")

    def close_streams(self) -> None:
        """End every event stream (shutdown)."""
        for sub in list(self.subscribers):
            sub.end()
        self.subscribers.clear()


class Subscriber:
    """One open event stream. Events are written to its socket at once, from the code that
    publishes them, instead of waking a task per stream: a fan-out to thousands of boards is one
    loop of socket writes."""

    __slots__ = ("chunked", "done", "transport")

    def __init__(
        self, transport: asyncio.BaseTransport, chunked: bool, done: asyncio.Future[None]
    ) -> None:
        self.transport = transport
        self.chunked = chunked
        self.done = done

    def send(self, data: bytes) -> bool:
        """Write one event (as an HTTP/1.1 chunk when the response is chunked); False if the
        connection is closing or has too much unsent data."""
        t = self.transport
        if t.is_closing() or not isinstance(t, asyncio.WriteTransport):
            return False
        if t.get_write_buffer_size() > _MAX_BUFFER:
            return False
        t.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        return True

    def end(self) -> None:
        """Let the stream's handler finish the response."""
        if not self.done.done():
            self.done.set_result(None)


TRANSPORT: web.AppKey[BoardTransport] = web.AppKey("board_transport")
_KEEPALIVE: web.AppKey[asyncio.Task[None]] = web.AppKey("board_feed_keepalive")


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def _authenticate(
    request: web.Request, body: bytes = b""
) -> tuple[FeedBoard, BoardTransport] | web.Response:
    transport = request.app[TRANSPORT]
    try:
        board_id = UUID(request.match_info["board_id"])
    except ValueError:
        return _error(404, f"{request.match_info['board_id']!r} is not a board id")
    found = transport.feed_board(board_id)
    if isinstance(found, str):
        return _error(404 if found.startswith("unknown") else 503, found)
    board, key = found
    reason = board.verifier.verify(
        key, request.method, request.rel_url.raw_path, body, request.headers
    )
    if reason is not None:
        log.warning("refused %s %s: %s", request.method, request.rel_url.raw_path, reason)
        return _error(503 if reason.startswith("too many") else 401, reason)
    board.last_seen = time.time()
    return board, transport


async def _feed(request: web.Request) -> web.StreamResponse:
    auth = await _authenticate(request)
    if isinstance(auth, web.Response):
        return auth
    board, _ = auth
    body, etag = board.feed()
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=body, headers=headers, content_type="application/json", charset="utf-8"
    )


async def _events(request: web.Request) -> web.StreamResponse:
    auth = await _authenticate(request)
    if isinstance(auth, web.Response):
        return auth
    board, _ = auth
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    chunked = request.version >= HttpVersion11
    if chunked:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    _, etag = board.feed()
    overlay = board.overlay
    await resp.write(sse_event("hello", {"etag": etag, "overlay": overlay}))
    transport = request.transport
    if transport is None:
        return resp
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sub = Subscriber(transport, chunked, done)
    board.subscribers.add(sub)
    _, now_etag = board.feed()
    if now_etag != etag or board.overlay is not overlay:  # changed while hello was written
        sub.send(sse_event("hello", {"etag": now_etag, "overlay": board.overlay}))
    try:
        await done  # events are written by FeedBoard._notify; this waits for the end
    except asyncio.CancelledError:
        pass
    finally:
        board.subscribers.discard(sub)
    return resp


async def _played(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    auth = await _authenticate(request, body)
    if isinstance(auth, web.Response):
        return auth
    board, transport = auth
    try:
        doc = json.loads(body)
    except ValueError:
        return _error(400, "the body is not JSON")
    entries = doc.get("played", [doc]) if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        return _error(400, 'give {"played": [{"id": KEY, "at": ISO-8601}, ...]}')
    plays: list[tuple[str, datetime]] = []
    for e in entries:
        key = e.get("id") if isinstance(e, dict) else None
        at = parse_iso(e.get("at")) if isinstance(e, dict) else None
        if not isinstance(key, str) or at is None:
            return _error(400, f"each play needs an id and an aware ISO-8601 time: {e!r:.120}")
        plays.append((key, at.astimezone(UTC)))
    problem = await transport.record_plays(board, plays)
    if problem is not None:
        status, reason = problem
        return _error(status, reason)
    return web.json_response({"accepted": len(plays)})


def feed_app(transport: BoardTransport) -> web.Application:
    """The feed server for the transport's pull boards (mount it, or run it on its own)."""
    app = web.Application()
    app[TRANSPORT] = transport
    app.router.add_get("/boards/{board_id}/feed", _feed)
    app.router.add_get("/boards/{board_id}/events", _events)
    app.router.add_post("/boards/{board_id}/played", _played)

    async def keepalive() -> None:
        # One timer for every stream (not one per stream): proxies and NAT keep the connections.
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            transport.keepalive()

    async def start(app: web.Application) -> None:
        app[_KEEPALIVE] = asyncio.create_task(keepalive())

    async def shutdown(app: web.Application) -> None:
        task = app.get(_KEEPALIVE)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        transport.close_streams()

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    return app
