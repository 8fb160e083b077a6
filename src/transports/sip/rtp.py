"""RTP (RFC 3550) for G.711: one frame clock that sends the next 20 ms frame of every stream.

A stream is the pre-encoded G.711 bytes of one item, a destination, an SSRC, a sequence number and
a timestamp. The clock ticks every 20 ms against the monotonic clock; each tick sends one frame
of every active stream from one non-blocking UDP socket (a timer per stream would cost a
callback, a wake-up and a heap entry per packet). A tick that is very late is not made up by
bursts: the missed frames are skipped, and the timestamps jump by the skipped time as RFC 3550
asks, so the receiver's playout stays in real time.

On Linux the unicast streams of a tick leave in one ``sendmmsg(2)`` call per 1024 packets (through
``ctypes``: the standard library has no binding): each stream owns a slot in preallocated
``mmsghdr`` / ``iovec`` arrays whose header bytes are packed in place and whose payload pointer
points into the item's encoded bytes, so nothing is copied and the per-packet system call (the
largest cost of a Python sender) is gone. Elsewhere, and for multicast streams (their own
socket options), each packet is one ``send``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import secrets
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
        "base",
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
        "slot",
        "ssrc",
        "started_at",
        "ts",
    )

    def __init__(
        self,
        payload: bytes,
        payload_type: int,
        dest: tuple[str, int] | socket.socket,
        *,
        ssrc: int | None = None,
        start_frame: int = 0,
        on_end: Callable[[RtpStream], None] | None = None,
    ) -> None:
        """``dest``: the speaker's media address (sent from the clock's socket), or a socket of
        the stream's own, connected to its destination (multicast zones)."""
        if len(payload) % FRAME_BYTES:
            raise ValueError("payload must be whole 20 ms frames (use audio.encode)")
        self.payload = payload
        self.payload_type = payload_type
        if isinstance(dest, socket.socket):
            self.addr = dest.getpeername()
            self.send: Callable[[bytes], int] | None = dest.send
        else:
            self.addr = (dest[0], dest[1])
            self.send = None  # set by the clock: its batch slot or its socket
        self.slot = -1
        self.base = 0  # address of the payload's bytes (batch path)
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
    tick_cpu: list[float] = field(default_factory=list)  # CPU seconds each tick's work took
    keep_lateness: bool = False  # keep lateness and tick_cpu samples (benchmarks)

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


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


class _SockAddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_uint16),  # network byte order
        ("sin_addr", ctypes.c_uint32),  # network byte order
        ("sin_zero", ctypes.c_char * 8),
    ]


def _find_sendmmsg() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SENDMMSG = _find_sendmmsg()
_CHUNK = 1024  # UIO_MAXIOV: sendmmsg takes at most this many messages per call


class _Batch:
    """Preallocated sendmmsg arrays: one slot per unicast stream, kept dense (swap on remove)."""

    def __init__(self, sock: socket.socket, capacity: int = 256) -> None:
        self.fd = sock.fileno()
        self.count = 0
        self.by_slot: list[RtpStream] = []
        self.capacity = 0
        self.hdrs: Any = None  # ctypes arrays: c_char * 12n, _IoVec * 2n, _SockAddrIn * n, ...
        self.iovs: Any = None
        self.names: Any = None
        self.msgs: Any = None
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        old = self.capacity
        hdrs = (ctypes.c_char * (12 * capacity))()
        iovs = (_IoVec * (2 * capacity))()
        names = (_SockAddrIn * capacity)()
        msgs = (_MMsgHdr * capacity)()
        h0, n0 = ctypes.addressof(hdrs), ctypes.addressof(names)
        i0, isz = ctypes.addressof(iovs), ctypes.sizeof(_IoVec)
        for i in range(capacity):
            iovs[2 * i].iov_base, iovs[2 * i].iov_len = h0 + 12 * i, 12
            iovs[2 * i + 1].iov_len = FRAME_BYTES
            m = msgs[i].msg_hdr
            m.msg_name, m.msg_namelen = n0 + ctypes.sizeof(_SockAddrIn) * i, 16
            m.msg_iov, m.msg_iovlen = i0 + 2 * i * isz, 2
        if old:
            ctypes.memmove(hdrs, self.hdrs, 12 * old)
            ctypes.memmove(names, self.names, ctypes.sizeof(_SockAddrIn) * old)
            for i in range(old):
                iovs[2 * i + 1].iov_base = self.iovs[2 * i + 1].iov_base
        self.capacity = capacity
        self.hdrs, self.iovs, self.names, self.msgs = hdrs, iovs, names, msgs
        # the payload pointer of slot i is the 64-bit word 4*i+2 of the iovec array
        self.words = memoryview(iovs).cast("B").cast("Q")
        self.msgs_at = ctypes.addressof(msgs)

    def add(self, stream: RtpStream) -> None:
        if self.count == self.capacity:
            self._alloc(self.capacity * 2)
        slot = self.count
        self.count += 1
        self.by_slot.append(stream)
        name = self.names[slot]
        name.sin_family = socket.AF_INET
        name.sin_port = socket.htons(stream.addr[1])
        name.sin_addr = int.from_bytes(socket.inet_aton(stream.addr[0]), sys.byteorder)
        stream.slot = slot
        stream.base = ctypes.cast(ctypes.c_char_p(stream.payload), ctypes.c_void_p).value or 0

    def remove(self, stream: RtpStream) -> None:
        slot, last = stream.slot, self.count - 1
        if slot < 0:
            return
        if slot != last:  # move the last stream into the hole, with what it already holds
            moved = self.by_slot[last]
            ctypes.memmove(ctypes.addressof(self.hdrs) + 12 * slot,
                           ctypes.addressof(self.hdrs) + 12 * last, 12)  # fmt: skip
            ctypes.memmove(ctypes.addressof(self.names[slot]),
                           ctypes.addressof(self.names[last]), 16)  # fmt: skip
            self.words[4 * slot + 2] = self.words[4 * last + 2]
            self.by_slot[slot] = moved
            moved.slot = slot
        self.by_slot.pop()
        self.count -= 1
        stream.slot = -1

    def flush(self, stats: ClockStats) -> None:
        """Send every slot's packet: one system call per 1024 packets."""
        assert _SENDMMSG is not None
        n, off, retried = self.count, 0, False
        size = ctypes.sizeof(_MMsgHdr)
        while off < n:
            r = _SENDMMSG(self.fd, self.msgs_at + off * size, min(_CHUNK, n - off), 0)
            if r > 0:
                stats.packets += r
                off += r
                retried = False
                continue
            err = ctypes.get_errno()
            if r == 0 or err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                stats.dropped += n - off
                return
            if not retried and err in (errno.ECONNREFUSED, errno.EHOSTUNREACH):
                retried = True  # an ICMP error of an earlier packet, reported now: try again
                continue
            stats.send_errors += 1
            off += 1  # this message cannot go out: skip it, send the others
            retried = False


