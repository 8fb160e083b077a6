"""``BoardTransport``: public electronic boards (bảng tin điện tử công cộng) over HTTP.

One transport object serves both kinds of board; each device says which it is in its settings:

- ``mode = push`` (the default when the address is an ``http(s)://`` URL): the board is reachable;
  items are POSTed to ``{address}/items`` as signed JSON and the board's answer is the outcome.
- ``mode = pull`` (the default for any other address, e.g. ``pull:``): the board is behind NAT;
  items go into its feed (``feed_app``), emergencies also down its event stream, and the outcome
  is closed by the board's proof of play (see ``play_wait_s``).

Device settings: ``key`` (``env:NAME``, required: the board's HMAC key), ``mode``,
``poll_interval_s`` (pull boards, default 300), ``dayparts`` (``"06:00-11:00,13:30-22:00"`` in the
board's zone, default all day), ``zone`` (default ``Asia/Ho_Chi_Minh``).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import aiohttp
from yarl import URL

from tcs_core.domain.values import BoardContent, Channel, ContentVariant, Priority
from tcs_core.errors import NotFound, ValidationError
from tcs_core.transport import (
    Capability,
    DeliveryContext,
    DeviceTarget,
    Health,
    Limits,
    Mode,
    Outcome,
    resolve_secret,
)
from transports.board.feed import FeedBoard
from transports.board.protocol import (
    PROTOCOL_VERSION,
    iso,
    parse_key,
    signed_headers,
    slot_of,
)

if TYPE_CHECKING:
    from tcs_core.app import SourceSystem

__all__ = [
    "AppSettings",
    "BoardMode",
    "BoardTransport",
    "PlayCallback",
    "PlayReport",
    "SettingsSource",
    "build_payload",
]

log = logging.getLogger("transports.board")

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"
DEFAULT_POLL_INTERVAL_S = 300.0
_DAYPART = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")
_MAX_ANSWER = 64 * 1024


class BoardMode(enum.StrEnum):
    """How a board gets its items: the province pushes them, or the board pulls its feed."""

    PUSH = "push"
    PULL = "pull"


@dataclass(frozen=True)
class PlayReport:
    """A board's proof of play for one item."""

    board_id: UUID
    key: str
    dispatch_id: UUID
    at: datetime
    confirmed: bool  # a delivery was waiting for this report and is now closed as delivered


SettingsSource = Callable[[UUID], Mapping[str, str] | None]
PlayCallback = Callable[[PlayReport], Awaitable[None] | None]


class _ConfigError(Exception):
    """A board's settings are unusable: a final failure a technician must fix."""


