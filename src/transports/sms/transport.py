"""``SmsTransport``: SMS to subscribers through Kannel or a generic HTTP/JSON gateway.

Each subscriber is a Device of kind ``sms_subscriber`` whose address is its phone number
(``+84…``); a device may name its gateway in its settings (``gateway = "viettel"``), otherwise the
first configured gateway serves it. For every (dispatch, subscriber) the journal holds one row,
written before the gateway is asked: a retry, a resumed dispatch or a restarted process never
sends a second message for a key the gateway took (see ``docs/sms.md``, "Idempotency").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes
from uuid import UUID

import aiohttp

from tcs_core.domain.values import Channel, ContentVariant, SmsContent
from tcs_core.errors import ValidationError
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
from transports.sms.encoding import Coding, Encoded, encode, strip_diacritics
from transports.sms.gateways import (
    Answer,
    AnswerKind,
    Gateway,
    HttpJsonGateway,
    KannelGateway,
    gateway_from_mapping,
    json_answer,
    kannel_answer,
)
from transports.sms.journal import Entry, Journal
from transports.sms.phone import format_number, mask, normalise_vn

__all__ = ["SmsTransport", "base_key", "prepare_text"]

log = logging.getLogger("transports.sms")
_MAX_ANSWER = 64 * 1024
_POLL_S = 0.05


def base_key(key: str) -> str:
    """``dispatch.device`` of an idempotency key: a resumed play (``….2``) of an SMS is the same
    message, never a second one."""
    parts = key.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else key


def prepare_text(text: str, gateway: Gateway) -> tuple[Encoded, str]:
    """The encoded text for ``gateway`` and the loss note when diacritics were stripped."""
    return _prepare(text, gateway.strip_diacritics)


@functools.lru_cache(maxsize=512)  # a dispatch sends one text to every subscriber
def _prepare(text: str, strip: bool) -> tuple[Encoded, str]:
    if strip:
        stripped = strip_diacritics(text)
        return encode(stripped.text, Coding.GSM7), stripped.loss
    return encode(text), ""


class _Pace:
    """Slots ``1 / rate`` seconds apart (a burst of one): the gateway's messages per second."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = 0.0

    def claim(self, budget: float) -> float | None:
        """Seconds to wait for the next slot, or None if that is beyond ``budget``."""
        now = time.monotonic()
        start = max(now, self.next)
        if start - now > budget:
            return None
        self.next = start + self.interval
        return start - now


class _GroupCommit:
    """Journal writes of one event-loop turn in one transaction: a fan-out's claims (and answers)
    commit together instead of one transaction per message."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.claims: list[tuple[tuple[str, str, str, str, str], asyncio.Future[bool]]] = []
        self.answers: list[tuple[tuple[str, str, str, str], asyncio.Future[bool]]] = []
        self.scheduled = False

    def _add(self) -> asyncio.Future[bool]:
        loop = asyncio.get_running_loop()
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush)
        return loop.create_future()

    async def claim(self, key: str, dispatch: str, device: str, number: str, gateway: str) -> bool:
        """Write ``key`` as pending; False if the journal already had it (untouched)."""
        future = self._add()
        self.claims.append(((key, dispatch, device, number, gateway), future))
        return await future

    async def answer(self, key: str, state: str, remote_id: str = "", reason: str = "") -> None:
        """Record the gateway's answer for ``key``."""
        future = self._add()
        self.answers.append(((key, state, remote_id, reason), future))
        await future

    def _flush(self) -> None:
        self.scheduled = False
        claims, answers = self.claims, self.answers
        self.claims, self.answers = [], []
        try:
            fresh = self.journal.apply([c for c, _ in claims], [a for a, _ in answers])
        except Exception as exc:  # every writer of the batch hears of it
            for _, future in (*claims, *answers):
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), new in zip(claims, fresh, strict=True):
            if not future.done():
                future.set_result(new)
        for _, future in answers:
            if not future.done():
                future.set_result(True)