class FrameClock:
    """The single 20 ms clock of a transport. ``add`` a stream; it ends by itself or by ``stop``.

    ``sock`` sends the streams that give a destination address (batched with sendmmsg on
    Linux unless ``batch=False``); streams with a socket of their own send on it."""

    def __init__(
        self,
        sock: socket.socket | None = None,
        *,
        stats: ClockStats | None = None,
        batch: bool = True,
    ) -> None:
        self.stats = stats or ClockStats()
        self.streams: list[RtpStream] = []
        self.sock: socket.socket | None = None
        self.batch_enabled = batch
        self._batch: _Batch | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        if sock is not None:
            self.attach(sock)

    def attach(self, sock: socket.socket) -> None:
        """Use ``sock`` for the streams that give an address (before any is added)."""
        self.sock = sock
        self._batch = _Batch(sock) if self.batch_enabled and _SENDMMSG is not None else None

    @property
    def batched(self) -> bool:
        """Whether unicast packets leave through sendmmsg."""
        return self._batch is not None

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
        if stream.send is None:
            if self.sock is None:
                raise RuntimeError("the frame clock has no socket for address streams")
            if self._batch is not None:
                self._batch.add(stream)
            else:
                sendto, addr = self.sock.sendto, stream.addr
                stream.send = lambda data: sendto(data, addr)
        self.streams.append(stream)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="tcs-sip-frame-clock")
        elif self._wake is not None:
            self._wake.set()
        return stream.done

    def stop(self, stream: RtpStream, why: str = "stopped") -> None:
        """Stop sending ``stream`` now (no further packets after this call returns)."""
        if stream.slot >= 0 and self._batch is not None:
            self._batch.remove(stream)
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
                cpu = time.process_time()
                self._tick(skip)
                stats.tick_cpu.append(time.process_time() - cpu)
            else:
                self._tick(skip)
            next_at += TICK_S

    def _tick(self, skip: int) -> None:
        """Send the next frame of every stream (the hot loop: keep it small)."""
        pack = _HEADER.pack
        batch = self._batch
        if batch is not None:
            pack_into, hdrs, words = _HEADER.pack_into, batch.hdrs, batch.words
        stats = self.stats
        finished: list[RtpStream] = []
        sent = 0
        for s in self.streams:
            if skip:
                advance = min(skip, (len(s.payload) - s.pos) // FRAME_BYTES)
                s.pos += advance * FRAME_BYTES
                s.ts = (s.ts + advance * FRAME_BYTES) & 0xFFFFFFFF
                s.skipped += advance
                if s.pos >= len(s.payload):  # nothing left to send this tick
                    if batch is not None and s.slot >= 0:
                        batch.remove(s)
                    finished.append(s)
                    continue
            pos = s.pos
            if s.marker:
                first = s.payload_type | 0x80
                s.marker = False
            else:
                first = s.payload_type
            slot = s.slot
            if slot >= 0:
                pack_into(hdrs, 12 * slot, _V2, first, s.seq, s.ts, s.ssrc)
                words[4 * slot + 2] = s.base + pos
            else:
                packet = pack(_V2, first, s.seq, s.ts, s.ssrc) + s.payload[pos : pos + FRAME_BYTES]
                try:
                    s.send(packet)  # type: ignore[misc]
                    sent += 1
                except BlockingIOError:
                    stats.dropped += 1
                except OSError as exc:
                    stats.send_errors += 1
                    if exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                        log.warning("RTP send to %s failed: %s", s.addr, exc)
            s.seq = (s.seq + 1) & 0xFFFF
            s.ts = (s.ts + FRAME_BYTES) & 0xFFFFFFFF
            s.pos = pos + FRAME_BYTES
            s.sent += 1
            if s.pos >= len(s.payload):
                finished.append(s)
        stats.packets += sent
        if batch is not None and batch.count:
            batch.flush(stats)
        for s in finished:
            self.stop(s, "finished")
