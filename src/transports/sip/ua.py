"""The SIP user agent's transaction layer over one UDP socket (RFC 3261 §17.1, UDP timers).

- INVITE client transactions retransmit on Timer A (T1, doubling) until a provisional response,
  give up on Timer B (64·T1), and ACK a non-2xx final response themselves (same branch), keeping
  the ACK for Timer D to answer retransmissions of that response.
- Non-INVITE client transactions (BYE, CANCEL, OPTIONS) retransmit on Timer E (T1 doubling up to
  T2, then T2) and give up on Timer F (64·T1).
- A 2xx to INVITE is the dialog's business: the ACK (a new transaction) is kept per Call-ID and
  sent again when the 2xx is retransmitted.
- Requests from the far end within a known dialog (BYE) are answered here and handed to the
  dialog's callback; OPTIONS are answered 200 so that speakers checking us see us alive.
- A datagram that is not SIP, from an address we have transactions with, fails those
  transactions with the reason (a technician needs to know the device answers garbage).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from transports.sip.message import SipError, SipMessage, build_response, parse_message

__all__ = [
    "ClientTransaction",
    "Dialog",
    "Interrupted",
    "Malformed",
    "Response",
    "SipEndpoint",
    "Timers",
    "Unreachable",
]

log = logging.getLogger("transports.sip.ua")

Addr = tuple[str, int]
_DRAIN = 512  # datagrams read per wake-up of the SIP socket
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)  # Linux; not exported by every Python


@dataclass(frozen=True)
class Timers:
    """RFC 3261 timer values for UDP (seconds). Tests shorten them; deployments keep them."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:
        """Timer B / F: how long a transaction waits for any response."""
        return 64 * self.t1

    @property
    def d(self) -> float:
        """Timer D: how long a completed INVITE transaction re-ACKs retransmitted finals."""
        return max(32.0 if self.t1 >= 0.5 else 64 * self.t1, 0.0)


@dataclass(frozen=True)
class Malformed:
    """A datagram from a transaction's peer that is not a SIP message we can read."""

    peer: Addr
    reason: str
    snippet: bytes


@dataclass(frozen=True)
class Unreachable:
    """The network said the peer cannot be reached (ICMP port or host unreachable)."""

    peer: Addr
    errno: int
    reason: str


@dataclass(frozen=True)
class Interrupted:
    """Our own side stopped waiting (preemption or shutdown)."""

    why: str


Response = SipMessage | Malformed | Unreachable | Interrupted | None


class ClientTransaction:
    """One request and its responses (``await next()`` yields them; a timeout yields None)."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        request: SipMessage,
        dest: Addr,
    ) -> None:
        self.endpoint = endpoint
        self.request = request
        self.dest = dest
        self.branch = request.branch
        self.invite = request.method == "INVITE"
        # CANCEL shares its INVITE's branch: the method tells the two transactions apart
        self.key = f"{self.branch}/{request.method}"
        self.data = request.to_bytes()
        self.queue: asyncio.Queue[Response] = asyncio.Queue()
        self.final: SipMessage | None = None
        self.provisional = False
        self.terminated = False
        self._ack: bytes | None = None
        self._interval = endpoint.timers.t1
        self.sends = 1
        loop = asyncio.get_running_loop()
        self._retransmit: asyncio.TimerHandle | None = loop.call_later(
            self._interval, self._on_retransmit
        )
        self._timeout: asyncio.TimerHandle | None = loop.call_later(
            endpoint.timers.b, self._on_timeout
        )
        endpoint.send(self.data, dest)

    async def next(self) -> Response:
        """The next response (None: Timer B/F fired, no response at all)."""
        return await self.queue.get()

    def _on_retransmit(self) -> None:
        if self.terminated or self.final is not None:
            return
        self.endpoint.send(self.data, self.dest)
        self.endpoint.retransmissions += 1
        self.sends += 1
        if self.invite:
            self._interval *= 2
        else:
            self._interval = min(self._interval * 2, self.endpoint.timers.t2)
        self._retransmit = asyncio.get_running_loop().call_later(
            self._interval, self._on_retransmit
        )

    def _on_timeout(self) -> None:
        self._timeout = None
        if self.final is None and not self.terminated:
            self.queue.put_nowait(None)
            self.terminate()

    def on_response(self, msg: SipMessage) -> None:
        """A response with our branch arrived."""
        status = msg.status or 0
        if self.final is not None:
            if self._ack is not None:  # retransmitted non-2xx final: ACK again
                self.endpoint.send(self._ack, self.dest)
            return
        if status < 200:
            if not self.provisional:
                self.provisional = True
                if self._retransmit is not None:
                    self._retransmit.cancel()
                    self._retransmit = None
                    if not self.invite:  # Timer E continues at T2 after a provisional
                        self._interval = self.endpoint.timers.t2
                        self._retransmit = asyncio.get_running_loop().call_later(
                            self._interval, self._on_retransmit
                        )
            if self.invite and self._timeout is not None:
                # Timer B only covers "no response at all"; ringing is the caller's to bound.
                self._timeout.cancel()
                self._timeout = None
            self.queue.put_nowait(msg)
            return
        self.final = msg
        self.queue.put_nowait(msg)
        if self.invite and status >= 300:
            self._ack = _ack_for_failure(self.request, msg).to_bytes()
            self.endpoint.send(self._ack, self.dest)
            self._stop_timers()
            # keep answering retransmissions of the final response for Timer D
            handle = asyncio.get_running_loop().call_later(self.endpoint.timers.d, self.terminate)
            self.endpoint._linger[self.key] = handle
        else:
            self.terminate()

    def interrupt(self, why: str) -> None:
        """Wake whoever awaits ``next()`` with an ``Interrupted`` (preemption, shutdown)."""
        self.queue.put_nowait(Interrupted(why))

    def on_malformed(self, bad: Malformed | Unreachable) -> None:
        """Garbage from our peer, or an ICMP error for it: this transaction's answer."""
        if self.final is not None or self.terminated:
            return
        if isinstance(bad, Unreachable) and self.provisional:
            return  # the peer answered already: an ICMP error now is about something else
        self.queue.put_nowait(bad)
        self.terminate()

    def _stop_timers(self) -> None:
        for handle in (self._retransmit, self._timeout):
            if handle is not None:
                handle.cancel()
        self._retransmit = self._timeout = None

    def terminate(self) -> None:
        """Stop retransmitting and forget the transaction."""
        self._stop_timers()
        self.terminated = True
        self.endpoint._forget(self)


