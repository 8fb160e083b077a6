"""Receivers for what gateways send us: delivery reports (DLR) and inbound messages (MO).

``receiver_app(transport, app)`` is an aiohttp application with

- ``GET|POST /sms/dlr/{gateway}?key=…``: a delivery report. Kannel calls the ``dlr-url`` the
  transport gave it (``type=%d``: 1 delivered, 2 failed, 4 buffered, 8 SMSC accepted, 16 SMSC
  rejected); a JSON gateway posts ``{"status": "delivered", "id": "…", "error": "…"}``. The report
  is written to the journal (durable) before the answer, then recorded on the Dispatch
  (``SourceSystem.record_receipts``) in batches; reports not yet recorded after a crash are
  recorded on the next start.
- ``GET|POST /sms/mo/{gateway}``: an inbound message. Kannel's ``sms-service`` ``get-url`` is
  ``…/sms/mo/kannel?from=%p&to=%P&bin=%b&coding=%c&charset=%C&id=%I``; a JSON gateway posts
  ``{"from": …, "to": …, "text": …, "id": …}``. It becomes a Feedback item (``receive_feedback``,
  channel ``sms``), matched to an area by a keyword (first word) or else by the sender's
  subscription (the area of the ``sms_subscriber`` device with that number); the optional
  acknowledgement goes back through the same gateway.

A gateway is answered 200 only once nothing can be lost; 503 makes Kannel retry later.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl
from uuid import UUID

from aiohttp import web

from tcs_core.domain.dispatch import RECEIPT_STATUSES, DeliveryReceipt
from tcs_core.errors import TcsError, ValidationError
from tcs_core.transport import Outcome
from transports.sms.encoding import strip_diacritics
from transports.sms.gateways import KANNEL_DLR
from transports.sms.journal import Receipt
from transports.sms.phone import mask, normalise_vn
from transports.sms.transport import SmsTransport

if TYPE_CHECKING:
    from tcs_core.app import SourceSystem

__all__ = ["AppRecorder", "Inbound", "decode_mo", "parse_key", "receiver_app", "send_answer"]

log = logging.getLogger("transports.sms.receiver")
_MAX_BODY = 64 * 1024
RECORDER_KEY: web.AppKey[AppRecorder | None] = web.AppKey("sms_recorder", object)  # type: ignore[arg-type]


def parse_key(key: str) -> tuple[UUID, UUID] | None:
    """(dispatch id, device id) of a delivery key ``dispatchhex.devicehex``; None otherwise."""
    parts = key.split(".")
    if len(parts) < 2:
        return None
    try:
        return UUID(hex=parts[0]), UUID(hex=parts[1])
    except ValueError:
        return None


def decode_mo(data: bytes, coding: str, charset: str) -> str:
    """The text of an inbound message from Kannel's raw ``%b`` and its ``%c`` / ``%C``."""
    name = (charset or "").strip() or ("utf-16-be" if coding.strip() == "2" else "utf-8")
    try:
        return data.decode(name)
    except (LookupError, UnicodeDecodeError):
        return data.decode("utf-8", "replace")


@dataclass(frozen=True)
class Inbound:
    """An inbound message as taken in."""

    gateway: str
    sender: str  # E.164 when it is a valid Vietnamese mobile, else as the gateway gave it
    to: str
    text: str
    remote_id: str
    area: str | None
    feedback_id: UUID | None


def _keyword(word: str) -> str:
    return strip_diacritics(word).text.upper()


