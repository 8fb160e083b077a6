"""SIP messages (RFC 3261) and SDP (RFC 4566) as the transport needs them: build, parse, digest.

Only what a calling UAC and a small UAS (the simulated speaker) use: a parser that is strict
about the start line and lenient about header spelling (compact forms, case), a builder that
writes headers in a stable order, the Via/tag/branch helpers, digest authentication (RFC 2617 /
RFC 7616, MD5, MD5-sess, SHA-256, qop=auth) and an SDP offer/answer for G.711.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "PAYLOAD_TYPES",
    "Challenge",
    "SdpMedia",
    "SipAddress",
    "SipError",
    "SipMessage",
    "branch",
    "build_request",
    "build_response",
    "digest_authorization",
    "header_tag",
    "parse_address",
    "parse_challenge",
    "parse_message",
    "parse_sdp",
    "sdp_offer",
    "tag",
]

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: branches of RFC 3261 UAs start with it
#: Static payload types of the codecs the transport speaks (RFC 3551).
PAYLOAD_TYPES: Mapping[str, int] = {"PCMU": 0, "PCMA": 8, "G722": 9}
_CODEC_OF = {v: k for k, v in PAYLOAD_TYPES.items()}
_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
}
_MAX_MESSAGE = 65_535


class SipError(ValueError):
    """A datagram that is not a SIP message we can read (the reason says what is wrong)."""


@dataclass
class SipMessage:
    """One SIP request or response. Header names are kept lower case; values in order."""

    method: str | None = None  # requests
    uri: str | None = None
    status: int | None = None  # responses
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        """Whether this is a request (else a response)."""
        return self.method is not None

    def get(self, name: str, default: str = "") -> str:
        """The first value of a header (case-insensitive), or ``default``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, in order."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    @property
    def call_id(self) -> str:
        """The Call-ID header."""
        return self.get("call-id")

    @property
    def cseq(self) -> tuple[int, str]:
        """The CSeq number and method (``(0, "")`` if unreadable)."""
        parts = self.get("cseq").split()
        if len(parts) != 2 or not parts[0].isdigit():
            return 0, ""
        return int(parts[0]), parts[1].upper()

    @property
    def branch(self) -> str:
        """The branch parameter of the top Via."""
        return _param(self.get("via"), "branch")

    def to_bytes(self) -> bytes:
        """The message on the wire (Content-Length is always written from the body)."""
        if self.is_request:
            start = f"{self.method} {self.uri} SIP/2.0"
        else:
            start = f"SIP/2.0 {self.status} {self.reason}"
        lines = [start]
        lines.extend(f"{_canonical(k)}: {v}" for k, v in self.headers if k != "content-length")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def _canonical(name: str) -> str:
    special = {
        "call-id": "Call-ID",
        "cseq": "CSeq",
        "www-authenticate": "WWW-Authenticate",
        "answer-mode": "Answer-Mode",
        "priv-answer-mode": "Priv-Answer-Mode",
    }
    return special.get(name) or "-".join(p.capitalize() for p in name.split("-"))


