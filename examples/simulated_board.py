"""A simulated public electronic board (bảng tin điện tử công cộng) speaking the tcs board protocol.

It does what a real board must: verifies every request's HMAC signature, refuses stale timestamps
(more than ±30 s from its clock) and replayed nonces (a bounded cache), keeps its own playlist
and emergency overlay, and renders them as an HTML page (Vietnamese, UTF-8; a large red overlay
for emergencies) that a browser keeps current through server-sent events, with short polling as
the fallback.

One process serves any number of boards under ``/b/{n}/`` (board 0 is also at ``/``)::

    BOARD_KEY=secret python examples/simulated_board.py --port 8090 --boards 1
    # register the device with address http://127.0.0.1:8090/b/0 and settings key=env:BOARD_KEY

With ``--advertise`` each push board also announces itself on the LAN by zeroconf (service type
``_tcs-board._tcp``), so ``tcs devices discover`` lists it as a pending device (docs/discovery.md)::

    BOARD_KEY=secret python examples/simulated_board.py --port 8090 --advertise

As a pull board behind NAT it polls its feed and listens to its event stream instead, and posts
proof of play back::

    BOARD_KEY=secret python examples/simulated_board.py --port 8091 \\
        --pull http://127.0.0.1:8080/tcs --board-id 6f1c...

The signature check here is written from the protocol description (docs/boards.md), not imported
from ``transports.board``: two implementations that agree are the test of the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import html
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from yarl import URL

if TYPE_CHECKING:
    from tcs_core.discovery import Advertisement

__all__ = [
    "BOARDS",
    "BOARD_SERVICE_TYPE",
    "Board",
    "PullBoard",
    "advertise_board",
    "board_app",
    "main",
    "serve",
]

log = logging.getLogger("simulated_board")

MAX_SKEW_S = 30
NONCE_TTL_S = 2 * MAX_SKEW_S + 1
ROTATE_S = 8


def _now() -> float:
    return time.time()


def _instant(value: Any) -> float | None:
    """Unix seconds of an ISO 8601 instant (``Z`` accepted), or None."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.timestamp() if t.tzinfo is not None else None


def _in_dayparts(dayparts: list[str], zone: str, at: float) -> bool:
    if not dayparts:
        return True
    try:
        local = datetime.fromtimestamp(at, ZoneInfo(zone))
    except (KeyError, ValueError):
        local = datetime.fromtimestamp(at, UTC)
    hm = local.strftime("%H:%M")
    for part in dayparts:
        start, _, end = part.partition("-")
        if start <= hm < end:
            return True
    return False