class AppRecorder:
    """Records delivery reports on Dispatches and inbound messages as Feedback, in one thread
    (the event store is synchronous; one thread keeps the writes of this receiver in order)."""

    def __init__(
        self,
        app: SourceSystem,
        transport: SmsTransport,
        *,
        keywords: Mapping[str, str] | None = None,
        subscriber_kind: str = "sms_subscriber",
    ) -> None:
        self.app = app
        self.journal = transport.journal
        self.keywords = {_keyword(k): v for k, v in (keywords or {}).items()}
        self.subscriber_kind = subscriber_kind
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sms-recorder")
        self.recorded = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the recorder's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        """Stop the thread (after the queued calls)."""
        self._pool.shutdown(wait=True)

    def flush(self) -> int:
        """Record every report the journal holds that no Dispatch has yet; how many."""
        total = 0
        while True:
            batch = self.journal.unrecorded()
            if not batch:
                return total
            by_dispatch: dict[UUID, list[tuple[Receipt, UUID]]] = {}
            done: list[int] = []
            for r in batch:
                ids = parse_key(r.key)
                if ids is None:  # a reply or acknowledgement: no Dispatch to tell
                    done.append(r.seq)
                    continue
                by_dispatch.setdefault(ids[0], []).append((r, ids[1]))
            for dispatch, rows in by_dispatch.items():
                receipts = [
                    DeliveryReceipt(
                        device, r.status, datetime.fromtimestamp(r.at, UTC), r.remote_id, r.detail
                    )
                    for r, device in rows
                ]
                try:
                    total += self.app.record_receipts(dispatch, receipts)
                except TcsError as exc:  # unknown dispatch or device: nothing will ever take it
                    log.warning("delivery reports for dispatch %s dropped: %s", dispatch, exc)
                done.extend(r.seq for r, _ in rows)
            self.journal.mark_recorded(done)
            self.recorded += total

    def area_of(self, sender: str, text: str) -> str | None:
        """A keyword (first word) names the area; else the sender's subscription does."""
        words = text.split()
        if words and self.keywords:
            code = self.keywords.get(_keyword(words[0]))
            if code is not None:
                return code
        return self.app.subscriber_area(sender, self.subscriber_kind)

    def take_in(
        self, gateway: str, sender: str, text: str, remote_id: str
    ) -> tuple[UUID, str | None]:
        """A Feedback item for the message (once per gateway message id)."""
        area = self.area_of(sender, text)
        fid = self.app.receive_feedback(
            text,
            channel="sms",
            sender_ref=sender,
            area=area,
            source_ref=f"sms:{gateway}:{remote_id}" if remote_id else None,
        )
        return fid, area


async def send_answer(
    transport: SmsTransport,
    app: SourceSystem,
    feedback_id: UUID,
    text: str,
    *,
    actor: str,
    gateway: str | None = None,
) -> Outcome:
    """Record the answer to an SMS feedback item (``answer_feedback``, authorised as usual) and
    send it to the citizen through the gateway the message came in on (once per item)."""
    await asyncio.to_thread(app.answer_feedback, feedback_id, text, actor)
    fb = app.feedback(feedback_id)
    source = (fb.source_ref or "").split(":")
    via = gateway or (source[1] if len(source) > 2 and source[0] == "sms" else None)
    return await transport.send(fb.sender_ref, text, key=f"answer.{feedback_id.hex}", gateway=via)


ReceiptCallback = Callable[[str, Receipt], Awaitable[None] | None]
InboundCallback = Callable[[Inbound], Awaitable[None] | None]


