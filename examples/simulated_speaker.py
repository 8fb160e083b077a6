"""A simulated IP speaker: a small SIP UAS that answers by itself and an RTP receiver that counts
what arrives. For demos, the national simulation and tests; many speakers run in one process.

    import asyncio
    from simulated_speaker import start_speakers, stop_speakers

    async def main():
        speakers = await start_speakers(3)           # 3 speakers on 127.0.0.1
        print([s.address for s in speakers])          # sip:loa1@127.0.0.1:PORT ... (device addresses)
        ...                                           # deliver to them with SipTransport
        print(speakers[0].received.summary())
        await stop_speakers(speakers)

Behaviours (``Speaker(behaviour=...)``): ``auto`` (answers at once, 486 while in a call),
``busy`` (always 486), ``never`` (rings, never answers), ``garbage`` (answers bytes that are
not SIP); ``password=`` makes it challenge every INVITE with digest authentication;
``answer_delay_s`` makes it slow. Run ``python examples/simulated_speaker.py --count 5`` to
start speakers until Ctrl-C, printing what each received.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import re
import secrets
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from transports.sip import (
    SipError,
    SipMessage,
    build_response,
    parse_message,
    parse_sdp,
)

__all__ = ["CallStats", "Received", "Speaker", "start_speakers", "stop_speakers"]

BEHAVIOURS = ("auto", "busy", "never", "garbage")
_RTP = struct.Struct("!BBHII")


@dataclass
class CallStats:
    """One call as the speaker saw it, and the RTP that arrived for it."""

    call_id: str
    caller: str
    headers: dict[str, str]
    answered: bool = False
    payload_types: set[int] = field(default_factory=set)
    packets: int = 0
    bytes: int = 0
    first_marker: bool | None = None
    ssrcs: set[int] = field(default_factory=set)
    seqs: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)  # the payloads, in arrival order
    started_at: float = 0.0
    ended_at: float | None = None
    ended_by: str = ""  # "BYE", "CANCEL", "speaker"

    @property
    def duration_s(self) -> float:
        """Audio received, in seconds (20 ms per packet)."""
        return self.packets * 0.020


@dataclass
class Received:
    """Everything a speaker received."""

    invites: int = 0
    options: int = 0
    byes: int = 0
    cancels: int = 0
    rejected: int = 0  # INVITEs answered 4xx/6xx (busy, challenge, wrong password)
    stray_packets: int = 0  # RTP with no call to attribute it to (e.g. after BYE)
    calls: list[CallStats] = field(default_factory=list)

    @property
    def packets(self) -> int:
        """RTP packets received over all calls."""
        return sum(c.packets for c in self.calls)

    @property
    def answered(self) -> list[CallStats]:
        """The calls the speaker answered."""
        return [c for c in self.calls if c.answered]

    def summary(self) -> str:
        """One line for people."""
        return (
            f"{self.invites} INVITE, {len(self.answered)} answered, {self.rejected} rejected, "
            f"{self.byes} BYE, {self.cancels} CANCEL, {self.options} OPTIONS, "
            f"{self.packets} RTP packets ({self.packets * 0.02:.1f} s of audio)"
        )


class _SipSide(asyncio.DatagramProtocol):
    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.speaker._on_sip(data, (str(addr[0]), int(addr[1])))


class _RtpSide(asyncio.DatagramProtocol):
    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.speaker._on_rtp(data)


class Speaker:
    """One simulated speaker (start it with ``await speaker.start()``)."""

    def __init__(
        self,
        name: str = "loa",
        *,
        host: str = "127.0.0.1",
        behaviour: str = "auto",
        username: str = "loa",
        password: str | None = None,
        answer_delay_s: float = 0.0,
        keep_packets: bool = True,
        media_port: int | None = None,
    ) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}, not {behaviour!r}")
        self.name = name
        self.host = host
        self.behaviour = behaviour
        self.username = username
        self.password = password
        self.answer_delay_s = answer_delay_s
        self.keep_packets = keep_packets
        # media_port: answer with this RTP port on ``host`` and open no RTP socket (a load test
        # points every speaker at one socket that nobody reads, so counting costs nothing)
        self.media_port = media_port
        self.received = Received()
        self.realm = "loa-xa"
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self.sip_port = 0
        self.rtp_port = 0
        self._calls: dict[str, CallStats] = {}  # by Call-ID
        self._current: CallStats | None = None  # the call the RTP belongs to
        self._pending: dict[str, tuple[SipMessage, tuple[str, int], str]] = {}  # ringing
        # the last final answers per (Call-ID, CSeq), for retransmitted requests (bounded)
        self._answers: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._nonces: set[str] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        # per answered call: (caller's URI, our To, caller's From), caller's address, our CSeq
        self._peers: dict[str, tuple[tuple[str, str, str], tuple[str, int], int]] = {}

    @property
    def address(self) -> str:
        """The speaker's SIP address (use it as the device address)."""
        return f"sip:{self.name}@{self.host}:{self.sip_port}"

    @property
    def in_call(self) -> bool:
        """Whether a call is up."""
        return self._current is not None and self._current.ended_at is None

    async def start(self, sip_socket: socket.socket | None = None) -> Speaker:
        """Bind the SIP and RTP sockets (ports chosen by the system), or take a SIP socket
        bound already (so that a test knows the address before its event loop runs)."""
        loop = asyncio.get_running_loop()
        if sip_socket is not None:
            self._sip, _ = await loop.create_datagram_endpoint(
                lambda: _SipSide(self), sock=sip_socket
            )
        else:
            self._sip, _ = await loop.create_datagram_endpoint(
                lambda: _SipSide(self), local_addr=(self.host, 0)
            )
        self.sip_port = self._sip.get_extra_info("sockname")[1]
        if self.media_port is not None:
            self.rtp_port = self.media_port
            return self
        self._rtp, _ = await loop.create_datagram_endpoint(
            lambda: _RtpSide(self), local_addr=(self.host, 0)
        )
        self.rtp_port = self._rtp.get_extra_info("sockname")[1]
        return self

    async def stop(self) -> None:
        """Close the sockets."""
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        for tr in (self._sip, self._rtp):
            if tr is not None:
                tr.close()
        self._sip = self._rtp = None
        await asyncio.sleep(0)

    async def hang_up(self) -> None:
        """The speaker ends its current call itself (sends BYE to the caller)."""
        call = self._current
        if call is None or call.ended_at is not None or self._sip is None:
            return
        call.ended_at, call.ended_by = time.monotonic(), "speaker"
        peer = self._peers.get(call.call_id)
        if peer is None:
            return
        to_caller, dest, cseq = peer
        bye = (
            f"BYE {to_caller[0]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.sip_port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
            f"Max-Forwards: 70\r\nFrom: {to_caller[1]}\r\nTo: {to_caller[2]}\r\n"
            f"Call-ID: {call.call_id}\r\nCSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n"
        )
        self._sip.sendto(bye.encode(), dest)

    # -- SIP ---------------------------------------------------------------------------------

    def _send(self, msg: SipMessage | bytes, addr: tuple[str, int]) -> None:
        if self._sip is not None:
            self._sip.sendto(msg if isinstance(msg, bytes) else msg.to_bytes(), addr)

    def _on_sip(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = parse_message(data)
        except SipError:
            return
        if not msg.is_request:
            return  # the answer to our BYE
        if self.behaviour == "garbage":
            self._send(b"\x00\xff<html>not a SIP answer</html>", addr)
            return
        seen = self._answers.get((msg.call_id, msg.cseq[0]))
        if seen is not None and msg.method in ("INVITE", "BYE", "OPTIONS"):
            self._send(seen, addr)  # a retransmission: answer the same again
            return
        pending = self._pending.get(msg.call_id)
        if msg.method == "INVITE" and pending is not None and pending[0].cseq == msg.cseq:
            self._send(build_response(msg, 180, "Ringing", to_tag=pending[2]), addr)
            return  # a retransmission of the INVITE we are ringing for
        handler = getattr(self, f"_on_{(msg.method or '').lower()}", None)
        if handler is None:
            self._final(msg, addr, build_response(msg, 405, "Method Not Allowed"))
        else:
            handler(msg, addr)

    def _final(self, msg: SipMessage, addr: tuple[str, int], resp: SipMessage) -> None:
        data = resp.to_bytes()
        self._answers[(msg.call_id, msg.cseq[0])] = data
        if len(self._answers) > 256:
            self._answers.popitem(last=False)
        self._send(data, addr)

    def _on_options(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        self.received.options += 1
        self._final(msg, addr, build_response(msg, 200, "OK", extra=[("allow", "INVITE, BYE")]))

    def _on_ack(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        key = (msg.call_id, msg.cseq[0])
        self._answers.pop(key, None)  # ACKed: stop treating it as a retransmission

    def _on_invite(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        self.received.invites += 1
        to_tag = secrets.token_hex(4)
        if self.password is not None and not self._authorised(msg):
            self.received.rejected += 1
            nonce = secrets.token_hex(8)
            self._nonces.add(nonce)
            challenge = f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", algorithm=MD5'
            resp = build_response(
                msg, 401, "Unauthorized", to_tag=to_tag, extra=[("www-authenticate", challenge)]
            )
            self._final(msg, addr, resp)
            return
        barge = msg.get("priv-answer-mode").lower().startswith("auto")  # RFC 5373 override
        if (self.behaviour == "busy" or self.in_call) and not barge:
            self.received.rejected += 1
            self._final(msg, addr, build_response(msg, 486, "Busy Here", to_tag=to_tag))
            return
        if barge and self._current is not None and self._current.ended_at is None:
            self._current.ended_at, self._current.ended_by = time.monotonic(), "barged"
            self._current = None
        headers = {k: v for k, v in msg.headers if k not in ("via", "content-length")}
        call = CallStats(msg.call_id, msg.get("from"), headers, started_at=time.monotonic())
        self.received.calls.append(call)
        self._calls[msg.call_id] = call
        self._send(build_response(msg, 100, "Trying"), addr)
        self._send(build_response(msg, 180, "Ringing", to_tag=to_tag), addr)
        self._pending[msg.call_id] = (msg, addr, to_tag)
        if self.behaviour == "never":
            return
        self._later(self.answer_delay_s, self._answer, msg.call_id)

    def _answer(self, call_id: str) -> None:
        pending = self._pending.pop(call_id, None)
        if pending is None:
            return  # cancelled meanwhile
        msg, addr, to_tag = pending
        call = self._calls[call_id]
        try:
            offer = parse_sdp(msg.body)
            pt = next(p for p in offer.payload_types if p in (0, 8, 9))
        except (SipError, StopIteration):
            self._final(msg, addr, build_response(msg, 488, "Not Acceptable Here", to_tag=to_tag))
            return
        codec = {0: "PCMU", 8: "PCMA", 9: "G722"}[pt]
        sdp = (
            f"v=0\r\no=loa 1 1 IN IP4 {self.host}\r\ns=loa\r\nc=IN IP4 {self.host}\r\n"
            f"t=0 0\r\nm=audio {self.rtp_port} RTP/AVP {pt}\r\na=rtpmap:{pt} {codec}/8000\r\n"
            "a=recvonly\r\n"
        ).encode()
        contact = f"<sip:{self.name}@{self.host}:{self.sip_port}>"
        resp = build_response(
            msg,
            200,
            "OK",
            to_tag=to_tag,
            extra=[("contact", contact)],
            body=sdp,
            content_type="application/sdp",
        )
        call.answered = True
        if self._current is None or self._current.ended_at is not None:
            self._current = call
        # remember how to reach the caller for a speaker-side BYE
        caller_contact = msg.get("contact").split("<", 1)[-1].split(">", 1)[0] or msg.uri or ""
        to = resp.get("to")
        self._peers[call_id] = ((caller_contact, to, msg.get("from")), addr, 1)
        self._final(msg, addr, resp)
        self._retransmit_ok(msg.call_id, msg.cseq[0], addr, 0.5, 0.0)

    def _retransmit_ok(
        self, call_id: str, cseq: int, addr: tuple[str, int], wait: float, waited: float
    ) -> None:
        """RFC 3261 §13.3.1.4: send the 200 again (T1, doubling up to T2) until the ACK."""
        if (call_id, cseq) not in self._answers or waited >= 32.0:
            return  # ACKed, or given up after 64·T1
        self._later(wait, self._resend_ok, call_id, cseq, addr, wait, waited)

    def _later(self, delay: float, fn: Callable[..., None], *args: object) -> None:
        """call_later, remembering the handle until it fires (stop() cancels what is left)."""

        def fire() -> None:
            self._timers.discard(handle)
            fn(*args)

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(handle)

    def _resend_ok(
        self, call_id: str, cseq: int, addr: tuple[str, int], wait: float, waited: float
    ) -> None:
        data = self._answers.get((call_id, cseq))
        if data is not None:
            self._send(data, addr)
            self._retransmit_ok(call_id, cseq, addr, min(wait * 2, 4.0), waited + wait)

    def _on_cancel(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        self.received.cancels += 1
        self._send(build_response(msg, 200, "OK"), addr)
        pending = self._pending.pop(msg.call_id, None)
        if pending is not None:
            invite, iaddr, to_tag = pending
            call = self._calls.get(msg.call_id)
            if call is not None:
                call.ended_at, call.ended_by = time.monotonic(), "CANCEL"
            resp = build_response(invite, 487, "Request Terminated", to_tag=to_tag)
            self._final(invite, iaddr, resp)

    def _on_bye(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        self.received.byes += 1
        call = self._calls.get(msg.call_id)
        if call is None:
            self._final(msg, addr, build_response(msg, 481, "Call/Transaction Does Not Exist"))
            return
        if call.ended_at is None:
            call.ended_at, call.ended_by = time.monotonic(), "BYE"
        if self._current is call:
            self._current = None
        self._final(msg, addr, build_response(msg, 200, "OK"))

    def _authorised(self, msg: SipMessage) -> bool:
        value = msg.get("authorization")
        if not value.lower().startswith("digest "):
            return False
        p = dict(
            (k.lower(), a or b)
            for k, a, b in re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', value[7:])
        )
        if p.get("nonce") not in self._nonces or p.get("username") != self.username:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - digest auth is MD5

        ha1 = md5(f"{self.username}:{self.realm}:{self.password}")
        ha2 = md5(f"INVITE:{p.get('uri', '')}")
        expected = md5(f"{ha1}:{p['nonce']}:{p.get('nc', '')}:{p.get('cnonce', '')}:auth:{ha2}")
        return secrets.compare_digest(expected, p.get("response", ""))

    # -- RTP ---------------------------------------------------------------------------------

    def _on_rtp(self, data: bytes) -> None:
        call = self._current
        if call is None or call.ended_at is not None or len(data) < 12:
            self.received.stray_packets += 1
            return
        first, second, seq, ts, ssrc = _RTP.unpack_from(data)
        if first >> 6 != 2:
            self.received.stray_packets += 1
            return
        call.packets += 1
        call.bytes += len(data) - 12
        call.payload_types.add(second & 0x7F)
        call.ssrcs.add(ssrc)
        if call.first_marker is None:
            call.first_marker = bool(second & 0x80)
        if self.keep_packets:
            call.audio += data[12:]
            call.seqs.append(seq)
            call.timestamps.append(ts)
            call.arrivals.append(time.monotonic())


async def start_speakers(
    n: int, host: str = "127.0.0.1", *, prefix: str = "loa", **options: object
) -> list[Speaker]:
    """Start ``n`` speakers on ``host`` (``options`` as for ``Speaker``)."""
    speakers = [
        Speaker(f"{prefix}{i + 1}", host=host, **options)  # type: ignore[arg-type]
        for i in range(n)
    ]
    started: list[Speaker] = []
    try:
        for s in speakers:
            started.append(await s.start())
    except BaseException:
        await stop_speakers(started)
        raise
    return started


async def stop_speakers(speakers: Sequence[Speaker]) -> None:
    """Stop every speaker."""
    for s in speakers:
        await s.stop()


async def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run simulated SIP speakers until Ctrl-C.")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default="auto")
    parser.add_argument("--password", default=None, help="challenge INVITEs (digest)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument(
        "--media-port",
        type=int,
        default=None,
        help="answer with this RTP port on --host and open no RTP socket (load tests)",
    )
    args = parser.parse_args(argv)
    speakers = await start_speakers(
        args.count,
        args.host,
        behaviour=args.behaviour,
        password=args.password,
        media_port=args.media_port,
        keep_packets=args.media_port is None,
    )
    for s in speakers:
        print(s.address, flush=True)
    try:
        if args.seconds is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(args.seconds)
    finally:
        for s in speakers:
            print(f"{s.address}: {s.received.summary()}", flush=True)
        await stop_speakers(speakers)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