class AppSettings:
    """Device settings read from a ``SourceSystem`` (cached for ``ttl_s``).

    The scheduler hands transports a ``DeviceTarget`` per delivery; when its ``settings`` are empty
    the transport asks this source, and the feed server asks it for boards that poll before any
    delivery. ``warm()`` loads every device of the transport at once (call it before a big
    fan-out, or let ``BoardTransport.open`` do it).
    """

    def __init__(self, app: SourceSystem, ttl_s: float = 300.0) -> None:
        self.app = app
        self.ttl_s = ttl_s
        self._cache: dict[UUID, tuple[float, dict[str, str] | None]] = {}

    def __call__(self, device_id: UUID) -> Mapping[str, str] | None:
        now = time.monotonic()
        hit = self._cache.get(device_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        try:
            settings: dict[str, str] | None = dict(self.app.device(device_id).settings)
        except NotFound:
            settings = None
        self._cache[device_id] = (now, settings)
        return settings

    def warm(self, transport: str = "board") -> int:
        """Read the settings of every device of ``transport``; the number read."""
        n = 0
        for view in self.app.devices.all():
            if view.transport == transport:
                self._cache.pop(view.device_id, None)
                self(view.device_id)
                n += 1
        return n

    def forget(self, device_id: UUID | None = None) -> None:
        """Drop cached settings (of one device, or all) after a device was reconfigured."""
        if device_id is None:
            self._cache.clear()
        else:
            self._cache.pop(device_id, None)


@functools.lru_cache(maxsize=1024)
def _parse_dayparts(raw: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in raw.split(",") if p.strip())
    bad = [p for p in parts if not _DAYPART.fullmatch(p)]
    if bad:
        raise _ConfigError(f"bad dayparts setting {bad[0]!r}: give HH:MM-HH:MM[,HH:MM-HH:MM...]")
    return parts


@functools.lru_cache(maxsize=256)
def _common(
    content: BoardContent,
    context: DeliveryContext,
    zone: str,
    dayparts: tuple[str, ...],
    resumed: bool,
) -> tuple[dict[str, Any], str]:
    """The fields every board of one delivery shares, and their JSON (without braces): built
    once per fan-out, not once per board."""
    start = context.occurrence
    end = start + timedelta(seconds=context.duration_s)
    if resumed:
        end = max(end, context.deadline)
    emergency = context.priority is Priority.EMERGENCY
    doc: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "type": "overlay" if emergency else "item",
        "dispatch_id": str(context.dispatch_id),
        "broadcast_id": str(context.broadcast_id),
        "priority": context.priority.value,
        "text": content.text,
        "images": list(content.images),
        "layout": content.layout,
        "duration_s": context.duration_s,
        "zone": zone,
    }
    if emergency:
        doc["starts_at"] = iso(start)
        doc["ends_at"] = iso(end)
    else:
        doc["valid_from"] = iso(start)
        doc["valid_until"] = iso(end)
        doc["dayparts"] = list(dayparts)
    return doc, json.dumps(doc, ensure_ascii=False, separators=(",", ":"))[1:-1]


_string: Callable[[str], str] = json.encoder.encode_basestring  # C, no ASCII escaping


def _play_of(key: str) -> int:
    """The play number of an idempotency key (``dispatch.device[.play]``; 1 if absent)."""
    if key.count(".") != 2:
        return 1
    try:
        return int(key.rpartition(".")[2])
    except ValueError:
        return 1


def _item(
    content: BoardContent,
    key: str,
    context: DeliveryContext,
    settings: Mapping[str, str],
    now: datetime | None = None,
) -> tuple[dict[str, Any], bytes]:
    dayparts = _parse_dayparts(settings.get("dayparts", "").strip())
    zone = settings.get("zone", DEFAULT_ZONE)
    common, fragment = _common(content, context, zone, dayparts, _play_of(key) > 1)
    slot = slot_of(key)
    sent = iso(now or datetime.now(UTC))
    doc = {**common, "id": key, "slot": slot, "sent_at": sent}
    own = f'{{"id":{_string(key)},"slot":{_string(slot)},"sent_at":"{sent}",'
    return doc, f"{own}{fragment}}}".encode()


def build_payload(
    content: BoardContent,
    key: str,
    context: DeliveryContext,
    settings: Mapping[str, str],
    now: datetime | None = None,
) -> dict[str, Any]:
    """The JSON document for one item: a playlist item, or an emergency overlay.

    The window comes from the delivery context: from the occurrence for ``duration_s`` (a resumed
    play, whose key ends in ``.N``, may run until the item's deadline). Emergencies become an
    overlay that takes the screen at once and ends by itself at ``ends_at``.
    """
    return _item(content, key, context, settings, now)[0]