def receiver_app(
    transport: SmsTransport,
    app: SourceSystem | None = None,
    *,
    keywords: Mapping[str, str] | None = None,
    ack_text: str | None = None,
    on_receipt: ReceiptCallback | None = None,
    on_inbound: InboundCallback | None = None,
    flush_delay_s: float = 0.05,
) -> web.Application:
    """The receiver for ``transport``'s gateways. With ``app``, reports update Dispatches and
    inbound messages become Feedback; ``keywords`` maps a first word (any case, with or without
    diacritics) to an area code; ``ack_text`` (``{ref}``: the feedback's short reference) is sent
    back to the citizen through the gateway the message came from."""
    recorder = AppRecorder(app, transport, keywords=keywords) if app is not None else None
    wake = asyncio.Event()
    tasks: set[asyncio.Task[Any]] = set()

    async def flusher() -> None:
        while True:
            await wake.wait()
            await asyncio.sleep(flush_delay_s)  # gather a batch
            wake.clear()
            if recorder is None:
                continue
            try:
                await recorder.run(recorder.flush)
            except Exception:
                log.exception("could not record delivery reports; retrying in 1 s")
                await asyncio.sleep(1.0)
                wake.set()

    async def startup(web_app: web.Application) -> None:
        tasks.add(asyncio.create_task(flusher()))
        wake.set()  # reports left unrecorded by a crash

    async def cleanup(web_app: web.Application) -> None:
        if recorder is not None:
            try:
                await recorder.run(recorder.flush)
            except Exception:
                log.exception("could not record delivery reports at shutdown (kept in the journal)")
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if recorder is not None:
            recorder.close()

    async def fields(request: web.Request) -> dict[str, str]:
        out = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            body = await request.content.read(_MAX_BODY)
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    doc = json.loads(body)
                except ValueError:
                    raise web.HTTPBadRequest(text="body is not JSON") from None
                if not isinstance(doc, dict):
                    raise web.HTTPBadRequest(text="body is not a JSON object")
                out.update({k: "" if v is None else str(v) for k, v in doc.items()})
            elif ctype == "application/x-www-form-urlencoded":
                out.update(parse_qsl(body.decode("utf-8", "replace")))
        return out

    token = transport.receiver_token()  # resolved once: a missing variable fails here, loudly

    def gateway_named(request: web.Request) -> str:
        if token:
            given = str(request.query.get("t") or request.headers.get("X-Tcs-Token") or "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise web.HTTPForbidden(text="t: missing or wrong receiver token")
        name = request.match_info["gateway"]
        if name not in transport.gateways:
            raise web.HTTPNotFound(text=f"no gateway named {name!r}")
        return name

    async def dlr(request: web.Request) -> web.Response:
        name = gateway_named(request)
        f = await fields(request)
        key = f.get("key") or f.get("reference") or ""
        if not key:
            raise web.HTTPBadRequest(text="key: missing (the dlr-url carries it)")
        if "type" in f:
            try:
                status = KANNEL_DLR[int(f["type"])]
            except (ValueError, KeyError):
                raise web.HTTPBadRequest(
                    text=f"type: {f['type']!r} is not a Kannel DLR type"
                ) from None
            remote = f.get("smsc_id") or f.get("kannel_id", "")
            detail = f.get("reply", "")
        else:
            status = f.get("status", "").lower()
            if status not in RECEIPT_STATUSES:
                raise web.HTTPBadRequest(
                    text=f"status: {status!r} is not one of {', '.join(RECEIPT_STATUSES)}"
                )
            remote, detail = f.get("id", ""), f.get("error", "")
        try:
            seq = transport.journal.add_receipt(key, status, remote, detail[:300])
        except Exception:
            log.exception("could not store a delivery report for %s", key)
            raise web.HTTPServiceUnavailable(text="try again later") from None
        if on_receipt is not None:
            result = on_receipt(name, Receipt(seq, key, status, 0.0, remote, detail))
            if asyncio.iscoroutine(result):
                await result
        wake.set()
        return web.Response(text="ok")

    async def mo(request: web.Request) -> web.Response:
        name = gateway_named(request)
        f = await fields(request)
        if "bin" in f:  # Kannel: raw bytes, decoded with the message's own charset
            raw = dict(parse_qsl(request.query_string, encoding="latin-1")).get("bin", "")
            text = decode_mo(raw.encode("latin-1"), f.get("coding", "0"), f.get("charset", ""))
        else:
            text = f.get("text", "")
        sender_raw, remote = f.get("from", "").strip(), f.get("id", "")
        if not sender_raw:
            raise web.HTTPBadRequest(text="from: missing")
        try:
            sender = normalise_vn(sender_raw, "from")
        except ValidationError:
            sender = sender_raw  # a short code or a foreign number: kept as given
        if not text.strip():
            log.info("empty inbound message from %s ignored", mask(sender))
            return web.Response(text="ignored: empty message")
        fid: UUID | None = None
        area: str | None = None
        if recorder is not None:
            try:
                fid, area = await recorder.run(recorder.take_in, name, sender, text[:5000], remote)
            except ValidationError as exc:
                log.warning("inbound message from %s refused: %s", mask(sender), exc)
                return web.Response(status=400, text=str(exc))
            except Exception:
                log.exception("could not take in a message from %s", mask(sender))
                raise web.HTTPServiceUnavailable(text="try again later") from None
        item = Inbound(name, sender, f.get("to", ""), text, remote, area, fid)
        if on_inbound is not None:
            result = on_inbound(item)
            if asyncio.iscoroutine(result):
                await result
        if ack_text and fid is not None:
            ref = fid.hex[:8].upper()
            task = asyncio.create_task(
                transport.send(sender, ack_text.format(ref=ref), key=f"ack.{fid.hex}", gateway=name)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return web.Response(text="")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "gateways": sorted(transport.gateways)})

    web_app = web.Application(client_max_size=_MAX_BODY)
    web_app[RECORDER_KEY] = recorder
    web_app.on_startup.append(startup)
    web_app.on_cleanup.append(cleanup)
    for method in ("GET", "POST"):
        web_app.router.add_route(method, "/sms/dlr/{gateway}", dlr)
        web_app.router.add_route(method, "/sms/mo/{gateway}", mo)
    web_app.router.add_get("/sms/health", health)
    return web_app