class SmsTransport:
    """SMS through Kannel (``sendsms``) and HTTP/JSON gateways, with a durable send journal."""

    name = "sms"
    channels = frozenset({Channel.SMS})
    capabilities = frozenset({Capability.SMS})
    mode = Mode.LIVE

    def __init__(
        self,
        *,
        gateways: Iterable[Gateway | Mapping[str, Any]] = (),
        journal: str | Path | Journal = ":memory:",
        journal_sync: str = "normal",
        receiver_url: str = "",
        receiver_token: str = "",
        limits: Limits | None = None,
        environ: Mapping[str, str] | None = None,
        name: str = "sms",
    ) -> None:
        """``gateways``: ``KannelGateway`` / ``HttpJsonGateway`` objects or TOML-style mappings;
        the first is the default. ``journal``: the send journal's SQLite file (``":memory:"``
        keeps nothing across restarts: use a file in production). ``receiver_url``: the base URL
        at which gateways reach ``receiver_app`` (delivery reports); empty: none asked for.
        ``receiver_token`` (``env:NAME``): a shared secret the receiver requires (parameter ``t``
        of its URLs, or header ``X-Tcs-Token``), so nobody else can post reports or messages."""
        gws = [
            g if isinstance(g, KannelGateway | HttpJsonGateway) else gateway_from_mapping(g)
            for g in gateways
        ]
        names = [g.name for g in gws]
        if len(set(names)) != len(names):
            raise ValidationError("gateways", "two gateways have the same name")
        self.name = name
        self.gateways: dict[str, Gateway] = {g.name: g for g in gws}
        self.default_gateway = gws[0].name if gws else None
        self.receiver_url = receiver_url.rstrip("/")
        self._receiver_token = receiver_token
        self.environ = environ
        self.journal = (
            journal if isinstance(journal, Journal) else Journal(journal, synchronous=journal_sync)
        )
        if gws and self.journal.path == ":memory:":
            log.warning(
                "the SMS send journal is in memory: after a restart a message may be sent twice "
                "(give SmsTransport a journal file)"
            )
        timeout = max((g.timeout_s for g in gws), default=5.0) * 2 + 1.0
        rate = sum(g.rate_per_s for g in gws) if gws else None
        self.limits = limits or Limits(
            concurrency=max(1, sum(g.concurrency for g in gws)) * 4,
            rate_per_s=rate,
            timeout_s=timeout,
        )
        self._session: aiohttp.ClientSession | None = None
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._paces: dict[str, _Pace] = {g.name: _Pace(g.rate_per_s) for g in gws}
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        self._secrets: dict[str, str] = {}
        self._opened_at = time.time()
        self._commit = _GroupCommit(self.journal)

    # -- life cycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the HTTP session (secrets are resolved per gateway at first use)."""
        self._opened_at = time.time()
        self._ensure_session()

    async def close(self) -> None:
        """Close the HTTP session (the journal stays open: receivers may still write to it)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            limit = max(1, sum(g.concurrency for g in self.gateways.values()))
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=limit, limit_per_host=0, keepalive_timeout=30.0
                )
            )
        return self._session

    def _secret(self, gw: Gateway) -> str:
        if gw.name not in self._secrets:
            raw = gw.password if isinstance(gw, KannelGateway) else gw.secret
            self._secrets[gw.name] = resolve_secret(raw, self.environ) if raw else ""
        return self._secrets[gw.name]

    def receiver_token(self) -> str:
        """The receiver's shared secret, resolved ("" when none is configured)."""
        if not self._receiver_token:
            return ""
        return resolve_secret(self._receiver_token, self.environ)

    def gateway_of(self, device: DeviceTarget) -> Gateway:
        """The gateway serving a device (its ``gateway`` setting, else the default)."""
        wanted = device.settings.get("gateway") or self.default_gateway
        if wanted is None:
            raise ValidationError("gateways", "no SMS gateway is configured")
        gw = self.gateways.get(wanted)
        if gw is None:
            raise ValidationError("gateway", f"no SMS gateway named {wanted!r} is configured")
        return gw

    def plays(self, device_id: UUID) -> int:
        """Messages the gateways accepted for a device (``ObservablePlays``), from the journal."""
        return self.journal.count("accepted", device_id.hex)

    # -- the contract ------------------------------------------------------------------------

    async def deliver(
        self, device: DeviceTarget, content: ContentVariant, key: str, context: DeliveryContext
    ) -> Outcome:
        """Submit the SMS once per key; delivered = the gateway accepted it (reports follow)."""
        try:
            return await self._deliver(device, content, key, context)
        except Exception as exc:  # outcomes are values
            log.exception("SMS delivery to %s failed", device.name)
            return Outcome.failed(
                f"SMS transport error for {device.name}: {type(exc).__name__}: {exc}"
            )

    async def _deliver(
        self, device: DeviceTarget, content: ContentVariant, key: str, context: DeliveryContext
    ) -> Outcome:
        deadline = time.monotonic() + self.limits.timeout_s * 0.9
        if not isinstance(content, SmsContent):
            return Outcome.failed(
                f"the SMS transport carries SMS text, not {type(content).__name__}"
            )
        try:
            gw = self.gateway_of(device)
        except ValidationError as exc:
            return Outcome.failed(f"{device.name}: {exc}")
        try:
            number = normalise_vn(device.address)
        except ValidationError as exc:
            return Outcome.failed(f"{device.name}: bad phone number: {exc.reason}")
        return await self.send(
            number,
            content.text,
            key=base_key(key),
            gateway=gw.name,
            dispatch=context.dispatch_id.hex,
            device=device.device_id.hex,
            label=device.name,
            deadline=deadline,
        )

    async def send(
        self,
        number: str,
        text: str,
        *,
        key: str,
        gateway: str | None = None,
        dispatch: str = "",
        device: str = "",
        label: str = "",
        deadline: float | None = None,
    ) -> Outcome:
        """Send ``text`` to ``number`` once per ``key`` (also used for replies to citizens)."""
        gw = self.gateways.get(gateway or self.default_gateway or "")
        label = label or mask(number)
        if gw is None:
            return Outcome.failed(f"{label}: no SMS gateway named {gateway!r} is configured")
        try:
            number = normalise_vn(number)
        except ValidationError as exc:
            return Outcome.failed(f"{label}: bad phone number: {exc.reason}")
        if not text or not text.strip():
            return Outcome.failed(f"{label}: empty text: nothing to send")
        enc, loss = prepare_text(text, gw)
        if enc.segments > gw.max_segments:
            return Outcome.failed(
                f"{label}: text too long for gateway {gw.name}: {enc.summary}, at most "
                f"{gw.max_segments} segments"
            )
        if deadline is None:
            deadline = time.monotonic() + self.limits.timeout_s * 0.9
        running = self._inflight.get(key)
        if running is not None:  # the same key at the same time: one submission, one answer
            return await asyncio.shield(running)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            outcome = await self._send_once(
                gw, number, enc, loss, key, dispatch, device, label, deadline
            )
            future.set_result(outcome)
            return outcome
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._inflight[key]

    async def _send_once(
        self,
        gw: Gateway,
        number: str,
        enc: Encoded,
        loss: str,
        key: str,
        dispatch: str,
        device: str,
        label: str,
        deadline: float,
    ) -> Outcome:
        note = enc.summary + (f"; {loss}" if loss else "")
        # The pending row is durable before the request leaves (claims commit together).
        fresh = await self._commit.claim(key, dispatch, device, number, gw.name)
        if not fresh:  # seen before: a retry, a resumed dispatch, a restart
            entry = self.journal.get(key)
            assert entry is not None
            if entry.state == "accepted":
                return self._accepted(gw, entry.remote_id, f"already accepted earlier; {note}")
            if entry.state == "refused":
                return Outcome.failed(entry.reason)
            if entry.state == "pending":
                settled = await self._resolve(entry, gw, number, enc, deadline, note)
                if settled is not None:
                    return settled
            self.journal.begin(
                key, dispatch=dispatch, device=device, number=number, gateway=gw.name
            )
        answer = await self._submit(gw, number, enc, key, deadline)
        where = f"{label} via {gw.name}"
        if answer.kind is AnswerKind.ACCEPTED:
            await self._commit.answer(key, "accepted", answer.remote_id, answer.reason)
            return self._accepted(gw, answer.remote_id, f"{answer.reason}; {note}")
        if answer.kind is AnswerKind.REFUSED:
            reason = f"{where}: gateway refused the message: {answer.reason}"
            await self._commit.answer(key, "refused", reason=reason)
            return Outcome.failed(reason)
        if answer.kind is AnswerKind.RETRY:
            await self._commit.answer(key, "retry", reason=answer.reason)
            return Outcome.retryable(f"{where}: {answer.reason}", answer.retry_after_s)
        # Ambiguous: the row stays pending; the next attempt resolves it before sending again.
        return Outcome.retryable(
            f"{where}: {answer.reason}; the gateway may have the message, so it is not sent "
            f"again before its delivery report or {gw.resolve_window_s:g} s have shown otherwise",
            min(gw.resolve_window_s, 60.0),
        )

    @staticmethod
    def _accepted(gw: Gateway, remote_id: str, reason: str) -> Outcome:
        rid = f" (id {remote_id})" if remote_id else ""
        return Outcome.delivered(remote_id or None, f"accepted by {gw.name}{rid}: {reason}")

    async def _resolve(
        self, entry: Entry, gw: Gateway, number: str, enc: Encoded, deadline: float, note: str
    ) -> Outcome | None:
        """An earlier submission of this key has no recorded answer (a crash, a lost answer).
        Returns the outcome if it is settled or must wait; None when sending again is safe."""
        found = self._reported(entry.key)
        if found is not None:
            return found
        if gw.idempotent:
            return None  # the gateway de-duplicates by our key
        if isinstance(gw, KannelGateway) and gw.admin_url:
            queued = await self._queued_in_kannel(gw, number, enc)
            if queued:
                self.journal.finish(entry.key, "accepted", reason="found queued in Kannel's store")
                return self._accepted(gw, "", f"found queued in Kannel's store; {note}")
        # A key from before this process opened waits a whole window from the opening: reports
        # the gateway could not hand over while we were down arrive on its next retry.
        since = max(entry.submitted_at, self._opened_at)
        settle_at = time.monotonic() + (since + gw.resolve_window_s - time.time())
        while time.monotonic() < min(settle_at, deadline):
            await asyncio.sleep(_POLL_S)
            found = self._reported(entry.key)
            if found is not None:
                return found
        if time.monotonic() >= settle_at:
            return None  # no report within the window: the gateway never had it
        return Outcome.retryable(
            f"{mask(number)} via {gw.name}: an earlier submission of {entry.key} has no answer "
            f"on record; waiting for the gateway's delivery report before sending again",
            max(0.1, settle_at - time.monotonic()),
        )

    def _reported(self, key: str) -> Outcome | None:
        receipts = self.journal.receipts(key)
        if not receipts:
            return None
        last = receipts[-1]
        if last.status in ("rejected", "failed", "expired"):
            # The gateway had it (so no second submission), and the network turned it down.
            reason = (
                f"the gateway had it and reported it {last.status}: {last.detail or 'no detail'}"
            )
            self.journal.finish(key, "refused", last.remote_id, reason)
            return Outcome.failed(reason)
        self.journal.finish(key, "accepted", last.remote_id, f"delivery report {last.status}")
        return Outcome.delivered(
            last.remote_id or None,
            f"accepted earlier: the gateway reported it {last.status} (no second submission)",
        )

    async def _queued_in_kannel(self, gw: KannelGateway, number: str, enc: Encoded) -> bool:
        """Whether bearerbox's store holds a message to ``number`` with this text."""
        url = f"{gw.admin_url.rstrip('/')}/store-status.xml"
        password = resolve_secret(gw.admin_password, self.environ) if gw.admin_password else ""
        try:
            async with asyncio.timeout(gw.timeout_s):
                async with self._ensure_session().get(url, params={"password": password}) as resp:
                    body = await resp.content.read(16 * 1024 * 1024)
            # bearerbox's own admin page at the configured admin_url; expat fetches no entities
            root = ET.fromstring(body)  # noqa: S314
        except (TimeoutError, aiohttp.ClientError, OSError, ET.ParseError) as exc:
            log.warning("cannot read Kannel's store at %s: %s", url, exc)
            return False
        to = format_number(number, gw.number_format)
        text = "".join(enc.parts)
        for msg in root.iter("message"):
            if (msg.findtext("receiver") or "") != to:
                continue
            data = unquote_to_bytes((msg.findtext("msg-data") or "").replace("+", "%20"))
            if data in (
                text.encode("utf-8"),
                text.encode("utf-16-be"),
                text.encode("latin-1", "replace"),
            ):
                return True
        return False

    async def _submit(
        self, gw: Gateway, number: str, enc: Encoded, key: str, deadline: float
    ) -> Answer:
        attempt = 0
        while True:
            answer = await self._one_request(gw, number, enc, key, deadline)
            if answer.kind is not AnswerKind.RETRY or attempt >= gw.retries:
                return answer
            pause = answer.retry_after_s if answer.retry_after_s is not None else 0.2 * 2**attempt
            if time.monotonic() + pause + 0.05 >= deadline:
                return answer
            await asyncio.sleep(pause)
            attempt += 1

    async def _one_request(
        self, gw: Gateway, number: str, enc: Encoded, key: str, deadline: float
    ) -> Answer:
        gate = self._gates.get(gw.name)
        if gate is None:
            gate = self._gates[gw.name] = asyncio.Semaphore(gw.concurrency)
        if gate.locked():  # wait for a connection slot, within the budget
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await gate.acquire()
            except TimeoutError:
                return Answer(
                    AnswerKind.RETRY, f"all {gw.concurrency} connections to {gw.name} busy"
                )
        else:
            await gate.acquire()  # free: returns at once
        try:
            wait = self._paces[gw.name].claim(deadline - time.monotonic() - 0.05)
            if wait is None:
                return Answer(
                    AnswerKind.RETRY,
                    f"rate limit of {gw.rate_per_s:g} messages/s for {gw.name}",
                    retry_after_s=max(0.05, self._paces[gw.name].next - time.monotonic()),
                )
            if wait > 0:
                await asyncio.sleep(wait)
            return await self._http(gw, number, enc, key, deadline)
        finally:
            gate.release()

    async def _http(
        self, gw: Gateway, number: str, enc: Encoded, key: str, deadline: float
    ) -> Answer:
        to = format_number(number, gw.number_format)
        try:
            secret = self._secret(gw)
        except ValidationError as exc:
            return Answer(AnswerKind.REFUSED, f"gateway {gw.name} is misconfigured: {exc}")
        try:
            token = self.receiver_token()
        except ValidationError as exc:
            return Answer(AnswerKind.REFUSED, f"receiver_token is misconfigured: {exc}")
        method, url, query, body, headers = gw.request(
            to, enc, key, self.receiver_url, secret, token
        )
        timeout = min(gw.timeout_s, max(0.05, deadline - time.monotonic()))
        session = self._ensure_session()
        try:
            async with session.request(
                method,
                url,
                params=query or None,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                answer = await resp.content.read(_MAX_ANSWER)
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except TimeoutError:  # also aiohttp's own timeouts (subclasses of it)
            return Answer(
                AnswerKind.AMBIGUOUS,
                f"no answer from gateway {gw.name} ({url}) within {timeout:.3g} s",
            )
        except aiohttp.ClientConnectorError as exc:
            why = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc)
            return Answer(AnswerKind.RETRY, f"cannot connect to gateway {gw.name} ({url}): {why}")
        except (aiohttp.ClientError, OSError) as exc:
            return Answer(
                AnswerKind.AMBIGUOUS,
                f"HTTP exchange with gateway {gw.name} ({url}) broke: {type(exc).__name__}: {exc}",
            )
        after = _seconds(retry_after)
        if isinstance(gw, KannelGateway):
            return kannel_answer(status, answer, after)
        return json_answer(status, answer, after, gw.id_field)

    async def preempt(self, device: DeviceTarget) -> Outcome:
        """An SMS cannot be recalled once sent: nothing to stop."""
        return Outcome.delivered(reason="an SMS cannot be recalled; nothing to stop")

    async def probe(self, device: DeviceTarget) -> Health:
        """Whether the device's gateway answers HTTP at all (any status counts as alive)."""
        try:
            gw = self.gateway_of(device)
        except ValidationError as exc:
            return Health(False, f"{device.name}: {exc}")
        url = gw.health_url or gw.url if isinstance(gw, HttpJsonGateway) else gw.url
        try:
            async with asyncio.timeout(min(gw.timeout_s, self.limits.timeout_s * 0.8)):
                async with self._ensure_session().get(url) as resp:
                    await resp.content.read(_MAX_ANSWER)
                    status = resp.status
        except TimeoutError:
            return Health(False, f"{device.name}: gateway {gw.name} ({url}) does not answer")
        except (aiohttp.ClientError, OSError) as exc:
            return Health(False, f"{device.name}: gateway {gw.name} ({url}) unreachable: {exc}")
        if status >= 500:
            return Health(False, f"{device.name}: gateway {gw.name} answers HTTP {status}")
        return Health(True, f"gateway {gw.name} answers (HTTP {status})")


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