def _ack_for_failure(invite: SipMessage, response: SipMessage) -> SipMessage:
    """RFC 3261 §17.1.1.3: the ACK of a non-2xx final has the INVITE's branch and the
    response's To."""
    headers = [
        ("via", invite.get("via")),
        ("max-forwards", "70"),
        ("from", invite.get("from")),
        ("to", response.get("to")),
        ("call-id", invite.call_id),
        ("cseq", f"{invite.cseq[0]} ACK"),
    ]
    route = invite.get_all("route")
    headers += [("route", r) for r in route]
    return SipMessage(method="ACK", uri=invite.uri, headers=headers)


@dataclass
class Dialog:
    """What the endpoint knows of an established call: its ACK and who to tell about a BYE."""

    call_id: str
    peer: Addr
    ack: bytes = b""
    on_bye: Callable[[SipMessage], None] | None = None
    extra: dict[str, str] = field(default_factory=dict)


class SipEndpoint:
    """One UDP socket for every call of a transport: sends requests, routes what comes back.

    The socket is read with ``loop.add_reader`` and drained (up to ``_DRAIN`` datagrams) on
    each wake-up: asyncio's datagram transport reads one datagram per loop iteration, and an
    iteration can include a long frame-clock tick, so thousands of answers would trickle in."""

    def __init__(
        self,
        timers: Timers | None = None,
        user_agent: str = "tcs-core",
        receive_buffer: int = 4 * 1024 * 1024,
    ) -> None:
        self.timers = timers or Timers()
        self.receive_buffer = receive_buffer
        self.user_agent = user_agent
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.local: Addr = ("127.0.0.1", 0)
        self.transactions: dict[str, ClientTransaction] = {}
        self.dialogs: dict[str, Dialog] = {}
        self._linger: dict[str, asyncio.TimerHandle] = {}
        self._by_peer: dict[Addr, set[str]] = {}
        self.retransmissions = 0
        self.malformed = 0
        self.send_drops = 0

    async def open(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind the SIP socket."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # thousands of speakers answer at nearly the same instant: a default-sized buffer
            # drops answers in the burst (the kernel caps this at net.core.rmem_max)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            sock.bind((host, port))
            if sys.platform == "linux":
                # ICMP errors (port or host unreachable) with the address they concern, so a
                # speaker that is off fails at once instead of after every retransmission
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_IP, _IP_RECVERR, 1)
            loop.add_reader(sock.fileno(), self._readable)
        except BaseException:
            sock.close()
            raise
        self.sock, self._loop = sock, loop
        name = sock.getsockname()
        self.local = (str(name[0]), int(name[1]))

    def close(self) -> None:
        """Stop every transaction and close the socket."""
        for tx in list(self.transactions.values()):
            tx.terminate()
        for handle in self._linger.values():
            handle.cancel()
        self._linger.clear()
        self.dialogs.clear()
        sock, self.sock = self.sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()

    def send(self, data: bytes, dest: Addr) -> None:
        """Send a datagram (nothing once closed; a full send buffer drops it, and the
        transaction's retransmission timer sends it again)."""
        if self.sock is None:
            return
        try:
            self.sock.sendto(data, dest)
        except (BlockingIOError, InterruptedError):
            self.send_drops += 1
        except OSError as exc:  # e.g. an ICMP error of an earlier datagram, reported now
            log.debug("SIP send to %s: %s", dest, exc)

    def _readable(self) -> None:
        sock = self.sock
        for _ in range(_DRAIN):
            if sock is None:
                return
            try:
                data, addr = sock.recvfrom(65_535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("SIP socket error: %s", exc)
                self._drain_errors()
                continue
            self.datagram_received(data, addr)
            sock = self.sock

    def start(self, request: SipMessage, dest: Addr) -> ClientTransaction:
        """Send ``request`` to ``dest`` as a new client transaction."""
        tx = ClientTransaction(self, request, dest)
        self.transactions[tx.key] = tx
        self._by_peer.setdefault(dest, set()).add(tx.key)
        return tx

    def _forget(self, tx: ClientTransaction) -> None:
        if self.transactions.get(tx.key) is tx:
            del self.transactions[tx.key]
        handle = self._linger.pop(tx.key, None)
        if handle is not None:
            handle.cancel()
        peers = self._by_peer.get(tx.dest)
        if peers is not None:
            peers.discard(tx.key)
            if not peers:
                del self._by_peer[tx.dest]

    def _drain_errors(self) -> None:
        """Read the ICMP errors queued with IP_RECVERR; fail the transactions to each peer."""
        sock = self.sock
        flag = getattr(socket, "MSG_ERRQUEUE", 0)
        for _ in range(_DRAIN):
            if sock is None or not flag:
                return
            try:
                _, ancdata, _, addr = sock.recvmsg(512, 512, flag)
            except OSError:
                return
            code = 0
            for level, kind, data in ancdata:
                if level == socket.SOL_IP and kind == _IP_RECVERR and len(data) >= 4:
                    code = int.from_bytes(data[:4], sys.byteorder)
            if code not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                continue
            peer: Addr = (str(addr[0]), int(addr[1]))
            what = {
                errno.ECONNREFUSED: "port unreachable: nothing listens for SIP on that port",
                errno.EHOSTUNREACH: "host unreachable",
                errno.ENETUNREACH: "network unreachable",
            }[code]
            bad = Unreachable(peer, code, what)
            for key in list(self._by_peer.get(peer, ())):
                tx = self.transactions.get(key)
                if tx is not None:
                    tx.on_malformed(bad)

    # -- what arrives -----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        peer: Addr = (str(addr[0]), int(addr[1]))
        if not data.strip():
            return  # keep-alive (CRLF)
        try:
            msg = parse_message(data)
        except SipError as exc:
            self.malformed += 1
            bad = Malformed(peer, str(exc), data[:60])
            for b in list(self._by_peer.get(peer, ())):
                tx = self.transactions.get(b)
                if tx is not None:
                    tx.on_malformed(bad)
            return
        if msg.is_request:
            self._on_request(msg, peer)
            return
        tx = self.transactions.get(f"{msg.branch}/{msg.cseq[1]}")
        if tx is not None:
            tx.on_response(msg)
            return
        # a retransmitted 2xx to an INVITE whose transaction is over: ACK it again
        dialog = self.dialogs.get(msg.call_id)
        if (
            dialog is not None
            and msg.cseq[1] == "INVITE"
            and (msg.status or 0) // 100 == 2
            and dialog.ack
        ):
            self.send(dialog.ack, peer)

    def _on_request(self, msg: SipMessage, peer: Addr) -> None:
        method = msg.method
        if method == "ACK":
            return
        dialog = self.dialogs.get(msg.call_id)
        extra = [("user-agent", self.user_agent)]
        if method == "BYE":
            if dialog is None:
                self.send(
                    build_response(
                        msg, 481, "Call/Transaction Does Not Exist", extra=extra
                    ).to_bytes(),
                    peer,
                )
                return
            self.send(build_response(msg, 200, "OK", extra=extra).to_bytes(), peer)
            del self.dialogs[msg.call_id]
            if dialog.on_bye is not None:
                dialog.on_bye(msg)
            return
        if method == "OPTIONS":
            allow = [("allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"), *extra]
            self.send(build_response(msg, 200, "OK", extra=allow).to_bytes(), peer)
            return
        if method == "INVITE":  # we are a caller only
            self.send(build_response(msg, 603, "Decline", extra=extra).to_bytes(), peer)
            return
        self.send(build_response(msg, 405, "Method Not Allowed", extra=extra).to_bytes(), peer)