class Board:
    """One board: its key, nonce cache, playlist, overlay and what it showed when."""

    def __init__(self, n: int, key: bytes, name: str = "", nonce_capacity: int = 1024) -> None:
        self.n = n
        self.key = key
        self.name = name or f"Bảng tin số {n}"
        self.nonce_capacity = nonce_capacity
        self.nonces: OrderedDict[str, float] = OrderedDict()
        self.seen_ids: OrderedDict[str, float] = OrderedDict()
        self.items: dict[str, dict[str, Any]] = {}  # by slot; each with local show window
        self.overlay: dict[str, Any] | None = None
        self.shown: dict[str, float] = {}  # item id -> when this board first showed it
        self.rejected: list[str] = []  # reasons of refused requests, newest last
        self.fault: str | None = None  # "slow", "error", "busy", "malformed" (tests)
        self.page_listeners: set[asyncio.Queue[bytes | None]] = set()
        self.version = 0

    # -- security ----------------------------------------------------------------------------

    def check(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        """None if the request is authentic, fresh and not a replay; otherwise why not."""
        ts = headers.get("X-TCS-Timestamp", "")
        nonce = headers.get("X-TCS-Nonce", "")
        given = headers.get("X-TCS-Signature", "")
        if not ts or not nonce or not given:
            return "missing signature headers (X-TCS-Timestamp, X-TCS-Nonce, X-TCS-Signature)"
        try:
            sent = int(ts)
        except ValueError:
            return f"bad timestamp {ts[:20]!r}"
        now = _now()
        if abs(now - sent) > MAX_SKEW_S:
            return (
                f"stale timestamp: the request is {sent - now:+.0f} s from the board's clock "
                f"(limit ±{MAX_SKEW_S} s)"
            )
        signed = f"{ts}\n{nonce}\n{method.upper()}\n{path}\n".encode() + body
        expected = hmac.new(self.key, signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given.lower()):
            return "bad signature: the body or headers were altered, or the key is wrong"
        while self.nonces and now - next(iter(self.nonces.values())) > NONCE_TTL_S:
            self.nonces.popitem(last=False)
        if nonce in self.nonces:
            return "replayed nonce: this request was already accepted"
        if len(self.nonces) >= self.nonce_capacity:
            return "busy: too many requests in the last minute"
        self.nonces[nonce] = now
        return None

    # -- content -----------------------------------------------------------------------------

    @staticmethod
    def _offset(doc: Mapping[str, Any]) -> float:
        """Board clock minus province clock, from the document's ``sent_at`` (0 if absent)."""
        sent = _instant(doc.get("sent_at"))
        if sent is None:
            return 0.0
        off = _now() - sent
        return off if abs(off) < 3600 else 0.0

    def accept(self, doc: Mapping[str, Any]) -> str:
        """Take an item or overlay; "added", or "duplicate" for an id seen before."""
        key = str(doc["id"])
        if key in self.seen_ids:
            return "duplicate"
        self.seen_ids[key] = _now()
        while len(self.seen_ids) > 10_000:
            self.seen_ids.popitem(last=False)
        self.apply(doc)
        return "added"

    def apply(self, doc: Mapping[str, Any]) -> None:
        """Put an item into the playlist or raise the overlay (times on the board's clock)."""
        off = self._offset(doc)
        now = _now()
        if doc["type"] == "overlay":
            starts = _instant(doc.get("starts_at"))
            ends = _instant(doc.get("ends_at"))
            show_from = now if starts is None else max(now, starts + off)
            if starts is not None and starts + off <= now + 1.0:
                show_from = now  # due now: take the screen at once
            duration = float(doc.get("duration_s", 60))
            show_until = (ends + off) if ends is not None else show_from + duration
            self.overlay = {**doc, "show_from": show_from, "show_until": show_until}
            if show_from <= now < show_until:
                self.shown.setdefault(str(doc["id"]), now)
        else:
            start = _instant(doc.get("valid_from"))
            end = _instant(doc.get("valid_until"))
            slot = str(doc.get("slot") or doc["id"])
            self.items[slot] = {
                **doc,
                "show_from": (start + off) if start is not None else now,
                "show_until": (end + off) if end is not None else now + 86400,
            }
        self.changed()

    def clear(self, overlay_id: str | None) -> bool:
        """Take the overlay down (only the named one, if a name is given)."""
        ov = self.overlay
        if ov is None or (overlay_id is not None and ov["id"] != overlay_id):
            return False
        self.overlay = None
        self.changed()
        return True

    def active_overlay(self, at: float | None = None) -> dict[str, Any] | None:
        at = _now() if at is None else at
        ov = self.overlay
        if ov is not None and ov["show_from"] <= at < ov["show_until"]:
            return ov
        return None

    def active_items(self, at: float | None = None) -> list[dict[str, Any]]:
        at = _now() if at is None else at
        return sorted(
            (
                it
                for it in self.items.values()
                if it["show_from"] <= at < it["show_until"]
                and _in_dayparts(list(it.get("dayparts", [])), str(it.get("zone", "UTC")), at)
            ),
            key=lambda it: (it["show_from"], it["id"]),
        )

    def state(self) -> dict[str, Any]:
        """What the page shows now."""
        now = _now()
        ov = self.active_overlay(now)
        items = self.active_items(now)
        for it in items:
            self.shown.setdefault(str(it["id"]), now)
        if ov is not None:
            self.shown.setdefault(str(ov["id"]), now)
        return {
            "board": self.name,
            "version": self.version,
            "now_ms": int(now * 1000),
            "overlay": None
            if ov is None
            else {
                "id": ov["id"],
                "text": ov.get("text", ""),
                "until_ms": int(ov["show_until"] * 1000),
            },
            "items": [
                {
                    "id": it["id"],
                    "text": it.get("text", ""),
                    "images": it.get("images", []),
                    "layout": it.get("layout", "default"),
                    "priority": it.get("priority", "normal"),
                }
                for it in items
            ],
            "rotate_s": ROTATE_S,
        }

    def changed(self) -> None:
        self.version += 1
        if not self.page_listeners:
            return
        event = b"event: state\ndata: " + json.dumps(self.state(), ensure_ascii=False).encode()
        event += b"\n\n"
        for q in list(self.page_listeners):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)