def _reason_of(body: bytes) -> str:
    """The board's own words from an error answer: its JSON ``error``/``reason``, or the text."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for name in ("error", "reason", "detail", "message"):
            if isinstance(doc.get(name), str) and doc[name]:
                return str(doc[name])[:300]
    text = body.decode("utf-8", "replace").strip()
    return text[:200] or "no reason given"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class BoardTransport:
    """Electronic boards over HTTP: signed pushes, pull feeds with SSE, proof of play."""

    name = "board"
    channels = frozenset({Channel.BOARD})
    capabilities = frozenset({Capability.TEXT, Capability.IMAGE})
    #: Boards keep playlists with validity windows and report what they played. ``mode_of``
    #: tells, per device, whether the engine's call is the delivery (push) or not (pull).
    mode = Mode.AHEAD
    #: The DNS-SD service type push boards advertise on the LAN (``tcs_core.discovery`` reads
    #: it; a discovered board is registered only when an admin accepts it: docs/discovery.md).
    discovery_service_types = frozenset({"_tcs-board._tcp.local."})

    def __init__(
        self,
        *,
        settings: SettingsSource | None = None,
        on_played: PlayCallback | None = None,
        limits: Limits | None = None,
        push_timeout_s: float = 5.0,
        play_wait_s: float = 5.0,
        max_connections: int = 512,
        offline_factor: float = 1.1,
        environ: Mapping[str, str] | None = None,
        name: str = "board",
    ) -> None:
        """``settings``: where to find a device's settings when the ``DeviceTarget`` carries none
        (e.g. ``AppSettings(app)``). ``on_played``: called (or awaited) with each proof of play.
        ``play_wait_s``: how long ``deliver`` waits for a pull board's proof of play before
        answering "retryable" (0: "delivered" as soon as the item is in the feed)."""
        if push_timeout_s <= 0 or play_wait_s < 0 or max_connections < 1 or offline_factor < 1:
            raise ValidationError(
                "board",
                "need push_timeout_s > 0, play_wait_s >= 0, max_connections >= 1 "
                "and offline_factor >= 1",
            )
        self.name = name
        self.limits = limits or Limits(
            concurrency=10_000, timeout_s=max(push_timeout_s, play_wait_s) + 5.0
        )
        if self.limits.timeout_s <= max(push_timeout_s, play_wait_s):
            raise ValidationError(
                "limits.timeout_s",
                "must exceed push_timeout_s and play_wait_s, so the board's "
                "own reasons reach the outcome instead of a bare timeout",
            )
        self.settings_source = settings
        self.on_played = on_played
        self.push_timeout_s = push_timeout_s
        self.play_wait_s = play_wait_s
        self.max_connections = max_connections
        self.offline_factor = offline_factor
        self.environ = environ
        self._session: aiohttp.ClientSession | None = None
        self._known: dict[UUID, Mapping[str, str]] = {}
        self._boards: dict[UUID, FeedBoard] = {}
        self._on_screen: dict[UUID, tuple[str, datetime]] = {}  # push boards: overlay id, end
        self._last_ok: dict[UUID, float] = {}  # push boards: last accepted request
        self._next_slot = 0.0  # pacing to limits.rate_per_s (monotonic time of the next slot)

    # -- life cycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the HTTP session; warm the settings source if it can be warmed."""
        self._ensure_session()
        warm = getattr(self.settings_source, "warm", None)
        if callable(warm):
            try:
                await asyncio.to_thread(warm, self.name)
            except Exception:  # only a cache: lookups still happen one by one
                log.warning("could not preload the boards' settings", exc_info=True)

    async def close(self) -> None:
        """Close the HTTP session and end the feed's event streams."""
        self.close_streams()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.max_connections, limit_per_host=0, keepalive_timeout=30.0
                ),
                timeout=aiohttp.ClientTimeout(total=self.push_timeout_s),
            )
        return self._session

    def close_streams(self) -> None:
        """End every open event stream of the feed (its boards reconnect and resynchronise)."""
        for board in self._boards.values():
            board.close_streams()

    def keepalive(self) -> None:
        """Send a keep-alive comment down every open event stream."""
        for board in self._boards.values():
            if board.subscribers:
                board.keepalive()

    # -- settings ----------------------------------------------------------------------------

    def add_board(self, device_id: UUID, settings: Mapping[str, str]) -> None:
        """Tell the transport a board's settings (for boards that poll before any delivery, or
        when no settings source is given)."""
        self._known[device_id] = dict(settings)

    def _settings_of(
        self, device_id: UUID, given: Mapping[str, str] | None = None
    ) -> Mapping[str, str]:
        if given:
            self._known[device_id] = given
            return given
        known = self._known.get(device_id)
        if known is not None:
            return known
        if self.settings_source is not None:
            found = self.settings_source(device_id)
            if found is not None:
                return found
        raise _ConfigError(
            f"no settings for board {device_id}: register it with settings key=env:NAME "
            "(and mode=push|pull), and give the transport a settings source or add_board()"
        )

    def _key(self, settings: Mapping[str, str]) -> bytes:
        ref = settings.get("key")
        if not ref:
            raise _ConfigError("the board has no 'key' setting (give key=env:NAME)")
        try:
            return resolve_secret(ref, self.environ).encode()
        except ValidationError as exc:
            raise _ConfigError(f"board key: {exc}") from None

    @staticmethod
    def _mode(address: str, settings: Mapping[str, str]) -> BoardMode:
        value = settings.get("mode")
        if value:
            try:
                return BoardMode(value.strip().lower())
            except ValueError:
                raise _ConfigError(f"bad mode setting {value!r}: give push or pull") from None
        return BoardMode.PUSH if address.startswith(("http://", "https://")) else BoardMode.PULL

    def mode_of(self, device: DeviceTarget) -> Mode:
        """``live`` for a push board (the engine's call delivers), ``ahead`` for a pull board."""
        try:
            settings = self._settings_of(device.device_id, device.settings)
            mode = self._mode(device.address, settings)
        except _ConfigError:
            mode = self._mode(device.address, {})
        return Mode.LIVE if mode is BoardMode.PUSH else Mode.AHEAD

    @staticmethod
    def _poll_interval(settings: Mapping[str, str]) -> float:
        try:
            value = float(settings.get("poll_interval_s", DEFAULT_POLL_INTERVAL_S))
        except ValueError:
            raise _ConfigError("bad poll_interval_s setting: give seconds") from None
        if value <= 0:
            raise _ConfigError("poll_interval_s must be positive")
        return value

    # -- the contract ------------------------------------------------------------------------

    async def deliver(
        self, device: DeviceTarget, content: ContentVariant, key: str, context: DeliveryContext
    ) -> Outcome:
        """Push the item to the board, or put it into the board's feed; never raises."""
        try:
            if not isinstance(content, BoardContent):
                return Outcome.failed(
                    f"the board transport carries board content, not {type(content).__name__}"
                )
            settings = self._settings_of(device.device_id, device.settings)
            mode = self._mode(device.address, settings)
            secret = self._key(settings)  # a pull board needs it too, to fetch its feed
            payload, body = _item(content, key, context, settings)
            paced = await self._pace(device)
            if paced is not None:
                return paced
            if mode is BoardMode.PUSH:
                return await self._push(device, secret, payload, body)
            return await self._to_feed(device, settings, payload, body)
        except _ConfigError as exc:
            return Outcome.failed(f"board {device.name}: {exc}")
        except Exception as exc:  # outcomes are values: nothing escapes
            log.exception("deliver to board %s failed", device.name)
            return Outcome.failed(f"board transport error: {type(exc).__name__}: {exc}")

    async def _pace(self, device: DeviceTarget) -> Outcome | None:
        """Space deliveries ``1 / limits.rate_per_s`` apart; retryable if the wait is too long."""
        rate = self.limits.rate_per_s
        if rate is None:
            return None
        now = time.monotonic()
        slot = max(now, self._next_slot)
        wait = slot - now
        if wait > self.push_timeout_s:
            return Outcome.retryable(
                f"board {device.name}: the transport's rate limit of {rate:g}/s is reached "
                f"(next slot in {wait:.1f} s)",
                wait,
            )
        self._next_slot = slot + 1.0 / rate
        if wait > 0:
            await asyncio.sleep(wait)
        return None

    async def preempt(self, device: DeviceTarget) -> Outcome:
        """Clear the emergency overlay that is on the board's screen (the playlist goes on).

        Only an overlay that was on screen before is cleared, by its id: the overlay of an
        emergency delivered at the same moment (the item that caused the preemption) is never
        removed by it, whatever order the engine's two calls run in. Push boards: the overlay
        counts as on screen once the board accepted it. Pull boards: an overlay published in the
        current turn of the event loop is kept.
        """
        try:
            settings = self._settings_of(device.device_id, device.settings)
            mode = self._mode(device.address, settings)
            if mode is BoardMode.PULL:
                board = self._boards.get(device.device_id)
                overlay = board.overlay if board is not None else None
                if board is None or overlay is None:
                    return Outcome.delivered(reason="no overlay on screen")
                if overlay["id"] in board.fresh:
                    return Outcome.delivered(reason="the overlay on screen is the new emergency")
                cleared = board.clear(str(overlay["id"]))
                return Outcome.delivered(remote_id=cleared, reason="overlay cleared")
            shown = self._on_screen.get(device.device_id)
            if shown is None or shown[1] <= datetime.now(UTC):
                return Outcome.delivered(reason="no overlay on screen")
            secret = self._key(settings)
            body = json.dumps({"v": PROTOCOL_VERSION, "id": shown[0]}).encode()
            outcome = await self._post(device, secret, "clear", body, shown[0])
            if (
                outcome.status.value == "delivered"
                and self._on_screen.get(device.device_id) == shown
            ):
                del self._on_screen[device.device_id]
            return outcome
        except _ConfigError as exc:
            return Outcome.failed(f"board {device.name}: {exc}")
        except Exception as exc:
            log.exception("preempt on board %s failed", device.name)
            return Outcome.failed(f"board transport error: {type(exc).__name__}: {exc}")

    async def clear_overlay(self, device: DeviceTarget, overlay_id: str | None = None) -> Outcome:
        """An operator's "take the overlay down": clears ``overlay_id`` or whatever is shown."""
        try:
            settings = self._settings_of(device.device_id, device.settings)
            if self._mode(device.address, settings) is BoardMode.PULL:
                board = self._boards.get(device.device_id)
                cleared = board.clear(overlay_id) if board is not None else None
                return Outcome.delivered(
                    remote_id=cleared, reason="overlay cleared" if cleared else "no overlay"
                )
            secret = self._key(settings)
            body = json.dumps({"v": PROTOCOL_VERSION, "id": overlay_id}).encode()
            outcome = await self._post(device, secret, "clear", body, overlay_id or "")
            if outcome.status.value == "delivered":
                self._on_screen.pop(device.device_id, None)
            return outcome
        except _ConfigError as exc:
            return Outcome.failed(f"board {device.name}: {exc}")
        except Exception as exc:
            log.exception("clear on board %s failed", device.name)
            return Outcome.failed(f"board transport error: {type(exc).__name__}: {exc}")

    async def probe(self, device: DeviceTarget) -> Health:
        """Push boards: ``GET {address}/status``. Pull boards: the last poll against the offline
        threshold (poll interval × ``offline_factor``), or an open event stream."""
        try:
            settings = self._settings_of(device.device_id, device.settings)
            if self._mode(device.address, settings) is BoardMode.PULL:
                return self._pull_health(device, settings)
            return await self._push_health(device, self._key(settings))
        except _ConfigError as exc:
            return Health(False, f"board {device.name}: {exc}")
        except Exception as exc:
            log.exception("probe of board %s failed", device.name)
            return Health(False, f"board transport error: {type(exc).__name__}: {exc}")

    # -- push --------------------------------------------------------------------------------

    async def _push(
        self, device: DeviceTarget, secret: bytes, payload: dict[str, Any], body: bytes
    ) -> Outcome:
        outcome = await self._post(device, secret, "items", body, payload["id"])
        if outcome.status.value == "delivered" and payload["type"] == "overlay":
            ends = datetime.fromisoformat(payload["ends_at"].replace("Z", "+00:00"))
            self._on_screen[device.device_id] = (payload["id"], ends)
        return outcome

    async def _post(
        self, device: DeviceTarget, secret: bytes, endpoint: str, body: bytes, key: str
    ) -> Outcome:
        address = device.address.rstrip("/")
        url = URL(f"{address}/{endpoint}")
        headers = signed_headers(secret, "POST", url.raw_path, body)
        headers["Content-Type"] = "application/json; charset=utf-8"
        if key:
            headers["Idempotency-Key"] = key
        session = self._ensure_session()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                answer = await resp.content.read(_MAX_ANSWER)
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except TimeoutError:
            return Outcome.retryable(
                f"no answer from {address} within {self.push_timeout_s:g} s (board slow or hung)"
            )
        except aiohttp.ClientConnectorError as exc:
            why = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc)
            return Outcome.retryable(f"cannot connect to {address}: {why}")
        except aiohttp.ClientError as exc:
            return Outcome.retryable(
                f"HTTP exchange with {address} failed: {type(exc).__name__}: {exc}"
            )
        except OSError as exc:
            return Outcome.retryable(f"network error talking to {address}: {exc}")
        self._last_ok[device.device_id] = time.time()
        return self._outcome(address, key, status, retry_after, answer)

    @staticmethod
    def _outcome(
        address: str, key: str, status: int, retry_after: str | None, answer: bytes
    ) -> Outcome:
        if 200 <= status < 300:
            try:
                doc = json.loads(answer)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                snippet = answer[:80].decode("utf-8", "replace")
                return Outcome.failed(
                    f"malformed response from {address}: HTTP {status} with a body that is not "
                    f"a JSON object ({snippet!r})"
                )
            remote = doc.get("id")
            return Outcome.delivered(remote_id=str(remote) if remote else key)
        reason = _reason_of(answer)
        if status in (401, 403):
            return Outcome.failed(f"signature rejected: {reason} (HTTP {status} from {address})")
        if status == 409:
            return Outcome.delivered(
                remote_id=key, reason=f"duplicate key, the board already has it ({reason})"
            )
        if status in (429, 503):
            return Outcome.retryable(
                f"board busy: HTTP {status} from {address}: {reason}", _retry_after(retry_after)
            )
        if status >= 500:
            return Outcome.retryable(f"board error: HTTP {status} from {address}: {reason}")
        if 400 <= status < 500:
            return Outcome.failed(f"board refused the item: HTTP {status} from {address}: {reason}")
        return Outcome.failed(f"unexpected HTTP {status} from {address}")

    async def _push_health(self, device: DeviceTarget, secret: bytes) -> Health:
        address = device.address.rstrip("/")
        url = URL(f"{address}/status")
        headers = signed_headers(secret, "GET", url.raw_path)
        session = self._ensure_session()
        now = datetime.now(UTC)
        try:
            async with session.get(url, headers=headers) as resp:
                answer = await resp.content.read(_MAX_ANSWER)
                status = resp.status
        except TimeoutError:
            return Health(False, f"no answer from {address} within {self.push_timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            why = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc)
            return Health(False, f"cannot connect to {address}: {why}")
        except (aiohttp.ClientError, OSError) as exc:
            return Health(False, f"status request to {address} failed: {exc}")
        if status in (401, 403):
            return Health(False, f"signature rejected: {_reason_of(answer)}", now)
        if not 200 <= status < 300:
            return Health(False, f"HTTP {status} from {address}: {_reason_of(answer)}", now)
        try:
            doc = json.loads(answer)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return Health(False, f"malformed status from {address}", now)
        self._last_ok[device.device_id] = time.time()
        ok = doc.get("ok", True) is not False
        detail = ", ".join(
            f"{k}={doc[k]}" for k in ("items", "overlay", "uptime_s", "fault") if k in doc
        )
        return Health(ok, f"status: {detail or 'ok'}", now)

    # -- pull --------------------------------------------------------------------------------

    def feed_board(self, board_id: UUID) -> tuple[FeedBoard, bytes] | str:
        """The feed state and key of a board that calls in, or why it cannot be served.

        The settings source, when there is one, is asked first: a rotated key takes effect
        without waiting for the next delivery to that board."""
        try:
            found = self.settings_source(board_id) if self.settings_source is not None else None
            settings = found if found is not None else self._settings_of(board_id)
            key = self._key(settings)
            board = self._board(board_id, settings)
        except _ConfigError as exc:
            text = str(exc)
            return f"unknown board {board_id}" if text.startswith("no settings") else text
        return board, key

    def _board(self, board_id: UUID, settings: Mapping[str, str]) -> FeedBoard:
        board = self._boards.get(board_id)
        if board is None:
            board = self._boards[board_id] = FeedBoard(board_id, self._poll_interval(settings))
        return board

    def feed_of(self, board_id: UUID) -> FeedBoard | None:
        """The feed state of a pull board (None until it polled or got an item)."""
        return self._boards.get(board_id)

    async def _to_feed(
        self,
        device: DeviceTarget,
        settings: Mapping[str, str],
        payload: dict[str, Any],
        body: bytes,
    ) -> Outcome:
        board = self._board(device.device_id, settings)
        key = str(payload["id"])
        board.publish(payload, body)
        if payload["type"] == "overlay":
            # The engine issues a preempt together with the emergency that causes it; whichever
            # runs first, that preempt must not take this overlay down (see ``preempt``).
            board.fresh.add(key)
            asyncio.get_running_loop().call_soon(board.fresh.discard, key)
        if self.play_wait_s <= 0:
            return Outcome.delivered(remote_id=key, reason="in the board's feed")
        played = board.played.get(key)
        if played is not None:
            return Outcome.delivered(remote_id=key, reason=f"played at {iso(played)}")
        future: asyncio.Future[datetime] = asyncio.get_running_loop().create_future()
        board.waiters.setdefault(key, []).append(future)
        try:
            async with asyncio.timeout(self.play_wait_s):
                at = await future
        except TimeoutError:
            return self._not_played(device, board)
        finally:
            waiting = board.waiters.get(key)
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del board.waiters[key]
        return Outcome.delivered(remote_id=key, reason=f"played at {iso(at)}")

    def _not_played(self, device: DeviceTarget, board: FeedBoard) -> Outcome:
        interval = board.poll_interval_s
        threshold = interval * self.offline_factor
        if board.subscribers:
            return Outcome.retryable(
                f"board {device.name} is listening but has not reported playing the item "
                f"within {self.play_wait_s:g} s"
            )
        if board.last_seen is None:
            return Outcome.retryable(
                f"board {device.name} has the item in its feed but has never polled it "
                f"(a pull board polls every {interval:g} s)",
                interval,
            )
        age = time.time() - board.last_seen
        if age > threshold:
            return Outcome.retryable(
                f"board {device.name} is offline: last poll {age:.0f} s ago (offline after "
                f"{threshold:g} s); the item waits in its feed",
                interval,
            )
        return Outcome.retryable(
            f"board {device.name} has the item in its feed; no proof of play yet "
            f"(last poll {age:.0f} s ago, polls every {interval:g} s)",
            max(1.0, interval - age),
        )

    def _pull_health(self, device: DeviceTarget, settings: Mapping[str, str]) -> Health:
        interval = self._poll_interval(settings)
        threshold = interval * self.offline_factor
        board = self._boards.get(device.device_id)
        seen = board.last_seen if board is not None else None
        at = datetime.fromtimestamp(seen, UTC) if seen is not None else None
        if board is not None and board.subscribers:
            return Health(True, "event stream open", at)
        if seen is None:
            return Health(False, f"never polled its feed (a pull board polls every {interval:g} s)")
        age = time.time() - seen
        if age > threshold:
            return Health(
                False, f"offline: last poll {age:.0f} s ago (threshold {threshold:g} s)", at
            )
        return Health(True, f"last poll {age:.0f} s ago (threshold {threshold:g} s)", at)

    async def record_plays(
        self, board: FeedBoard, plays: Iterable[tuple[str, datetime]]
    ) -> tuple[int, str] | None:
        """Proof of play from a board: close waiting deliveries, tell ``on_played``. Returns
        ``(HTTP status, reason)`` when the report must be refused or retried."""
        parsed = []
        for key, at in plays:
            info = parse_key(key)
            if info is None:
                return 400, f"{key!r:.80} is not an item id of this feed"
            if info[1] != board.board_id:
                return 400, f"item {key} is for board {info[1]}, not {board.board_id}"
            parsed.append((key, info[0], at))
        for key, dispatch, at in parsed:
            confirmed = board.mark_played(key, at)
            if self.on_played is None:
                continue
            report = PlayReport(board.board_id, key, dispatch, at, confirmed)
            try:
                result = self.on_played(report)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_played failed for %s", key)
                return 503, "the province could not record the play; report it again later"
        return None
