"""``SipTransport``: IP speakers called over SIP (RTP G.711), and multicast RTP paging zones.

A delivery is a call: INVITE with an SDP offer (PCMU, PCMA) and the device profile's
auto-answer headers; once the speaker answers, the item's audio goes out as RTP on the
transport's single frame clock, and a BYE ends the call when the audio ends. ``deliver``
returns as soon as the audio starts (``delivered``, remote id = the Call-ID).

Device settings (all optional): ``profile`` (see ``transports.sip.profiles``), ``username`` and
``password`` (``env:NAME``) for digest authentication, ``codecs`` (``PCMU,PCMA``; ``G722``
with the ``g722`` package),
``mode = multicast`` with ``zones`` (``normal=239.0.1.1:5004,emergency=239.0.1.9:5004``), ``ttl``
and ``interface`` for paging zones.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import secrets
import socket
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from tcs_core.domain.values import AudioContent, Channel, ContentVariant, Priority, SpeechContent
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
from transports.sip.audio import (
    FRAME_BYTES,
    AudioCache,
    AudioError,
    EspeakRenderer,
    MediaResolver,
    TtsRenderer,
    local_media,
)
from transports.sip.message import (
    PAYLOAD_TYPES,
    Challenge,
    SipAddress,
    SipError,
    SipMessage,
    branch,
    build_request,
    digest_authorization,
    header_tag,
    parse_address,
    parse_challenge,
    parse_sdp,
    sdp_offer,
    tag,
)
from transports.sip.profiles import Profile, Zone, parse_zones, profile_of
from transports.sip.rtp import TICK_S, ClockStats, FrameClock, RtpStream, open_rtp_socket
from transports.sip.ua import (
    ClientTransaction,
    Dialog,
    Interrupted,
    Malformed,
    SipEndpoint,
    Timers,
    Unreachable,
)

__all__ = ["CallRecord", "SipTransport"]

log = logging.getLogger("transports.sip")
T = TypeVar("T")

ANY_HOST = "0.0.0.0"  # noqa: S104 - a deployment binds every interface; tests give 127.0.0.1
_RANK = {Priority.NORMAL: 0, Priority.PRIORITY: 1, Priority.EMERGENCY: 2}
_BUSY = (486, 600)


class _Fail(Exception):
    """A delivery that must end now with this outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass
class CallRecord:
    """One call (or paging stream) as it happened: for status pages, tests and logs."""

    device_id: UUID
    device: str
    key: str
    call_id: str
    priority: Priority
    target: str
    codec: str = ""
    state: str = "inviting"  # inviting, up, ending, ended
    answered_after_s: float = 0.0
    packets: int = 0
    skipped: int = 0  # frames the clock skipped because it ran late (a starved machine)
    ended_by: str = ""
    notes: list[str] = field(default_factory=list)


class _Call:
    """A call in progress on one device (our side of the dialog)."""

    def __init__(
        self,
        device: DeviceTarget,
        key: str,
        priority: Priority,
        address: SipAddress | None,
        dest: tuple[str, int],
        record: CallRecord,
    ) -> None:
        self.device = device
        self.key = key
        self.priority = priority
        self.rank = _RANK[priority]
        self.address = address
        self.dest = dest
        self.record = record
        self.call_id = record.call_id
        self.local_tag = tag()
        self.remote_tag = ""
        self.remote_target = address.uri if address is not None else ""
        self.cseq = 0
        self.from_: str = ""
        self.to: str = ""
        self.tx: ClientTransaction | None = None
        self.stream: RtpStream | None = None
        self.fresh = True
        self.settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.abort: str | None = None
        self.ending: asyncio.Task[str] | None = None
        self.sock: socket.socket | None = None  # the call's RTP socket


def _rank(priority: Priority) -> int:
    return _RANK[Priority(priority)]