BOARDS: web.AppKey[list[Board]] = web.AppKey("boards")


def _board(request: web.Request) -> Board:
    boards = request.app[BOARDS]
    try:
        n = int(request.match_info.get("n", "0"))
        return boards[n]
    except (ValueError, IndexError):
        raise web.HTTPNotFound(text="no such board") from None


def _refuse(board: Board, status: int, reason: str) -> web.Response:
    board.rejected.append(reason)
    del board.rejected[:-100]
    return web.json_response({"error": reason}, status=status)


async def _signed(request: web.Request) -> tuple[Board, bytes] | web.Response:
    board = _board(request)
    body = await request.read()
    reason = board.check(request.method, request.rel_url.raw_path, body, request.headers)
    if reason is not None:
        return _refuse(board, 503 if reason.startswith("busy") else 401, reason)
    return board, body


async def _fault(board: Board) -> web.Response | None:
    if board.fault == "slow":
        await asyncio.sleep(30)
    if board.fault == "error":
        return web.json_response({"error": "display controller crashed"}, status=500)
    if board.fault == "busy":
        return web.json_response(
            {"error": "updating firmware"}, status=503, headers={"Retry-After": "7"}
        )
    if board.fault == "malformed":
        return web.Response(text="<html>OK</html>", content_type="text/html")
    return None


async def _items(request: web.Request) -> web.StreamResponse:
    signed = await _signed(request)
    if isinstance(signed, web.Response):
        return signed
    board, body = signed
    faulty = await _fault(board)
    if faulty is not None:
        return faulty
    try:
        doc = json.loads(body)
    except ValueError:
        return _refuse(board, 400, "the body is not JSON")
    if not isinstance(doc, dict) or doc.get("type") not in ("item", "overlay") or not doc.get("id"):
        return _refuse(board, 400, 'need a JSON object with "type" (item|overlay) and "id"')
    if not isinstance(doc.get("text"), str):
        return _refuse(board, 400, 'need "text"')
    if board.accept(doc) == "duplicate":
        return web.json_response({"error": "duplicate key", "id": doc["id"]}, status=409)
    return web.json_response({"id": doc["id"], "status": "added"})


async def _clear(request: web.Request) -> web.StreamResponse:
    signed = await _signed(request)
    if isinstance(signed, web.Response):
        return signed
    board, body = signed
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return _refuse(board, 400, "the body is not JSON")
    overlay_id = doc.get("id") if isinstance(doc, dict) else None
    cleared = board.clear(overlay_id if isinstance(overlay_id, str) else None)
    return web.json_response({"id": overlay_id, "cleared": cleared})


async def _status(request: web.Request) -> web.StreamResponse:
    signed = await _signed(request)
    if isinstance(signed, web.Response):
        return signed
    board, _ = signed
    ov = board.active_overlay()
    return web.json_response(
        {
            "ok": board.fault is None,
            "board": board.name,
            "items": len(board.active_items()),
            "overlay": None if ov is None else ov["id"],
            "uptime_s": round(time.monotonic() - request.app[STARTED], 1),
            "fault": board.fault,
        }
    )