def parse_message(data: bytes) -> SipMessage:
    """Parse one SIP message from a datagram; ``SipError`` says why it is not one."""
    if len(data) > _MAX_MESSAGE:
        raise SipError(f"datagram of {len(data)} bytes is too large for SIP over UDP")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
        if not sep:
            raise SipError("no blank line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("headers are not UTF-8 text") from None
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    msg = SipMessage()
    if start.startswith("SIP/2.0 "):
        parts = start.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
            raise SipError(f"bad status line {start[:60]!r}")
        msg.status = int(parts[1])
        if not 100 <= msg.status <= 699:
            raise SipError(f"status code {msg.status} is outside 100-699")
        msg.reason = parts[2] if len(parts) > 2 else ""
    else:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2] != "SIP/2.0" or not re.fullmatch(r"[A-Z]+", parts[0]):
            raise SipError(f"bad start line {start[:60]!r}")
        msg.method, msg.uri = parts[0], parts[1]
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and msg.headers:  # folded continuation line
            key, value = msg.headers[-1]
            msg.headers[-1] = (key, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SipError(f"bad header line {line[:60]!r}")
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if key == "via":  # several Vias may share one line
            msg.headers.extend((key, v.strip()) for v in _split_commas(value))
        else:
            msg.headers.append((key, value.strip()))
    for required in ("call-id", "cseq", "via", "from", "to"):
        if not msg.get(required):
            raise SipError(f"missing {_canonical(required)} header")
    if msg.cseq == (0, ""):
        raise SipError(f"bad CSeq header {msg.get('cseq')[:40]!r}")
    length = msg.get("content-length")
    if length:
        if not length.isdigit():
            raise SipError(f"bad Content-Length {length[:20]!r}")
        n = int(length)
        if n > len(body):
            raise SipError(f"Content-Length {n} but only {len(body)} bytes of body")
        body = body[:n]
    msg.body = body
    return msg


def _split_commas(value: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    depth, quoted = 0, False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        if ch == "," and not quoted and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p for p in (s.strip() for s in out) if p]


def _param(value: str, name: str) -> str:
    m = re.search(rf";\s*{re.escape(name)}\s*=\s*([^;,\s]+)", value, re.IGNORECASE)
    return m.group(1) if m else ""


def tag() -> str:
    """A fresh From/To tag."""
    return secrets.token_hex(6)


def branch() -> str:
    """A fresh Via branch (RFC 3261 magic cookie + random)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


@dataclass(frozen=True)
class SipAddress:
    """Where a speaker is: user part (may be empty), host and port."""

    user: str
    host: str
    port: int

    @property
    def uri(self) -> str:
        """The SIP URI of the speaker."""
        user = f"{self.user}@" if self.user else ""
        return f"sip:{user}{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"


_ADDRESS = re.compile(
    r"^(?:sips?:)?(?:(?P<user>[^@:;]+)@)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+)"
    r"(?::(?P<port>\d{1,5}))?(?:;.*)?$"
)


def parse_address(address: str, default_port: int = 5060) -> SipAddress:
    """``sip:user@host:port``, ``user@host``, ``host:port`` or ``host``; ``ValueError`` if not."""
    m = _ADDRESS.match(address.strip())
    if not m:
        raise ValueError(
            f"device address {address!r} is not a SIP address (give sip:user@host:port or "
            "host:port)"
        )
    port = int(m.group("port") or default_port)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} in device address {address!r} is out of range")
    return SipAddress(m.group("user") or "", m.group("host"), port)


def build_request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    contact: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipMessage:
    """A request with the mandatory headers in RFC 3261 order (CSeq method = ``method``)."""
    headers = [
        ("via", via),
        ("max-forwards", "70"),
        ("from", from_),
        ("to", to),
        ("call-id", call_id),
        ("cseq", f"{cseq} {method}"),
    ]
    if contact:
        headers.append(("contact", contact))
    headers.extend((k.lower(), v) for k, v in extra)
    if body and content_type:
        headers.append(("content-type", content_type))
    return SipMessage(method=method, uri=uri, headers=headers, body=body)


def build_response(
    request: SipMessage,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipMessage:
    """A response to ``request``: Via, From, To (with ``to_tag`` added), Call-ID and CSeq copied."""
    headers = [("via", v) for v in request.get_all("via")]
    to = request.get("to")
    if to_tag and ";tag=" not in to.replace(" ", ""):
        to = f"{to};tag={to_tag}"
    headers += [
        ("from", request.get("from")),
        ("to", to),
        ("call-id", request.call_id),
        ("cseq", request.get("cseq")),
    ]
    headers.extend((k.lower(), v) for k, v in extra)
    if body and content_type:
        headers.append(("content-type", content_type))
    return SipMessage(status=status, reason=reason, headers=headers, body=body)


def header_tag(value: str) -> str:
    """The ``tag`` parameter of a From/To header value."""
    return _param(value, "tag")


# -- digest authentication ---------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` / ``Proxy-Authenticate`` digest challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    """Parse a digest challenge; ``SipError`` if it is not one we can answer."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipError(f"authentication scheme {scheme!r} is not Digest")
    params = dict(
        (k.lower(), v1 if v1 else v2)
        for k, v1, v2 in re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)
    )
    if "nonce" not in params or "realm" not in params:
        raise SipError("digest challenge without realm or nonce")
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() not in ("MD5", "MD5-SESS", "SHA-256", "SHA-256-SESS"):
        raise SipError(f"digest algorithm {algorithm!r} is not supported")
    qop = tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip())
    if qop and "auth" not in qop:
        raise SipError(f"digest qop {params['qop']!r} offers no 'auth'")
    return Challenge(
        params["realm"],
        params["nonce"],
        algorithm,
        qop,
        params.get("opaque"),
        params.get("stale", "").lower() == "true",
    )