class SipTransport:
    """IP speakers over SIP/RTP, and multicast paging zones (see the module docstring)."""

    name = "sip"
    channels = frozenset({Channel.AUDIO})
    capabilities = frozenset({Capability.AUDIO, Capability.LIVE})
    mode = Mode.LIVE

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        local_host: str = ANY_HOST,
        sip_port: int = 0,
        timers: Timers | None = None,
        answer_timeout_s: float = 8.0,
        response_timeout_s: float = 5.0,
        render_wait_s: float | None = None,
        media: MediaResolver | None = None,
        media_root: str | None = None,
        renderer: TtsRenderer | None = None,
        cache_dir: str | None = None,
        cache_bytes: int = 256 * 1024 * 1024,
        verify_sha256: bool = True,
        busy_retry_s: float = 30.0,
        emergency_retries: int = 3,
        emergency_retry_interval_s: float = 0.5,
        user: str = "tcs",
        invite_window: int = 256,
        environ: Mapping[str, str] | None = None,
        name: str = "sip",
    ) -> None:
        """``local_host``: address to bind (``0.0.0.0``: all; the address each speaker sees is
        worked out per destination). ``answer_timeout_s``: how long a speaker may ring before
        the call is cancelled. ``response_timeout_s``: how long an INVITE may go without any
        answer (not even ``100 Trying``) before the speaker counts as off (retransmissions on
        Timer A meanwhile). ``render_wait_s``: how long a delivery waits for text to speech
        before answering retryable (the render goes on and is cached). ``media``: how audio URIs
        become bytes (default: local files and ``file://`` under ``media_root``). ``renderer``:
        text to speech (default: espeak-ng)."""
        self.name = name
        self.limits = limits or Limits(concurrency=10_000, timeout_s=15.0)
        if (
            answer_timeout_s <= 0
            or response_timeout_s <= 0
            or busy_retry_s < 0
            or emergency_retries < 0
        ):
            raise ValidationError(
                "sip",
                "need answer_timeout_s > 0, response_timeout_s > 0, busy_retry_s >= 0 and "
                "emergency_retries >= 0",
            )
        self.local_host = local_host
        self.sip_port = sip_port
        self.timers = timers or Timers()
        self.answer_timeout_s = answer_timeout_s
        self.response_timeout_s = response_timeout_s
        self.render_wait_s = (
            render_wait_s if render_wait_s is not None else self.limits.timeout_s / 2
        )
        self.busy_retry_s = busy_retry_s
        self.emergency_retries = emergency_retries
        self.emergency_retry_interval_s = emergency_retry_interval_s
        self.user = user
        if invite_window < 1:
            raise ValidationError("sip.invite_window", "must be at least 1")
        self.invite_window = invite_window
        self._invite_slots: asyncio.Semaphore | None = None
        self.environ = environ
        self.cache = AudioCache(
            media or local_media(media_root),
            renderer if renderer is not None else EspeakRenderer(),
            max_bytes=cache_bytes,
            directory=cache_dir,
            verify_sha256=verify_sha256,
        )
        self.clock_stats = ClockStats()
        self.clock = FrameClock(stats=self.clock_stats)
        self.endpoint: SipEndpoint | None = None
        self._rtp: socket.socket | None = None  # sends every unicast stream (see FrameClock)
        self._calls: dict[UUID, _Call] = {}
        self._inflight: dict[str, asyncio.Task[Outcome]] = {}
        self._delivered: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._plays: dict[UUID, int] = defaultdict(int)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._local_ip: dict[str, str] = {}
        self._next_slot = 0.0  # pacing to limits.rate_per_s (monotonic time of the next call)
        self.history: deque[CallRecord] = deque(maxlen=10_000)

    # -- life cycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Bind the SIP socket and the RTP socket."""
        if self.endpoint is not None:
            return
        self._invite_slots = asyncio.Semaphore(self.invite_window)
        endpoint = SipEndpoint(self.timers, user_agent="tcs-core SipTransport")
        await endpoint.open(self.local_host, self.sip_port)
        self.endpoint = endpoint
        self._rtp = open_rtp_socket(self._bind_host())
        self.clock.attach(self._rtp)

    async def close(self) -> None:
        """End every call (BYE), stop the clock, close the sockets, cancel renders."""
        calls = list(self._calls.values())
        for c in calls:
            if c.record.state == "inviting":  # ringing, or waiting for an INVITE slot
                c.abort = "the transport is closing"
                if c.tx is not None:
                    c.tx.interrupt(c.abort)
        ends = [self._hangup(c, "the transport closed") for c in calls if c.stream is not None]
        if ends:
            await asyncio.gather(*ends, return_exceptions=True)
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.timers.t1 * 8 + 1)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.clock.close()
        await self.cache.close()
        if self._rtp is not None:
            self._rtp.close()
            self._rtp = None
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        for c in list(self._calls.values()):
            self._drop(c, "the transport closed")
        self._calls.clear()

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the contract --------------------------------------------------------------------------

    def plays(self, device_id: UUID) -> int:
        """How many items a device has started playing (answered calls, paging streams)."""
        return self._plays.get(device_id, 0)

    def active(self, device_id: UUID) -> CallRecord | None:
        """The call on a device now, if any."""
        c = self._calls.get(device_id)
        return c.record if c is not None else None

    async def deliver(
        self, device: DeviceTarget, content: ContentVariant, key: str, context: DeliveryContext
    ) -> Outcome:
        """Call the speaker and start the item's audio; ``delivered`` once RTP flows."""
        try:
            done = self._delivered.get(key)
            if done is not None:
                return Outcome.delivered(
                    remote_id=done[0], reason=f"already played on {device.name}: {done[1]}"
                )
            task = self._inflight.get(key)
            if task is None:
                task = self._spawn(self._place(device, content, key, context))
                self._inflight[key] = task
                task.add_done_callback(functools.partial(self._settle, key))
            return await asyncio.shield(task)
        except _Fail as exc:
            return exc.outcome
        except Exception as exc:
            log.exception("delivery to %s failed", device.name)
            return Outcome.failed(
                f"SIP transport error for {device.name} ({device.address}): "
                f"{type(exc).__name__}: {exc}"
            )

    def _settle(self, key: str, _task: object) -> None:
        self._inflight.pop(key, None)

    async def preempt(self, device: DeviceTarget) -> Outcome:
        """End what plays on the device: BYE an answered call, CANCEL a ringing one."""
        try:
            c = self._calls.get(device.device_id)
            if c is None:
                return Outcome.delivered(reason=f"nothing playing on {device.name}")
            if c.fresh:
                # the engine sends preempt together with the emergency that causes it: never
                # end the call that emergency has just started
                return Outcome.delivered(reason=f"the call on {device.name} is the new item")
            if c.stream is None:
                c.abort = "preempted"
                if c.tx is not None:
                    c.tx.interrupt("preempted")
                try:
                    async with asyncio.timeout(self.limits.timeout_s * 0.8):
                        await asyncio.shield(c.settled)
                except TimeoutError:
                    pass
                return Outcome.delivered(
                    remote_id=c.call_id, reason=f"cancelled the unanswered call to {device.name}"
                )
            how = await self._hangup(c, "preempted")
            return Outcome.delivered(
                remote_id=c.call_id,
                reason=f"ended call on {device.name} after {c.record.packets * TICK_S:.1f} s "
                f"({how})",
            )
        except Exception as exc:
            log.exception("preempt on %s failed", device.name)
            return Outcome.failed(f"SIP transport error preempting {device.name}: {exc}")

    async def probe(self, device: DeviceTarget) -> Health:
        """SIP OPTIONS: any answer but a server error means the speaker is alive."""
        try:
            if self._is_multicast(device):
                return Health(True, "multicast paging zone: no return channel to probe")
            try:
                address = parse_address(device.address)
            except ValueError as exc:
                return Health(False, str(exc))
            endpoint = self._endpoint()
            dest = await self._resolve(address, device)
            local = self._local_for(dest[0])
            call_id = f"{secrets.token_hex(10)}@{local}"
            request = build_request(
                "OPTIONS",
                address.uri,
                via=self._via(local),
                from_=f"<sip:{self.user}@{local}>;tag={tag()}",
                to=f"<{address.uri}>",
                call_id=call_id,
                cseq=1,
                extra=[("accept", "application/sdp"), ("user-agent", "tcs-core")],
            )
            began = time.monotonic()
            tx = endpoint.start(request, dest)
            wait = min(self.timers.b, self.limits.timeout_s * 0.8)
            try:
                while True:
                    async with asyncio.timeout(wait):
                        resp = await tx.next()
                    if isinstance(resp, SipMessage) and (resp.status or 0) < 200:
                        continue
                    break
            except TimeoutError:
                resp = None
            finally:
                tx.terminate()
            ms = (time.monotonic() - began) * 1000
            if resp is None:
                return Health(
                    False,
                    f"no answer to SIP OPTIONS from {device.name} at {address.hostport} within "
                    f"{wait:g} s: speaker off, unplugged, or wrong address/port",
                )
            if isinstance(resp, Unreachable):
                return Health(
                    False, f"{device.name} at {address.hostport} cannot be reached: {resp.reason}"
                )
            if isinstance(resp, Malformed):
                return Health(
                    False, f"{device.name} at {address.hostport} answers garbage: {resp.reason}"
                )
            if isinstance(resp, Interrupted):
                return Health(False, f"probe of {device.name} interrupted: {resp.why}")
            status = resp.status or 0
            ok = status < 500
            return Health(ok, f"OPTIONS answered {status} {resp.reason} in {ms:.0f} ms", _now())
        except Exception as exc:
            log.exception("probe of %s failed", device.name)
            return Health(False, f"SIP transport error probing {device.name}: {exc}")

    # -- placing a call ----------------------------------------------------------------------

    async def _place(
        self, device: DeviceTarget, content: ContentVariant, key: str, context: DeliveryContext
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.timeout_s * 0.9
        if not isinstance(content, AudioContent | SpeechContent):
            return Outcome.failed(
                f"{device.name}: a speaker plays audio; {type(content).__name__} is not audio"
            )
        settings = device.settings
        multicast = self._is_multicast(device)
        try:
            profile = profile_of(settings)
            zone = self._zone(device, context.priority) if multicast else None
            address = None if multicast else parse_address(device.address)
        except ValueError as exc:
            return Outcome.failed(f"{device.name}: {exc}")
        pcm_wait = max(0.05, min(self.render_wait_s, deadline - loop.time() - 1.0))
        try:
            async with asyncio.timeout(pcm_wait):
                pcm = await self.cache.pcm(content)
        except TimeoutError:
            what = "speech" if isinstance(content, SpeechContent) else "audio file"
            return Outcome.retryable(
                f"{what} for {device.name} is still being prepared after {pcm_wait:.1f} s; "
                "it is cached when ready",
                retry_after_s=2.0,
            )
        except AudioError as exc:
            return Outcome.failed(f"{device.name}: {exc}")
        start_frame = _resume_frame(key, context, pcm.duration_s)
        end_frame = None
        if context.duration_s > 0:
            frames = math.ceil(context.duration_s / TICK_S)
            end_frame = start_frame + frames
        priority = Priority(context.priority)
        # everything that awaits happens before the device is claimed (check and claim below
        # run without a suspension in between, so two deliveries cannot both take the speaker)
        page: tuple[int, str | None, str, bytes] | None = None
        dest: tuple[str, int] | None = None
        if zone is not None:
            prepared = await self._prepare_page(device, settings, content)
            if isinstance(prepared, Outcome):
                return prepared
            page = prepared
        else:
            assert address is not None
            dest = await self._resolve(address, device)
        paced = await self._pace(device, deadline)
        if paced is not None:
            return paced
        while True:
            cur = self._calls.get(device.device_id)
            if cur is None:
                break
            if _rank(priority) > cur.rank:
                how = await self._end(cur, f"preempted by a {priority.value} item")
                log.info("%s: %s", device.name, how)
                continue
            remaining = cur.stream.remaining_s if cur.stream is not None else 5.0
            return Outcome.retryable(
                f"{device.name} is playing another item of ours ({cur.priority.value}, key "
                f"{cur.key}) for about {remaining:.0f} s more",
                retry_after_s=remaining + 0.5,
            )
        if zone is not None:
            assert page is not None
            return self._page(device, zone, key, priority, page, (start_frame, end_frame))
        assert address is not None and dest is not None
        record = CallRecord(
            device.device_id,
            device.name,
            key,
            f"{secrets.token_hex(10)}@tcs",
            priority,
            address.hostport,
        )
        call = _Call(device, key, priority, address, dest, record)
        self._calls[device.device_id] = call
        loop.call_soon(setattr, call, "fresh", False)
        self.history.append(record)
        try:
            outcome = await self._call(
                call, profile, content, settings, deadline, (start_frame, end_frame)
            )
        except _Fail as exc:
            outcome = exc.outcome
        except BaseException:
            self._drop(call, "error")
            raise
        finally:
            if not call.settled.done():
                call.settled.set_result(None)
        if outcome.status.value != "delivered":
            self._drop(call, outcome.reason)
        return outcome

    async def _pace(self, device: DeviceTarget, deadline: float) -> Outcome | None:
        """Space calls ``1 / limits.rate_per_s`` apart; retryable if the wait is too long."""
        rate = self.limits.rate_per_s
        if rate is None:
            return None
        now = time.monotonic()
        slot = max(now, self._next_slot)
        wait = slot - now
        if wait > self.limits.timeout_s / 2:
            return Outcome.retryable(
                f"{device.name}: the transport's call rate limit of {rate:g}/s is reached "
                f"(next slot in {wait:.1f} s)",
                wait,
            )
        self._next_slot = slot + 1.0 / rate
        if wait > 0:
            await asyncio.sleep(wait)
        return None

    def _drop(self, call: _Call, why: str) -> None:
        if self._calls.get(call.device.device_id) is call:
            del self._calls[call.device.device_id]
        if call.stream is not None:
            self.clock.stop(call.stream, why)
        if call.sock is not None:
            call.sock.close()
            call.sock = None
        if call.record.state != "ended":
            call.record.state = "ended"
            call.record.ended_by = call.record.ended_by or why
        if self.endpoint is not None:
            self.endpoint.dialogs.pop(call.call_id, None)

    async def _call(
        self,
        call: _Call,
        profile: Profile,
        content: AudioContent | SpeechContent,
        settings: Mapping[str, str],
        deadline: float,
        frames: tuple[int, int | None],
    ) -> Outcome:
        endpoint = self._endpoint()
        loop = asyncio.get_running_loop()
        device, address = call.device, call.address
        assert address is not None
        local = self._local_for(call.dest[0])
        assert self._rtp is not None
        rtp_port = self._rtp.getsockname()[1]
        sdp = sdp_offer(local, rtp_port, profile.codecs, secrets.randbits(31), profile.direction)
        uri = address.uri + profile.uri_params
        call.call_id = call.record.call_id = f"{secrets.token_hex(10)}@{local}"
        call.from_ = f'"tcs-core" <sip:{self.user}@{local}>;tag={call.local_tag}'
        call.to = f"<{address.uri}>"
        extra = [
            ("contact", f"<sip:{self.user}@{local}:{endpoint.local[1]}>"),
            ("allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"),
            ("user-agent", "tcs-core"),
            *profile.invite_headers(address.host),
        ]
        if call.priority is Priority.EMERGENCY:
            extra.append(("priority", "emergency"))
        auth: tuple[str, str] | None = None  # (header name, value)
        tried_auth: set[tuple[str, str]] = set()
        barged = False
        busy_tries = 0
        notes = call.record.notes
        began = loop.time()
        while True:
            call.cseq += 1
            headers = list(extra)
            if barged and profile.barge_headers:
                headers += list(profile.barge_headers)
            if auth is not None:
                headers.append(auth)
            invite = build_request(
                "INVITE",
                uri,
                via=self._via(local),
                from_=call.from_,
                to=call.to,
                call_id=call.call_id,
                cseq=call.cseq,
                extra=headers,
                body=sdp,
                content_type="application/sdp",
            )
            resp = await self._await_final(call, invite, deadline)
            status = resp.status or 0
            if 200 <= status < 300:
                break
            if status in (401, 407):
                auth = self._answer_challenge(call, resp, status, settings, uri, tried_auth)
                notes.append(f"{status} challenge answered")
                continue
            if status in _BUSY:
                busy_tries += 1
                if call.priority is not Priority.EMERGENCY:
                    raise _Fail(
                        Outcome.retryable(
                            f"{device.name} ({address.hostport}) is busy ({status} "
                            f"{resp.reason}): another call is on the speaker; retry later",
                            retry_after_s=self.busy_retry_s,
                        )
                    )
                if profile.barge_headers and not barged:
                    barged = True
                    names = ", ".join(k for k, _ in profile.barge_headers)
                    notes.append(f"busy ({status}): barged in with {names}")
                    continue
                left = deadline - loop.time()
                if (
                    busy_tries > self.emergency_retries
                    or left < self.emergency_retry_interval_s + 0.2
                ):
                    raise _Fail(
                        Outcome.retryable(
                            f"emergency: {device.name} ({address.hostport}) stayed busy "
                            f"({status} {resp.reason}) after {busy_tries - 1} quick retries"
                            + (
                                ""
                                if profile.barge_headers
                                else f"; profile {profile.name!r} has no barge method"
                            ),
                            retry_after_s=self.emergency_retry_interval_s,
                        )
                    )
                notes.append(f"busy ({status}): quick retry {busy_tries}")
                await asyncio.sleep(self.emergency_retry_interval_s)
                continue
            raise _Fail(self._refused(device, address, resp))
        # answered
        call.record.answered_after_s = loop.time() - began
        call.remote_tag = header_tag(resp.get("to"))
        call.to = resp.get("to")
        contact = resp.get("contact")
        if contact:
            target = contact.split("<", 1)[-1].split(">", 1)[0].strip()
            if target.startswith("sip:"):
                call.remote_target = target
        ack = self._request(call, "ACK", local, cseq=call.cseq)
        ack_bytes = ack.to_bytes()
        endpoint.send(ack_bytes, call.dest)
        endpoint.dialogs[call.call_id] = Dialog(
            call.call_id, call.dest, ack_bytes, on_bye=functools.partial(self._remote_bye, call)
        )
        if call.abort:
            await self._bye(call, local)
            raise _Fail(Outcome.retryable(f"call to {device.name} stopped: {call.abort}"))
        try:
            media = parse_sdp(resp.body)
            codec = media.codec(profile.codecs)
            if codec is None:
                raise SipError(
                    f"the answer accepts none of our codecs (payload types {media.payload_types})"
                )
        except SipError as exc:
            await self._bye(call, local)
            raise _Fail(
                Outcome.failed(
                    f"{device.name} ({address.hostport}) answered 200 OK without a usable SDP "
                    f"answer: {exc}"
                )
            ) from None
        if media.direction in ("sendonly", "inactive"):
            notes.append(f"the speaker answered a={media.direction}; sending anyway")
        payload = await self.cache.get(content, codec)
        start, end = frames
        if end is not None and end * FRAME_BYTES < len(payload):
            payload = payload[: end * FRAME_BYTES]
        try:
            socket.inet_aton(media.host)
        except OSError:
            await self._bye(call, local)
            raise _Fail(
                Outcome.failed(
                    f"{device.name} ({address.hostport}) answered with media address "
                    f"{media.host!r}, which is not an IPv4 address"
                )
            ) from None
        stream = RtpStream(
            payload,
            PAYLOAD_TYPES[codec],
            (media.host, media.port),
            start_frame=start,
            on_end=functools.partial(self._stream_ended, call),
        )
        call.stream = stream
        call.record.codec = codec
        call.record.state = "up"
        self.clock.add(stream)
        self._plays[device.device_id] += 1
        reason = (
            f"{device.name} answered in {call.record.answered_after_s * 1000:.0f} ms; "
            f"{codec} {stream.remaining_s:.1f} s to {media.host}:{media.port}"
        )
        if notes:
            reason += f" ({'; '.join(notes)})"
        self._remember(call.key, call.call_id, reason)
        return Outcome.delivered(remote_id=call.call_id, reason=reason)

    async def _await_final(self, call: _Call, invite: SipMessage, deadline: float) -> SipMessage:
        """Send the INVITE and wait for its final response (CANCEL after ringing too long).

        At most ``invite_window`` INVITE transactions are open at once: a fan-out to thousands
        of speakers would otherwise have all of them answer in the same millisecond."""
        slots = self._invite_slots
        assert slots is not None
        try:
            async with asyncio.timeout(max(0.0, deadline - asyncio.get_running_loop().time())):
                await slots.acquire()
        except TimeoutError:
            raise _Fail(
                Outcome.retryable(
                    f"{call.device.name}: {self.invite_window} calls were being set up already "
                    "and no slot freed in time (invite_window)"
                )
            ) from None
        try:
            return await self._invite_in_window(call, invite, deadline)
        finally:
            slots.release()

    async def _invite_in_window(
        self, call: _Call, invite: SipMessage, deadline: float
    ) -> SipMessage:
        endpoint = self._endpoint()
        loop = asyncio.get_running_loop()
        device, address = call.device, call.address
        assert address is not None
        if call.abort:  # preempted or closing while waiting for a slot
            raise _Fail(Outcome.retryable(f"call to {device.name} stopped: {call.abort}"))
        tx = endpoint.start(invite, call.dest)
        call.tx = tx
        sent_at = loop.time()
        ring_until: float | None = None
        cancelled: str | None = None
        try:
            while True:
                now = loop.time()
                if cancelled:
                    limit = now + min(2.0, max(0.2, 8 * self.timers.t1))
                elif ring_until is not None:
                    limit = min(ring_until, deadline)
                else:
                    limit = min(sent_at + self.response_timeout_s, deadline)
                if call.abort and not cancelled:
                    cancelled = call.abort
                    if tx.provisional:
                        self._cancel(call, invite)
                        continue
                    raise _Fail(Outcome.retryable(f"call to {device.name} stopped: {cancelled}"))
                try:
                    async with asyncio.timeout(max(0.0, limit - now)):
                        resp = await tx.next()
                except TimeoutError:
                    if cancelled:
                        raise _Fail(
                            Outcome.retryable(
                                f"call to {device.name} ({address.hostport}) cancelled "
                                f"({cancelled}); the speaker did not confirm the CANCEL"
                            )
                        ) from None
                    if ring_until is None:
                        raise _Fail(
                            Outcome.retryable(
                                f"no SIP answer from {device.name} at {address.hostport} within "
                                f"{loop.time() - sent_at:.1f} s (INVITE sent {tx.sends} times): speaker "
                                "off, unplugged, or wrong address/port"
                            )
                        ) from None
                    rang = self.answer_timeout_s if ring_until <= deadline else None
                    cancelled = (
                        f"rang for {rang:g} s without answering"
                        if rang is not None
                        else "no answer within the delivery timeout"
                    )
                    self._cancel(call, invite)
                    continue
                if resp is None:
                    raise _Fail(
                        Outcome.retryable(
                            f"no SIP answer from {device.name} at {address.hostport} "
                            f"within {endpoint.timers.b:g} s (Timer B): speaker off, unplugged, "
                            "or wrong address/port"
                        )
                    )
                if isinstance(resp, Unreachable):
                    raise _Fail(
                        Outcome.retryable(
                            f"{device.name} at {address.hostport} cannot be reached "
                            f"({resp.reason}): speaker off or its SIP service down, or wrong "
                            "address/port"
                        )
                    )
                if isinstance(resp, Malformed):
                    raise _Fail(
                        Outcome.failed(
                            f"malformed SIP response from {device.name} at {address.hostport}: "
                            f"{resp.reason} ({resp.snippet!r}); check that the address is the "
                            "speaker's SIP port"
                        )
                    )
                if isinstance(resp, Interrupted):
                    continue  # call.abort is set: loop top sends CANCEL or gives up
                status = resp.status or 0
                if status < 200:
                    if ring_until is None:
                        ring_until = loop.time() + self.answer_timeout_s
                    continue
                if cancelled:
                    if 200 <= status < 300:  # answered while we cancelled: take it down again
                        call.remote_tag = header_tag(resp.get("to"))
                        call.to = resp.get("to")
                        local = self._local_for(call.dest[0])
                        ack = self._request(call, "ACK", local, cseq=call.cseq)
                        endpoint.send(ack.to_bytes(), call.dest)
                        await self._bye(call, local)
                    hint = ""
                    if "rang" in cancelled:
                        hint = (
                            ": auto-answer is not enabled on the speaker, or the profile's "
                            "header is not the one it understands (set profile=...)"
                        )
                    raise _Fail(
                        Outcome.retryable(
                            f"{device.name} ({address.hostport}) {cancelled}{hint}",
                            retry_after_s=self.busy_retry_s if "rang" in cancelled else None,
                        )
                    )
                return resp
        finally:
            if tx.final is None:
                tx.terminate()

    def _cancel(self, call: _Call, invite: SipMessage) -> None:
        """CANCEL a ringing INVITE (same branch, Call-ID, From, To, CSeq number)."""
        cancel = SipMessage(
            method="CANCEL",
            uri=invite.uri,
            headers=[
                ("via", invite.get("via")),
                ("max-forwards", "70"),
                ("from", invite.get("from")),
                ("to", invite.get("to")),
                ("call-id", invite.call_id),
                ("cseq", f"{invite.cseq[0]} CANCEL"),
            ],
        )
        tx = self._endpoint().start(cancel, call.dest)
        # nobody waits for the CANCEL's own 200: forget it when Timer F would
        asyncio.get_running_loop().call_later(self.timers.b, tx.terminate)

    def _answer_challenge(
        self,
        call: _Call,
        resp: SipMessage,
        status: int,
        settings: Mapping[str, str],
        uri: str,
        tried: set[tuple[str, str]],
    ) -> tuple[str, str]:
        device = call.device
        where = call.address.hostport if call.address else device.address
        header = "www-authenticate" if status == 401 else "proxy-authenticate"
        try:
            challenge: Challenge = parse_challenge(resp.get(header))
        except SipError as exc:
            raise _Fail(
                Outcome.failed(
                    f"{device.name} ({where}) asks for authentication we cannot answer: {exc}"
                )
            ) from None
        ref = settings.get("password")
        username = settings.get("username") or (call.address.user if call.address else "")
        username = username or self.user
        if not ref:
            raise _Fail(
                Outcome.failed(
                    f"{device.name} ({where}) requires a password (digest realm "
                    f"{challenge.realm!r}): set the device settings username=... and "
                    "password=env:NAME"
                )
            )
        if (challenge.realm, challenge.nonce) in tried or (tried and not challenge.stale):
            raise _Fail(
                Outcome.failed(
                    f"{device.name} ({where}) rejected the credentials of user {username!r} "
                    f"(realm {challenge.realm!r}): wrong username or password"
                )
            )
        tried.add((challenge.realm, challenge.nonce))
        try:
            password = resolve_secret(ref, self.environ)
        except ValidationError as exc:
            raise _Fail(Outcome.failed(f"{device.name}: password setting: {exc.reason}")) from None
        value = digest_authorization(challenge, "INVITE", uri, username, password)
        return ("authorization" if status == 401 else "proxy-authorization", value)

    @staticmethod
    def _refused(device: DeviceTarget, address: SipAddress, resp: SipMessage) -> Outcome:
        status, phrase = resp.status or 0, resp.reason
        where = f"{device.name} ({address.hostport})"
        said = f"{status} {phrase}".strip()
        if 300 <= status < 400:
            return Outcome.failed(
                f"{where} redirects the call ({said}) to {resp.get('contact') or '?'}: "
                "update the device address"
            )
        if status == 404:
            return Outcome.failed(f"{where}: no such user ({said}); check the address' user part")
        if status == 403:
            return Outcome.failed(f"{where} refuses our calls ({said}): allow this caller")
        if status in (488, 606, 415):
            return Outcome.failed(f"{where} accepts none of PCMU/PCMA ({said}): enable G.711")
        if status == 420:
            return Outcome.failed(
                f"{where} does not support an extension we required ({said}); "
                f"unsupported: {resp.get('unsupported')}"
            )
        if status in (408, 480) or 500 <= status < 600:
            after = resp.get("retry-after").split(";")[0].strip()
            return Outcome.retryable(
                f"{where} is temporarily unavailable ({said})",
                retry_after_s=float(after) if after.isdigit() else None,
            )
        return Outcome.failed(f"{where} refused the call ({said})")

    # -- ending calls --------------------------------------------------------------------------

    def _stream_ended(self, call: _Call, stream: RtpStream) -> None:
        call.record.packets = stream.sent
        call.record.skipped = stream.skipped
        if stream.ended_by == "finished" and call.ending is None and call.address is not None:
            call.ending = self._spawn(self._finish(call, "the audio ended"))
        elif call.address is None:  # multicast: nothing to hang up
            self._drop(call, stream.ended_by)

    async def _finish(self, call: _Call, why: str) -> str:
        how = await self._bye(call, self._local_for(call.dest[0]))
        self._drop(call, why)
        call.record.ended_by = f"{why} ({how})"
        return how

    def _remote_bye(self, call: _Call, _bye: SipMessage) -> None:
        call.record.ended_by = "the speaker hung up (BYE)"
        if call.stream is not None:
            self.clock.stop(call.stream, "the speaker hung up")
        self._drop(call, "the speaker hung up (BYE)")

    async def _end(self, call: _Call, why: str) -> str:
        """End a call in any state and wait until it is gone."""
        if call.stream is None:
            call.abort = why
            if call.tx is not None:
                call.tx.interrupt(why)
            try:
                async with asyncio.timeout(self.limits.timeout_s * 0.5):
                    await asyncio.shield(call.settled)
            except TimeoutError:
                pass
            self._drop(call, why)
            return f"cancelled the unanswered call ({why})"
        return await self._hangup(call, why)

    async def _hangup(self, call: _Call, why: str) -> str:
        """Stop the stream and BYE (one BYE even when several ask at once)."""
        if call.stream is not None:
            self.clock.stop(call.stream, why)
        if call.address is None:
            self._drop(call, why)
            return "paging stream stopped"
        if call.ending is None:
            call.ending = self._spawn(self._finish(call, why))
        return await asyncio.shield(call.ending)

    async def _bye(self, call: _Call, local: str) -> str:
        if self.endpoint is None:
            return "transport closed"
        call.cseq += 1
        self.endpoint.dialogs.pop(call.call_id, None)
        bye = self._request(call, "BYE", local, cseq=call.cseq)
        tx = self.endpoint.start(bye, call.dest)
        try:
            async with asyncio.timeout(min(self.timers.b, max(1.0, 4 * self.timers.t1 * 4))):
                while True:
                    resp = await tx.next()
                    if isinstance(resp, SipMessage) and (resp.status or 0) < 200:
                        continue
                    break
        except TimeoutError:
            resp = None
        finally:
            tx.terminate()
        if isinstance(resp, SipMessage):
            return f"BYE answered {resp.status} {resp.reason}"
        return "no answer to BYE; the RTP stream stopped"

    def _request(self, call: _Call, method: str, local: str, *, cseq: int) -> SipMessage:
        return build_request(
            method,
            call.remote_target,
            via=self._via(local),
            from_=call.from_,
            to=call.to,
            call_id=call.call_id,
            cseq=cseq,
            extra=[("user-agent", "tcs-core")],
        )

    # -- multicast paging ----------------------------------------------------------------------

    @staticmethod
    def _is_multicast(device: DeviceTarget) -> bool:
        return device.settings.get(
            "mode", ""
        ).strip().lower() == "multicast" or device.address.startswith("multicast:")

    @staticmethod
    def _zone(device: DeviceTarget, priority: Priority) -> Zone:
        raw = device.settings.get("zones") or device.address.removeprefix("multicast:")
        if "=" not in raw:
            raw = f"normal={raw}"
        zones = parse_zones(raw)
        for level in sorted(_RANK, key=lambda p: -_RANK[p]):
            if _RANK[level] <= _RANK[Priority(priority)] and level in zones:
                return zones[level]
        return min(zones.values(), key=lambda z: _RANK[z.priority])

    async def _prepare_page(
        self,
        device: DeviceTarget,
        settings: Mapping[str, str],
        content: AudioContent | SpeechContent,
    ) -> tuple[int, str | None, str, bytes] | Outcome:
        """A paging zone's TTL, interface, codec and encoded audio (or why not)."""
        try:
            ttl = int(settings.get("ttl", "1"))
            if not 0 <= ttl <= 255:
                raise ValueError
        except ValueError:
            return Outcome.failed(f"{device.name}: ttl must be 0-255, not {settings['ttl']!r}")
        interface = settings.get("interface") or None
        codec = settings.get("codec", "PCMU").strip().upper()
        if codec not in ("PCMU", "PCMA"):
            return Outcome.failed(f"{device.name}: codec must be PCMU or PCMA, not {codec!r}")
        return ttl, interface, codec, await self.cache.get(content, codec)

    def _page(
        self,
        device: DeviceTarget,
        zone: Zone,
        key: str,
        priority: Priority,
        page: tuple[int, str | None, str, bytes],
        pcm_range: tuple[int, int | None],
    ) -> Outcome:
        ttl, interface, codec, payload = page
        try:
            sock = open_rtp_socket(self._bind_host(), ttl=ttl, interface=interface)
            sock.connect(zone.addr)
        except OSError as exc:
            return Outcome.failed(
                f"{device.name}: cannot open a multicast socket for {zone.group}:{zone.port} "
                f"(ttl {ttl}, interface {interface}): {exc.strerror or exc}"
            )
        start, end = pcm_range
        if end is not None and end * FRAME_BYTES < len(payload):
            payload = payload[: end * FRAME_BYTES]
        record = CallRecord(
            device.device_id,
            device.name,
            key,
            f"rtp-{secrets.token_hex(6)}",
            priority,
            f"{zone.group}:{zone.port}",
            codec=codec,
            state="up",
        )
        call = _Call(device, key, priority, None, zone.addr, record)
        call.sock = sock
        call.fresh = True
        asyncio.get_running_loop().call_soon(setattr, call, "fresh", False)
        stream = RtpStream(
            payload,
            PAYLOAD_TYPES[codec],
            sock,
            start_frame=start,
            on_end=functools.partial(self._stream_ended, call),
        )
        call.stream = stream
        call.settled.set_result(None)
        self._calls[device.device_id] = call
        self.history.append(record)
        self.clock.add(stream)
        self._plays[device.device_id] += 1
        reason = (
            f"paging zone {zone.priority.value} {zone.group}:{zone.port} (ttl {ttl}): "
            f"{codec} {stream.remaining_s:.1f} s"
        )
        self._remember(key, record.call_id, reason)
        return Outcome.delivered(remote_id=record.call_id, reason=reason)

    def _bind_host(self) -> str:
        return ANY_HOST if self.local_host in ("", ANY_HOST) else self.local_host

    # -- helpers -------------------------------------------------------------------------------

    def _endpoint(self) -> SipEndpoint:
        if self.endpoint is None:
            raise _Fail(Outcome.retryable("the SIP transport is not open (call open() first)"))
        return self.endpoint

    async def _resolve(self, address: SipAddress, device: DeviceTarget) -> tuple[str, int]:
        host = address.host.strip("[]")
        try:
            socket.inet_aton(host)
            return host, address.port
        except OSError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, address.port, type=socket.SOCK_DGRAM, family=socket.AF_INET
            )
        except OSError as exc:
            raise _Fail(
                Outcome.retryable(f"{device.name}: cannot resolve host {host!r}: {exc}")
            ) from None
        return str(infos[0][4][0]), int(infos[0][4][1])

    def _local_for(self, host: str) -> str:
        """The address of ours that ``host`` sees (for Via, Contact and SDP)."""
        if self.local_host not in ("", ANY_HOST):
            return self.local_host
        found = self._local_ip.get(host)
        if found is None:
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.connect((host, 9))  # no packet is sent: only the route is looked up
                found = str(probe.getsockname()[0])
            except OSError:
                found = "127.0.0.1"
            finally:
                probe.close()
            self._local_ip[host] = found
        return found

    def _via(self, local: str) -> str:
        port = self.endpoint.local[1] if self.endpoint else 0
        return f"SIP/2.0/UDP {local}:{port};branch={branch()};rport"

    def _remember(self, key: str, remote_id: str, reason: str) -> None:
        self._delivered[key] = (remote_id, reason)
        if len(self._delivered) > 100_000:
            self._delivered.popitem(last=False)


def _resume_frame(key: str, context: DeliveryContext, duration_s: float) -> int:
    """A resumed play (key ``dispatch.device.N``, N > 1) starts where the remaining time says."""
    if key.count(".") != 2 or not key.rsplit(".", 1)[1].isdigit():
        return 0
    if int(key.rsplit(".", 1)[1]) <= 1 or context.duration_s <= 0:
        return 0
    offset = max(0.0, duration_s - context.duration_s)
    return int(offset / TICK_S)


def _now() -> datetime:
    return datetime.now(UTC)
