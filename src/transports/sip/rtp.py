"""RTP (RFC 3550) for G.711: one frame clock that sends the next 20 ms frame of every stream.

A stream is the pre-encoded G.711 bytes of one item, a destination, an SSRC, a sequence number and
a timestamp. The clock ticks every 20 ms against the monotonic clock; each tick sends one frame
of every active stream from one non-blocking UDP socket (a timer per stream would cost a
callback, a wake-up and a heap entry per packet). A tick that is very late is not made up by
bursts: the missed frames are skipped, and the timestamps jump by the skipped time as RFC 3550
asks, so the receiver's playout stays in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from transports.sip.audio import FRAME_BYTES

__all__ = ["ClockStats", "FrameClock", "RtpStream", "open_rtp_socket"]

log = logging.getLogger("transports.sip.rtp")

TICK_S = 0.020
_HEADER = struct.Struct("!BBHII")
_V2 = 0x80  # version 2, no padding, no extension, no CSRC
_MAX_SKIP_TICKS = 2  # later than this many ticks: skip frames instead of sending them in a burst


class RtpStream:
    """One item being sent as RTP on a socket connected to its destination (a speaker's media
    address or a multicast group)."""

    __slots__ = (
        "addr",
        "done",
        "ended_by",
        "frames",
        "marker",
        "on_end",
        "payload",
        "payload_type",
        "pos",
        "send",
        "sent",
        "seq",
        "skipped",
        "ssrc",
        "started_at",
        "ts",
    )

    def __init__(
        self,
        payload: bytes,
        payload_type: int,
        sock: socket.socket,
        *,
        ssrc: int | None = None,
        start_frame: int = 0,
        on_end: Callable[[RtpStream], None] | None = None,
    ) -> None:
        if len(payload) % FRAME_BYTES:
            raise ValueError("payload must be whole 20 ms frames (use audio.encode)")
        self.payload = payload
        self.payload_type = payload_type
        self.addr = sock.getpeername()
        self.send = sock.send  # a socket connected to the speaker or the multicast group
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.seq = secrets.randbits(16)  # random initial values (RFC 3550 §5.1)
        self.ts = secrets.randbits(32)
        self.pos = min(start_frame * FRAME_BYTES, len(payload))
        self.frames = len(payload) // FRAME_BYTES
        self.marker = True  # first packet of the talkspurt
        self.sent = 0
        self.skipped = 0
        self.on_end = on_end
        self.done: asyncio.Future[str] | None = None
        self.ended_by = ""
        self.started_at = 0.0

    @property
    def remaining_s(self) -> float:
        """Audio still to send, in seconds."""
        return (len(self.payload) - self.pos) / FRAME_BYTES * TICK_S


@dataclass
class ClockStats:
    """What the frame clock did: ticks, packets, lateness samples (seconds), send errors."""

    ticks: int = 0
    packets: int = 0
    skipped_ticks: int = 0
    send_errors: int = 0
    dropped: int = 0  # frames the kernel refused (send buffer full)
    lateness: list[float] = field(default_factory=list)
    keep_lateness: bool = False

    def percentile(self, q: float) -> float:
        """Tick lateness at quantile ``q`` (0..1), seconds."""
        if not self.lateness:
            return 0.0
        data = sorted(self.lateness)
        return data[min(len(data) - 1, int(q * len(data)))]


def open_rtp_socket(
    host: str = "0.0.0.0",  # noqa: S104 - senders may bind every interface
    *,
    ttl: int | None = None,
    interface: str | None = None,
    send_buffer: int = 4 * 1024 * 1024,
) -> socket.socket:
    """A non-blocking UDP socket for sending RTP (multicast TTL and interface when given)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # a smaller buffer only means more drops under load
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        sock.bind((host, 0))
        if ttl is not None:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        if interface is not None:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    except BaseException:
        sock.close()
        raise
    return sock


class FrameClock:
    """The single 20 ms clock of a transport. ``add`` a stream; it ends by itself or by ``stop``."""

    def __init__(self, *, stats: ClockStats | None = None) -> None:
        self.stats = stats or ClockStats()
        self.streams: list[RtpStream] = []
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        """Whether the clock task is alive."""
        return self._task is not None and not self._task.done()

    def add(self, stream: RtpStream) -> asyncio.Future[str]:
        """Start sending ``stream`` from the next tick; the future resolves with why it ended."""
        loop = asyncio.get_running_loop()
        stream.done = loop.create_future()
        stream.started_at = time.monotonic()
        if stream.pos >= len(stream.payload):
            self._finish(stream, "finished")
            return stream.done
        self.streams.append(stream)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="tcs-sip-frame-clock")
        elif self._wake is not None:
            self._wake.set()
        return stream.done

    def stop(self, stream: RtpStream, why: str = "stopped") -> None:
        """Stop sending ``stream`` now (no further packets after this call returns)."""
        if stream in self.streams:
            self.streams.remove(stream)
        self._finish(stream, why)

    async def close(self) -> None:
        """Stop every stream and the clock task."""
        for s in list(self.streams):
            self.stop(s, "transport closed")
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _finish(self, stream: RtpStream, why: str) -> None:
        stream.ended_by = stream.ended_by or why
        if stream.done is not None and not stream.done.done():
            stream.done.set_result(stream.ended_by)
        if stream.on_end is not None:
            cb, stream.on_end = stream.on_end, None
            try:
                cb(stream)
            except Exception:
                log.exception("RTP stream end callback failed")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stats = self.stats
        next_at = loop.time() + TICK_S
        while True:
            if not self.streams:
                # idle: sleep until a stream is added (no wake-ups while nothing plays)
                assert self._wake is not None
                self._wake.clear()
                await self._wake.wait()
                next_at = loop.time() + TICK_S
                continue
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            late = now - next_at
            skip = 0
            if late > _MAX_SKIP_TICKS * TICK_S:
                skip = int(late / TICK_S)
                stats.skipped_ticks += skip
                next_at += skip * TICK_S
            stats.ticks += 1
            if stats.keep_lateness:
                stats.lateness.append(late)
            self._tick(skip)
            next_at += TICK_S

    def _tick(self, skip: int) -> None:
        """Send the next frame of every stream (the hot loop: keep it small)."""
        pack = _HEADER.pack
        finished: list[RtpStream] = []
        sent = 0
        for s in self.streams:
            if skip:
                advance = min(skip, (len(s.payload) - s.pos) // FRAME_BYTES)
                s.pos += advance * FRAME_BYTES
                s.ts = (s.ts + advance * FRAME_BYTES) & 0xFFFFFFFF
                s.skipped += advance
            pos = s.pos
            if pos >= len(s.payload):
                finished.append(s)
                continue
            if s.marker:
                first = s.payload_type | 0x80
                s.marker = False
            else:
                first = s.payload_type
            packet = pack(_V2, first, s.seq, s.ts, s.ssrc) + s.payload[pos : pos + FRAME_BYTES]
            try:
                s.send(packet)
                sent += 1
            except BlockingIOError:
                self.stats.dropped += 1
            except OSError as exc:
                self.stats.send_errors += 1
                if exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    log.warning("RTP send to %s failed: %s", s.addr, exc)
            s.seq = (s.seq + 1) & 0xFFFF
            s.ts = (s.ts + FRAME_BYTES) & 0xFFFFFFFF
            s.pos = pos + FRAME_BYTES
            s.sent += 1
            if s.pos >= len(s.payload):
                finished.append(s)
        self.stats.packets += sent
        for s in finished:
            self.stop(s, "finished")