def digest_authorization(
    challenge: Challenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The ``Authorization`` value answering ``challenge`` (RFC 2617 / RFC 7616)."""
    alg = challenge.algorithm.upper()

    def h(text: str) -> str:
        fn = hashlib.sha256 if alg.startswith("SHA-256") else hashlib.md5
        return fn(text.encode()).hexdigest()

    cnonce = cnonce or secrets.token_hex(8)
    ha1 = h(f"{username}:{challenge.realm}:{password}")
    if alg.endswith("-SESS"):
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    parts = [
        f'username="{username}"',
        f'realm="{challenge.realm}"',
        f'nonce="{challenge.nonce}"',
        f'uri="{uri}"',
    ]
    if challenge.qop:
        ncv = f"{nc:08x}"
        response = h(f"{ha1}:{challenge.nonce}:{ncv}:{cnonce}:auth:{ha2}")
        parts += [f'response="{response}"', "qop=auth", f"nc={ncv}", f'cnonce="{cnonce}"']
    else:
        parts.append(f'response="{h(f"{ha1}:{challenge.nonce}:{ha2}")}"')
    parts.append(f"algorithm={challenge.algorithm}")
    if challenge.opaque is not None:
        parts.append(f'opaque="{challenge.opaque}"')
    return "Digest " + ", ".join(parts)


# -- SDP ---------------------------------------------------------------------------------------


def sdp_offer(
    host: str, port: int, codecs: Sequence[str], session_id: int, direction: str = "sendrecv"
) -> bytes:
    """An SDP offer for one audio stream with ``codecs`` (names of PAYLOAD_TYPES).

    ``sendrecv`` by default although we only send: some speakers (baresip among them) do not
    play a stream offered ``sendonly``; what they send back is ignored."""
    pts = [PAYLOAD_TYPES[c] for c in codecs]
    rtpmaps = []
    for c in codecs:
        # G.722's RTP clock rate is 8000 although it samples at 16 kHz (RFC 3551 §4.5.2).
        rtpmaps.append(f"a=rtpmap:{PAYLOAD_TYPES[c]} {c}/8000")
    lines = [
        "v=0",
        f"o=tcs {session_id} {session_id} IN IP4 {host}",
        "s=tcs-core",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(map(str, pts))}",
        *rtpmaps,
        "a=ptime:20",
        # RTCP to the RTP socket itself (RFC 3605): port+1 is not ours, and an ICMP error
        # from it makes some speakers drop the session
        f"a=rtcp:{port}",
        f"a={direction}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass(frozen=True)
class SdpMedia:
    """What an SDP answer says about the audio stream: where to send and which payload types."""

    host: str
    port: int
    payload_types: tuple[int, ...]
    direction: str = "sendrecv"

    def codec(self, offered: Sequence[str]) -> str | None:
        """The first of the answer's payload types that we offered (its codec name)."""
        for pt in self.payload_types:
            name = _CODEC_OF.get(pt)
            if name in offered:
                return name
        return None


def parse_sdp(body: bytes) -> SdpMedia:
    """The audio stream of an SDP body; ``SipError`` if there is none usable."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("SDP body is not text") from None
    session_host = ""
    media_host = ""
    port: int | None = None
    pts: tuple[int, ...] = ()
    direction = "sendrecv"
    in_audio = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("c="):
            parts = line[2:].split()
            if len(parts) == 3 and parts[0] == "IN":
                host = parts[2].split("/")[0]
                if in_audio:
                    media_host = host
                elif port is None:
                    session_host = host
        elif line.startswith("m="):
            parts = line[2:].split()
            if parts and parts[0] == "audio" and port is None and len(parts) >= 4:
                if not parts[1].split("/")[0].isdigit():
                    raise SipError(f"bad media port in {line[:60]!r}")
                port = int(parts[1].split("/")[0])
                pts = tuple(int(p) for p in parts[3:] if p.isdigit())
                in_audio = True
            else:
                in_audio = False
        elif in_audio and line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive"):
            direction = line[2:]
    host = media_host or session_host
    if port is None:
        raise SipError("SDP answer has no audio stream (no m=audio line)")
    if not host:
        raise SipError("SDP answer has no connection address (c= line)")
    return SdpMedia(host, port, pts, direction)