async def _state(request: web.Request) -> web.StreamResponse:
    return web.json_response(_board(request).state(), dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


async def _page_events(request: web.Request) -> web.StreamResponse:
    board = _board(request)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(64)
    board.page_listeners.add(queue)
    try:
        await resp.write(b"event: state\ndata: " + _dumps(board.state()).encode() + b"\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), 15)
            except TimeoutError:
                event = b": keep-alive\n\n"
            if event is None:
                break
            await resp.write(event)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        board.page_listeners.discard(queue)
    return resp


async def _page(request: web.Request) -> web.StreamResponse:
    board = _board(request)
    base = f"/b/{board.n}"
    page = PAGE.replace("{{NAME}}", html.escape(board.name)).replace("{{BASE}}", base)
    return web.Response(text=page, content_type="text/html", charset="utf-8")


async def _stats(request: web.Request) -> web.StreamResponse:
    """Per board: when each item id was first shown (for benchmarks and tests)."""
    boards = request.app[BOARDS]
    wanted = request.query.get("id")
    if wanted is not None:
        shown = {str(b.n): b.shown.get(wanted) for b in boards}
        return web.json_response({"id": wanted, "shown": shown})
    return web.json_response({str(b.n): b.shown for b in boards})


STARTED: web.AppKey[float] = web.AppKey("started")


def board_app(boards: list[Board]) -> web.Application:
    """The web application serving ``boards`` under ``/b/{n}/`` (board 0 also at ``/``)."""
    app = web.Application()
    app[BOARDS] = boards
    app[STARTED] = time.monotonic()
    r = app.router
    r.add_get("/", _page)
    r.add_get("/stats", _stats)
    r.add_get("/b/{n}/", _page)
    r.add_get("/b/{n}/state", _state)
    r.add_get("/b/{n}/page-events", _page_events)
    r.add_post("/b/{n}/items", _items)
    r.add_post("/b/{n}/clear", _clear)
    r.add_get("/b/{n}/status", _status)

    async def shutdown(_: web.Application) -> None:
        for b in boards:
            for q in list(b.page_listeners):
                with contextlib.suppress(asyncio.QueueFull):
                    q.put_nowait(None)

    app.on_shutdown.append(shutdown)
    return app


# -- a pull board -------------------------------------------------------------------------------


def _sign(key: bytes, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    ts = str(int(_now()))
    nonce = secrets.token_hex(16)
    signed = f"{ts}\n{nonce}\n{method}\n{path}\n".encode() + body
    mac = hmac.new(key, signed, hashlib.sha256).hexdigest()
    return {"X-TCS-Timestamp": ts, "X-TCS-Nonce": nonce, "X-TCS-Signature": mac}


class PullBoard:
    """A board behind NAT: polls ``{feed}/boards/{id}/feed`` (ETag), listens to ``/events``, and
    posts proof of play to ``/played``. Feeds a ``Board`` so its page shows what it got.

    ``report_delay_s``: how long after an overlay arrives its proof of play is posted (thousands
    of boards should not all report in the same instant). ``session`` / ``requests``: aiohttp
    sessions to use for the event stream and for the other requests (a simulation of thousands
    of boards in one process shares them)."""

    def __init__(
        self,
        feed_url: str,
        board_id: UUID,
        key: bytes,
        board: Board | None = None,
        *,
        poll_interval_s: float = 300.0,
        events: bool = True,
        report_delay_s: float = 0.0,
        session: aiohttp.ClientSession | None = None,
        requests: aiohttp.ClientSession | None = None,
    ) -> None:
        self.feed_url = feed_url.rstrip("/")
        self.board_id = board_id
        self.key = key
        self.board = board or Board(0, key)
        self.poll_interval_s = poll_interval_s
        self.events = events
        self.report_delay_s = report_delay_s
        self._session = session
        self._own_session = session is None
        self._requests = requests  # for polls and reports, if not the stream's session
        self.etag: str | None = None
        self.polls = 0
        self.not_modified = 0
        self.reported: set[str] = set()
        self.overlay_received: dict[str, float] = {}
        self.connected = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def _url(self, what: str) -> str:
        return f"{self.feed_url}/boards/{self.board_id}/{what}"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def poll(self) -> int:
        """Fetch the feed once (If-None-Match with the last ETag); the HTTP status."""
        url = self._url("feed")
        headers = _sign(self.key, "GET", URL(url).raw_path)
        if self.etag:
            headers["If-None-Match"] = self.etag
        async with (self._requests or self.session).get(url, headers=headers) as resp:
            self.polls += 1
            if resp.status == 304:
                self.not_modified += 1
                return 304
            if resp.status != 200:
                log.warning("feed answered %s: %s", resp.status, await resp.text())
                return resp.status
            self.etag = resp.headers.get("ETag")
            doc = await resp.json()
        seen = {str(b.get("id")) for b in doc.get("items", [])}
        for item in doc.get("items", []):
            slot = str(item.get("slot") or item["id"])
            if self.board.items.get(slot, {}).get("id") != item["id"]:
                self.board.apply(item)
        for slot in [s for s, it in self.board.items.items() if str(it["id"]) not in seen]:
            del self.board.items[slot]
        ov = doc.get("overlay")
        if ov is None and self.board.overlay is not None:
            self.board.clear(None)
        elif ov is not None and (self.board.overlay or {}).get("id") != ov["id"]:
            self._overlay(ov)
        await self.report()
        return 200

    def _overlay(self, doc: dict[str, Any]) -> None:
        self.overlay_received.setdefault(str(doc["id"]), _now())
        self.board.apply(doc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_soon(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            await self.report()

    async def report(self) -> None:
        """Post proof of play for everything shown and not yet reported."""
        self.board.state()  # marks what is on screen now as shown
        fresh = [(k, t) for k, t in self.board.shown.items() if k not in self.reported]
        if not fresh:
            return
        plays = [{"id": k, "at": datetime.fromtimestamp(t, UTC).isoformat()} for k, t in fresh]
        body = json.dumps({"played": plays}).encode()
        url = self._url("played")
        headers = _sign(self.key, "POST", URL(url).raw_path, body)
        headers["Content-Type"] = "application/json"
        async with (self._requests or self.session).post(url, data=body, headers=headers) as resp:
            if resp.status == 200:
                self.reported.update(k for k, _ in fresh)
            else:
                log.warning("proof of play refused: %s %s", resp.status, await resp.text())

    async def listen(self) -> None:
        """Follow the event stream until it ends."""
        url = self._url("events")
        headers = _sign(self.key, "GET", URL(url).raw_path)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with self.session.get(url, headers=headers, timeout=timeout) as resp:
            if resp.status != 200:
                raise RuntimeError(f"event stream refused: {resp.status} {await resp.text()}")
            buffer = b""
            async for chunk in resp.content.iter_any():  # one read may hold several events
                buffer += chunk.replace(b"\r\n", b"\n")
                *events, buffer = buffer.split(b"\n\n")
                for raw in events:
                    event, data = "message", []
                    for line in raw.decode("utf-8").split("\n"):
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].strip())
                    if data:
                        await self._on_event(event, json.loads("\n".join(data)))

    async def _on_event(self, event: str, doc: dict[str, Any]) -> None:
        if event == "hello":
            self.connected.set()
            if doc.get("etag") != self.etag:
                await self.poll()
        elif event == "overlay":
            self._overlay(doc)
            loop = asyncio.get_running_loop()
            loop.call_later(self.report_delay_s, lambda: self._spawn(self._report_soon()))
        elif event == "clear":
            self.board.clear(doc.get("id"))
        elif event == "feed" and doc.get("etag") != self.etag:
            await self.poll()

    async def run(self) -> None:
        """Poll every ``poll_interval_s`` and listen to events (reconnecting) until cancelled."""
        if self.events:
            self._spawn(self._listen_forever())
        try:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    await self.poll()
                await asyncio.sleep(self.poll_interval_s)
        finally:
            await self.stop()

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self.listen()
            except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
                log.info("event stream lost (%s); reconnecting", exc)
            self.connected.clear()
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Stop listening and reporting; close the session if this board made it."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None


PAGE = """<!doctype html>
<html lang="vi">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{NAME}} · Bảng tin điện tử công cộng</title>
<style>
  html, body { margin: 0; height: 100%; font-family: "DejaVu Sans", "Noto Sans", sans-serif;
               background: #0b3d6b; color: #fff; }
  header { display: flex; justify-content: space-between; padding: 16px 32px;
           background: #072a4a; font-size: 28px; }
  main { padding: 48px; font-size: 56px; line-height: 1.25; }
  #item-text { white-space: pre-wrap; }
  #empty { opacity: .6; font-size: 36px; }
  #overlay { display: none; position: fixed; inset: 0; background: #c40000; color: #fff;
             padding: 48px; box-sizing: border-box; z-index: 10; flex-direction: column;
             justify-content: center; align-items: center; text-align: center; }
  #overlay.on { display: flex; }
  #overlay h1 { font-size: 72px; margin: 0 0 32px; letter-spacing: 2px; }
  #overlay-text { font-size: 64px; font-weight: bold; line-height: 1.2; white-space: pre-wrap; }
</style>
</head>
<body>
<header><span id="board-name">{{NAME}}</span><span id="clock"></span></header>
<main><div id="item-text"></div><div id="empty">Chưa có bản tin.</div></main>
<section id="overlay" role="alert" aria-live="assertive">
  <h1>⚠ THÔNG BÁO KHẨN CẤP</h1><div id="overlay-text"></div>
</section>
<script>
"use strict";
let state = null, skew = 0;
function render() {
  const now = Date.now() + skew;
  document.getElementById("clock").textContent =
    new Date(now).toLocaleTimeString("vi-VN", {timeZone: "Asia/Ho_Chi_Minh"});
  const ov = state && state.overlay && now < state.overlay.until_ms ? state.overlay : null;
  const box = document.getElementById("overlay");
  box.classList.toggle("on", !!ov);
  document.getElementById("overlay-text").textContent = ov ? ov.text : "";
  const items = state ? state.items : [];
  const empty = document.getElementById("empty");
  const text = document.getElementById("item-text");
  if (items.length) {
    const i = Math.floor(now / 1000 / state.rotate_s) % items.length;
    text.textContent = items[i].text; empty.style.display = "none";
  } else { text.textContent = ""; empty.style.display = ""; }
}
function take(s) { state = s; skew = s.now_ms - Date.now(); render(); }
async function poll() {
  try { const r = await fetch("{{BASE}}/state", {cache: "no-store"}); take(await r.json()); }
  catch (e) { /* the board is restarting: keep the last state */ }
}
let es = null;
function listen() {
  if (!window.EventSource) return;
  es = new EventSource("{{BASE}}/page-events");
  es.addEventListener("state", (ev) => take(JSON.parse(ev.data)));
}
listen(); poll();
setInterval(poll, 1000);     // short polling: the fallback, and rotation of the playlist
setInterval(render, 250);
</script>
</body>
</html>
"""


async def serve(
    boards: list[Board], host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Start serving ``boards``; the runner (to clean up) and the port."""
    runner = web.AppRunner(board_app(boards), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = [a for a in runner.addresses if isinstance(a, tuple)]
    return runner, int(bound[0][1]) if bound else port


BOARD_SERVICE_TYPE = "_tcs-board._tcp.local."


@contextlib.asynccontextmanager
async def advertise_board(
    board: Board,
    port: int,
    host: str = "127.0.0.1",
    *,
    model: str = "TCS-SIM-BOARD",
    interfaces: Sequence[str] | None = None,
) -> AsyncIterator[Advertisement]:
    """Announce ``board`` (served at ``http://host:port/b/{n}``) by zeroconf until the block
    ends: service type ``_tcs-board._tcp``, TXT records for kind, channel, address and model.
    The board's key is never advertised: the admin who accepts the board gives it."""
    from tcs_core.discovery import advertise  # zeroconf is only needed when advertising

    properties = {
        "kind": "board",
        "channel": "board",
        "transport": "board",
        "address": f"http://{{host}}:{{port}}/b/{board.n}",
        "model": model,
        "name": board.name,
    }
    async with advertise(
        board.name,
        BOARD_SERVICE_TYPE,
        port=port,
        host=host,
        properties=properties,
        interfaces=interfaces,
    ) as ad:
        yield ad


def main(argv: list[str] | None = None) -> None:
    """Command line: serve boards (push), or run one pull board with its page."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--boards", type=int, default=1, help="how many boards (paths /b/0 ...)")
    p.add_argument("--key-env", default="BOARD_KEY", help="environment variable with the key")
    p.add_argument("--name", default="", help="display name of board 0")
    p.add_argument("--pull", metavar="FEED_URL", help="run as a pull board on this feed")
    p.add_argument("--board-id", help="the device id of the pull board")
    p.add_argument("--poll", type=float, default=300.0, help="pull: poll interval in seconds")
    p.add_argument(
        "--advertise", action="store_true", help="announce the push boards by zeroconf (mDNS)"
    )
    args = p.parse_args(argv)
    secret = os.environ.get(args.key_env)
    if not secret:
        p.error(f"set the board key in the environment variable {args.key_env}")
    key = secret.encode()
    boards = [Board(n, key, args.name if n == 0 else "") for n in range(args.boards)]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def run() -> None:
        runner, port = await serve(boards, args.host, args.port)
        print(f"simulated board(s) on http://{args.host}:{port}/ (/b/0 ... /b/{len(boards) - 1})")
        try:
            if args.pull:
                if not args.board_id:
                    p.error("--pull needs --board-id")
                puller = PullBoard(
                    args.pull, UUID(args.board_id), key, boards[0], poll_interval_s=args.poll
                )
                await puller.run()
            elif args.advertise:
                async with contextlib.AsyncExitStack() as ads:
                    for board in boards:
                        ad = await ads.enter_async_context(advertise_board(board, port, args.host))
                        print(f"advertised {ad.service_name}")
                    await asyncio.Event().wait()
            else:
                await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
