"""The SIP/RTP speaker transport against the simulated speaker (examples/simulated_speaker.py):
SIP and SDP codec, digest, G.711, profiles, the frame clock, calls, busy and preemption, paging,
failure reasons, leaks, and the transport conformance suite.

The tests against sipp, baresip and espeak-ng (real peers) are in tests/test_sip_peers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import io
import itertools
import math
import os
import re
import socket
import statistics
import struct
import sys
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from tcs_core import Category, ScheduleSpec, Settings, SourceSystem, Targets
from tcs_core.domain.values import (
    AudioContent,
    BoardContent,
    Channel,
    DeviceKind,
    OutcomeStatus,
    Priority,
    SpeechContent,
)
from tcs_core.scheduler import Scheduler, VirtualClock
from tcs_core.testing.conformance import TransportConformance, make_context
from tcs_core.transport import DeviceTarget, Limits, Transport
from transports.sip import (
    AudioCache,
    AudioError,
    ClockStats,
    FrameClock,
    RtpStream,
    SipError,
    SipTransport,
    Timers,
    build_request,
    build_response,
    decode_wav,
    digest_authorization,
    encode,
    open_rtp_socket,
    parse_address,
    parse_challenge,
    parse_message,
    parse_sdp,
    parse_zones,
    profile_of,
    sdp_offer,
)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from simulated_speaker import Speaker, start_speakers, stop_speakers  # noqa: E402

RTP = struct.Struct("!BBHII")


# -- helpers ------------------------------------------------------------------------------------


def tone_wav(seconds: float, rate: int = 22_050, channels: int = 1, width: int = 2) -> bytes:
    """A 440 Hz tone as a PCM WAV."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        n = int(rate * seconds)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(n))
        if width == 2:
            frame = b"".join(struct.pack("<h", s) * channels for s in samples)
        else:
            frame = b"".join(bytes([(s >> 8) + 128]) * channels for s in samples)
        w.writeframes(frame)
    return buf.getvalue()


class Library:
    """A media resolver over WAVs held in memory (what a province's media store would serve)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def add(self, name: str, data: bytes) -> AudioContent:
        uri = f"https://media.tinh.example.vn/{name}"
        self.files[uri] = data
        duration = len(decode_wav(data).samples) / 16_000
        return AudioContent(uri, hashlib.sha256(data).hexdigest(), duration)

    async def __call__(self, content: AudioContent) -> bytes:
        if content.uri not in self.files:
            raise AudioError(f"{content.uri} is not in the media library")
        return self.files[content.uri]


def speaker_device(
    speaker: Speaker, n: int = 1, name: str | None = None, **settings: str
) -> DeviceTarget:
    """A device target for a simulated speaker."""
    return DeviceTarget(
        UUID(int=n),
        name or f"Loa thôn {n}",
        DeviceKind.IP_SPEAKER,
        speaker.address,
        settings,
        (Channel.AUDIO,),
    )


def fast_transport(library: Library, **kwargs: Any) -> SipTransport:
    """A transport with short SIP timers, as tests want it (deployments keep RFC values)."""
    options: dict[str, Any] = {
        "local_host": "127.0.0.1",
        "timers": Timers(t1=0.05),
        "answer_timeout_s": 1.0,
        "response_timeout_s": 1.0,
        "limits": Limits(concurrency=100, timeout_s=3.0),
        "media": library,
        "busy_retry_s": 20.0,
        "emergency_retry_interval_s": 0.1,
    }
    options.update(kwargs)
    return SipTransport(**options)


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 with nothing listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until true (fails the test on timeout)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def check_rtp(call: Any, payload_type: int, seconds: float, clock: ClockStats) -> None:
    """Pins RTP as the speaker received it: PT, marker, one SSRC, seq +1, timestamps covering the
    item in steps of 160, 20 ms pacing. ``clock`` is the sender's: if it had to skip late ticks
    (a starved machine), the skipped frames show as timestamp jumps and the exact count and
    drift checks are left out."""
    expected = math.ceil(round(seconds / 0.02, 6))
    assert call.payload_types == {payload_type}
    assert call.first_marker is True
    assert len(call.ssrcs) == 1
    steps = {(b - a) & 0xFFFF for a, b in itertools.pairwise(call.seqs)}
    assert steps == {1}, steps
    ts_steps = [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(call.timestamps)]
    assert all(step % 160 == 0 for step in ts_steps), set(ts_steps)
    assert sum(ts_steps) // 160 + 1 == expected  # the timestamps span the whole item
    gaps = [b - a for a, b in itertools.pairwise(call.arrivals)]
    assert 0.018 <= statistics.median(gaps) <= 0.022, statistics.median(gaps)
    if clock.skipped_ticks == 0:
        assert call.packets == expected, (call.packets, expected)
        assert set(ts_steps) == {160}, set(ts_steps)
        mean = (call.arrivals[-1] - call.arrivals[0]) / (len(call.arrivals) - 1)
        assert 0.0195 <= mean <= 0.0205, mean  # a clock, not a timer per packet: no drift


@contextlib.asynccontextmanager
async def running(transport: SipTransport) -> AsyncIterator[SipTransport]:
    await transport.open()
    try:
        yield transport
    finally:
        await transport.close()


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


# -- SIP and SDP ----------------------------------------------------------------------------------


def test_request_round_trips_and_compact_headers_are_read() -> None:
    """A built request parses back; compact header names and several Vias on a line are read."""
    req = build_request(
        "INVITE",
        "sip:loa@10.0.0.5:5060",
        via="SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc;rport",
        from_="<sip:tcs@10.0.0.1>;tag=1",
        to="<sip:loa@10.0.0.5>",
        call_id="x@y",
        cseq=7,
        extra=[("call-info", "<sip:10.0.0.5>;answer-after=0")],
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    back = parse_message(req.to_bytes())
    assert back.method == "INVITE" and back.cseq == (7, "INVITE") and back.branch == "z9hG4bKabc"
    assert back.get("Call-Info") == "<sip:10.0.0.5>;answer-after=0" and back.body == b"v=0\r\n"
    compact = (
        b"SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"
        b"\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>;tag=2\r\ni: cid\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"
    )
    msg = parse_message(compact)
    assert msg.status == 180 and msg.call_id == "cid" and len(msg.get_all("via")) == 2
    resp = build_response(back, 200, "OK", to_tag="t9")
    assert parse_message(resp.to_bytes()).get("to").endswith(";tag=t9")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x00\xff<html>", "no blank line"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "bad start line"),
        (b"SIP/2.0 99 Odd\r\n\r\n", "bad status line"),
        (b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", "missing"),
        (b"SIP/2.0 200 OK\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: c\r\nCSeq: x\r\n\r\n", "CSeq"),
        (
            b"SIP/2.0 200 OK\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
            b"Content-Length: 50\r\n\r\nshort",
            "Content-Length 50",
        ),
    ],
)
def test_malformed_datagrams_are_refused_with_the_reason(data: bytes, why: str) -> None:
    """What is not SIP raises SipError saying what is wrong."""
    with pytest.raises(SipError, match=why):
        parse_message(data)


def test_digest_matches_the_rfc_2617_example() -> None:
    """The digest response equals RFC 2617 §3.5's worked example (qop=auth)."""
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = digest_authorization(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b"
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value and "nc=00000001" in value
    with pytest.raises(SipError, match="not Digest"):
        parse_challenge('Basic realm="x"')


def test_sdp_offer_and_answer() -> None:
    """The offer lists PCMU and PCMA at 20 ms with RTCP on the RTP port; the answer's address and
    codec are read."""
    offer = sdp_offer("10.0.0.1", 4000, ("PCMU", "PCMA"), 42).decode()
    assert "m=audio 4000 RTP/AVP 0 8" in offer and "a=ptime:20" in offer
    assert "a=rtcp:4000" in offer and "a=sendrecv" in offer
    assert "a=sendonly" in sdp_offer("h", 1, ("PCMU",), 1, "sendonly").decode()
    answer = parse_sdp(b"v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 5004 RTP/AVP 8 101\r\na=recvonly\r\n")
    assert (answer.host, answer.port, answer.direction) == ("10.0.0.9", 5004, "recvonly")
    assert answer.codec(("PCMU", "PCMA")) == "PCMA" and answer.codec(("PCMU",)) is None
    with pytest.raises(SipError, match="no audio stream"):
        parse_sdp(b"v=0\r\nc=IN IP4 1.2.3.4\r\n")


def test_addresses() -> None:
    """Speaker addresses: sip URIs, user@host, host:port, host; garbage is refused."""
    assert parse_address("sip:loa@10.1.2.3:5080").uri == "sip:loa@10.1.2.3:5080"
    assert parse_address("10.1.2.3").hostport == "10.1.2.3:5060"
    assert parse_address("loa7@speaker.xa.vn").user == "loa7"
    with pytest.raises(ValueError, match="not a SIP address"):
        parse_address("http://x/y z")


# -- audio --------------------------------------------------------------------------------------


def test_g711_encoding_pads_whole_frames_and_wav_is_resampled() -> None:
    """WAV (22.05 kHz stereo 16-bit, or 8-bit) becomes 8 kHz mono; G.711 pads to 160-byte frames."""
    pcm = decode_wav(tone_wav(1.0, channels=2))
    assert abs(pcm.duration_s - 1.0) < 0.01
    assert abs(decode_wav(tone_wav(0.5, rate=16_000, width=1)).duration_s - 0.5) < 0.01
    for codec, silence in (("PCMU", 0xFF), ("PCMA", 0xD5)):
        data = encode(decode_wav(tone_wav(0.03)), codec)
        assert len(data) == 320 and data[-1] == silence
    assert encode(decode_wav(tone_wav(0.0)), "PCMU") == b""
    with pytest.raises(AudioError, match="not a PCM WAV"):
        decode_wav(b"ID3\x03mp3 data", "ban-tin.mp3")


def test_cache_renders_each_item_once() -> None:
    """Many concurrent requests for one item decode it once; each codec is encoded once."""
    library = Library()
    content = library.add("a.wav", tone_wav(0.2))

    async def main() -> None:
        cache = AudioCache(library, None)
        results = await asyncio.gather(*(cache.get(content, "PCMU") for _ in range(50)))
        assert len({id(r) for r in results}) == 1 and cache.renders == 1
        await cache.get(content, "PCMA")
        assert cache.renders == 1
        bad = AudioContent(content.uri, "0" * 64)
        with pytest.raises(AudioError, match="SHA-256"):
            await cache.get(bad, "PCMU")
        with pytest.raises(AudioError, match="no text-to-speech renderer"):
            await cache.get(SpeechContent("Xin chào"), "PCMU")

    run(main)


# -- profiles -----------------------------------------------------------------------------------


def test_profiles_choose_the_auto_answer_form() -> None:
    """Each profile names its auto-answer header; unknown profiles and codecs are refused."""
    assert profile_of({}).name == "generic"
    assert ("Call-Info", "<sip:10.0.0.5>;answer-after=0") in profile_of({}).invite_headers(
        "10.0.0.5"
    )
    assert profile_of({"profile": "alert-info"}).invite_headers("h") == [
        ("Alert-Info", "info=alert-autoanswer")
    ]
    assert profile_of({"profile": "intercom"}).uri_params == ";intercom=true"
    am = profile_of({"profile": "answer-mode"})
    assert am.invite_headers("h") == [("Answer-Mode", "Auto")]
    assert am.barge_headers == (("Priv-Answer-Mode", "Auto"),)
    assert profile_of({"profile": "none"}).invite_headers("h") == []
    assert profile_of({"codecs": "pcma"}).codecs == ("PCMA",)
    assert profile_of({"sdp_direction": "sendonly"}).direction == "sendonly"
    with pytest.raises(ValueError, match="give PCMU, PCMA and/or G722"):
        profile_of({"codecs": "OPUS"})
    with pytest.raises(ValueError, match="choose one of: alert-info, answer-mode"):
        profile_of({"profile": "acme"})


def test_zones() -> None:
    """Paging zones by priority; a zone without a port is refused naming it."""
    zones = parse_zones("normal=239.0.1.1:5004, emergency=239.0.1.9:5006")
    assert zones[Priority.EMERGENCY].addr == ("239.0.1.9", 5006)
    with pytest.raises(ValueError, match="give LEVEL=GROUP:PORT"):
        parse_zones("normal=239.0.1.1")
    with pytest.raises(ValueError, match="must be normal, priority or emergency"):
        parse_zones("urgent=239.0.1.1:5004")


# -- the frame clock ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [True, False], ids=["sendmmsg", "send-per-packet"])
def test_one_frame_clock_sends_every_stream_each_tick(batch: bool) -> None:
    """One clock task sends the next frame of each stream per tick (streams sent from the clock's
    socket, batched or not, and streams with their own socket); streams of different lengths
    end on their own, and one stopped mid-way sends nothing more."""

    async def main() -> None:
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        shared = open_rtp_socket("127.0.0.1")
        own = [open_rtp_socket("127.0.0.1") for _ in range(10)]
        for sock in own:
            sock.connect(sink.getsockname())
        clock = FrameClock(shared, stats=ClockStats(keep_lateness=True), batch=batch)
        before = len(asyncio.all_tasks())
        streams = [
            RtpStream(
                bytes([i]) * 160 * (5 + i),
                0 if i % 2 else 8,
                own[i // 2] if i % 2 else sink.getsockname(),
                ssrc=i,
            )
            for i in range(20)
        ]
        done = [clock.add(s) for s in streams]
        assert len(asyncio.all_tasks()) == before + 1  # one clock, not one timer per stream
        await asyncio.sleep(0.07)
        clock.stop(streams[18], "preempted")  # stopped mid-way: nothing more is sent for it
        stopped_at = streams[18].sent
        ends = await asyncio.gather(*done)
        assert ends.count("finished") == 19 and ends[18] == "preempted"
        got: dict[int, list[tuple[int, int, int, bytes]]] = {}
        with contextlib.suppress(BlockingIOError):
            while True:
                data = sink.recv(2048)
                _, second, seq, ts, ssrc = RTP.unpack_from(data)
                got.setdefault(ssrc, []).append((second, seq, ts, data[12:]))
        for i, s in enumerate(streams):
            packets = got[i]
            expected = stopped_at if i == 18 else 5 + i
            # a tick more than 40 ms late (a loaded machine) skips frames instead of bursting
            assert len(packets) + s.skipped == expected and s.sent == len(packets)
            pt = 0 if i % 2 else 8
            assert packets[0][0] == 0x80 | pt and all(p[0] == pt for p in packets[1:])
            assert all(p[3] == bytes([i]) * 160 for p in packets)  # its own payload
            assert all((b[1] - a[1]) & 0xFFFF == 1 for a, b in itertools.pairwise(packets))
        assert clock.batched is (batch and sys.platform == "linux")
        assert clock.stats.packets == sum(len(p) for p in got.values())
        await clock.close()
        for sock in (*own, shared, sink):
            sock.close()

    run(main)


# -- calls to the simulated speaker ---------------------------------------------------------------


def test_call_streams_g711_at_20_ms_and_bye_ends_it() -> None:
    """A call: auto-answer header, PCMU RTP (count, marker, seq, ts, 20 ms), then BYE."""
    library = Library()
    content = library.add("ban-tin.wav", tone_wav(1.0))

    async def main() -> None:
        (speaker,) = await start_speakers(1)
        device = speaker_device(speaker)
        async with running(fast_transport(library)) as transport:
            outcome = await transport.deliver(device, content, "k1", make_context())
            assert outcome.status is OutcomeStatus.DELIVERED, outcome.reason
            assert outcome.remote_id and "PCMU 1.0 s" in outcome.reason
            call = speaker.received.calls[0]
            assert call.headers["call-info"].endswith(";answer-after=0")
            assert call.headers["alert-info"].endswith("info=alert-autoanswer")
            await wait_for(lambda: call.ended_by == "BYE")
            check_rtp(call, 0, 1.0, transport.clock_stats)
            assert transport.active(device.device_id) is None
            assert transport.history[-1].ended_by.startswith("the audio ended (BYE answered 200")
        await stop_speakers([speaker])

    run(main)


def test_pcma_when_the_profile_says_so_and_duration_caps_the_item() -> None:
    """codecs=PCMA gives payload type 8; the context's duration cuts a longer recording."""
    library = Library()
    content = library.add("dai.wav", tone_wav(2.0))

    async def main() -> None:
        (speaker,) = await start_speakers(1)
        device = speaker_device(speaker, codecs="PCMA", profile="answer-mode")
        async with running(fast_transport(library)) as transport:
            outcome = await transport.deliver(device, content, "k", make_context(duration_s=0.5))
            assert outcome.status is OutcomeStatus.DELIVERED, outcome.reason
            call = speaker.received.calls[0]
            assert call.headers["answer-mode"] == "Auto"
            await wait_for(lambda: call.ended_by == "BYE")
            check_rtp(call, 8, 0.5, transport.clock_stats)
        await stop_speakers([speaker])

    run(main)


def test_g722_when_the_device_asks_for_it() -> None:
    """codecs=G722,PCMU offers G.722 first; the speaker takes it (payload type 9, 160-byte
    frames every 20 ms) and what it receives decodes back to the tone. Without the g722
    package the setting is refused, saying what to install."""
    library = Library()
    content = library.add("rong.wav", tone_wav(0.6, rate=16_000))
    try:
        g722: Any = importlib.import_module("G722")
    except ImportError:
        with pytest.raises(ValueError, match="needs the g722 package"):
            profile_of({"codecs": "G722,PCMU"})
        return

    async def main() -> None:
        (speaker,) = await start_speakers(1)
        device = speaker_device(speaker, codecs="G722,PCMU")
        async with running(fast_transport(library)) as transport:
            outcome = await transport.deliver(device, content, "k", make_context())
            assert outcome.status is OutcomeStatus.DELIVERED and "G722 0.6 s" in outcome.reason
            call = speaker.received.calls[0]
            await wait_for(lambda: call.ended_by == "BYE")
            check_rtp(call, 9, 0.6, transport.clock_stats)
            assert call.bytes == call.packets * 160
        pcm = g722.G722(16_000, 64_000).decode(bytes(call.audio))
        sent = decode_wav(tone_wav(0.6, rate=16_000)).samples
        rms_in = math.sqrt(sum(x * x for x in struct.unpack(f"<{len(sent) // 2}h", sent)) / 9600)
        rms_out = math.sqrt(sum(x * x for x in pcm) / len(pcm))
        assert 0.7 * rms_in < rms_out < 1.3 * rms_in, (rms_in, rms_out)
        await stop_speakers([speaker])

    run(main)


def test_digest_authentication_and_wrong_password() -> None:
    """A challenging speaker: the right password is answered; a wrong one, no password setting
    or an unset variable each fail saying what to fix."""
    library = Library()
    content = library.add("a.wav", tone_wav(0.2))
    env = {"LOA_PASS": "mat-khau-dung", "LOA_BAD": "sai"}

    async def main() -> None:
        (speaker,) = await start_speakers(1, password="mat-khau-dung", username="loa")
        async with running(fast_transport(library, environ=env)) as transport:
            good = speaker_device(speaker, 1, username="loa", password="env:LOA_PASS")
            outcome = await transport.deliver(good, content, "a", make_context())
            assert outcome.status is OutcomeStatus.DELIVERED, outcome.reason
            assert "401 challenge answered" in outcome.reason
            bad = speaker_device(speaker, 2, "Loa chợ", username="loa", password="env:LOA_BAD")
            await wait_for(lambda: not speaker.in_call)
            outcome = await transport.deliver(bad, content, "b", make_context())
            assert outcome.status is OutcomeStatus.FAILED
            assert "Loa chợ" in outcome.reason and "wrong username or password" in outcome.reason
            assert "sai" not in outcome.reason  # the secret never reaches the outcome
            none = speaker_device(speaker, 3, "Loa 3")
            outcome = await transport.deliver(none, content, "c", make_context())
            assert outcome.status is OutcomeStatus.FAILED
            assert "requires a password" in outcome.reason and "password=env:NAME" in outcome.reason
            unset = speaker_device(speaker, 4, "Loa 4", password="env:LOA_MISSING")
            outcome = await transport.deliver(unset, content, "d", make_context())
            assert outcome.status is OutcomeStatus.FAILED
            assert "LOA_MISSING is not set" in outcome.reason
        await stop_speakers([speaker])

    run(main)


def test_busy_normal_is_retryable_emergency_barges_or_retries_quickly() -> None:
    """486 for a normal item: retryable later. Emergency: the profile's barge header, or quick
    retries recorded in the reason."""
    library = Library()
    content = library.add("a.wav", tone_wav(0.2))

    async def main() -> None:
        (speaker,) = await start_speakers(1, behaviour="busy")
        async with running(fast_transport(library)) as transport:
            generic = speaker_device(speaker, 1)
            outcome = await transport.deliver(generic, content, "n", make_context())
            assert outcome.status is OutcomeStatus.RETRYABLE and outcome.retry_after_s == 20.0
            assert "busy (486 Busy Here)" in outcome.reason
            urgent = make_context(priority=Priority.EMERGENCY)
            outcome = await transport.deliver(generic, content, "e1", urgent)
            assert outcome.status is OutcomeStatus.RETRYABLE
            assert "stayed busy (486 Busy Here) after 3 quick retries" in outcome.reason
            assert "has no barge method" in outcome.reason
            invites = speaker.received.invites
            assert invites == 1 + 4
            barging = speaker_device(speaker, 2, profile="answer-mode")
            urgent = make_context(priority=Priority.EMERGENCY)
            outcome = await transport.deliver(barging, content, "e2", urgent)
            assert outcome.status is OutcomeStatus.DELIVERED, outcome.reason
            assert "barged in with Priv-Answer-Mode" in outcome.reason
            last = speaker.received.calls[-1]
            assert last.headers["priv-answer-mode"] == "Auto"
            assert last.headers["priority"] == "emergency"
        await stop_speakers([speaker])

    run(main)


def test_preemption_ends_the_normal_call_and_starts_the_emergency() -> None:
    """A normal item plays; an emergency arrives (preempt + deliver, as the engine does): the
    normal call gets a BYE and the emergency audio starts on the same speaker."""
    library = Library()
    normal = library.add("thong-bao.wav", tone_wav(3.0))
    alarm = library.add("bao-dong.wav", tone_wav(0.6))

    async def main() -> None:
        (speaker,) = await start_speakers(1)
        device = speaker_device(speaker)
        async with running(fast_transport(library)) as transport:
            first = await transport.deliver(device, normal, "normal", make_context())
            assert first.status is OutcomeStatus.DELIVERED
            await asyncio.sleep(0.5)
            urgent = make_context(priority=Priority.EMERGENCY)
            stopped, second = await asyncio.gather(
                transport.preempt(device), transport.deliver(device, alarm, "alarm", urgent)
            )
            assert stopped.status is OutcomeStatus.DELIVERED and "ended call" in stopped.reason
            assert second.status is OutcomeStatus.DELIVERED, second.reason
            calls = speaker.received.calls
            assert calls[0].ended_by == "BYE" and 15 <= calls[0].packets < 150
            await wait_for(lambda: calls[1].ended_by == "BYE")
            assert calls[1].headers["priority"] == "emergency"
            check_rtp(calls[1], 0, 0.6, transport.clock_stats)
            assert calls[1].started_at >= calls[0].ended_at  # type: ignore[operator]
            # an emergency alone also takes the speaker from a lower item of ours
            third = await transport.deliver(device, normal, "normal-2", make_context())
            assert third.status is OutcomeStatus.DELIVERED
            urgent = make_context(priority=Priority.EMERGENCY)
            fourth = await transport.deliver(device, alarm, "alarm-2", urgent)
            assert fourth.status is OutcomeStatus.DELIVERED
            assert calls[2].ended_by == "BYE" and calls[3].answered
            # and a normal item while ours plays is retryable, saying for how long
            fifth = await transport.deliver(device, normal, "normal-3", make_context())
            assert (
                fifth.status is OutcomeStatus.RETRYABLE and "playing another item" in fifth.reason
            )
        await stop_speakers([speaker])

    run(main)


def test_resumed_play_starts_where_it_was_cut() -> None:
    """A resumed play (key .2) with 0.4 s remaining sends the last 0.4 s of the item."""
    library = Library()
    content = library.add("a.wav", tone_wav(1.0))

    async def main() -> None:
        (speaker,) = await start_speakers(1)
        async with running(fast_transport(library)) as transport:
            key = f"{uuid4().hex}.{UUID(int=1).hex}.2"
            ctx = make_context(duration_s=0.4)
            outcome = await transport.deliver(speaker_device(speaker), content, key, ctx)
            assert outcome.status is OutcomeStatus.DELIVERED
            call = speaker.received.calls[0]
            await wait_for(lambda: call.ended_by == "BYE")
            assert call.packets + transport.history[-1].skipped == 20
        await stop_speakers([speaker])

    run(main)


def test_redelivery_of_a_key_is_one_call() -> None:
    """The same key delivered twice (and at once) makes one call; the second answer says so."""
    library = Library()
    content = library.add("a.wav", tone_wav(0.5))

    async def main() -> None:
        (speaker,) = await start_speakers(1)
        device = speaker_device(speaker)
        async with running(fast_transport(library)) as transport:
            ctx = make_context()
            a, b = await asyncio.gather(
                transport.deliver(device, content, "same", ctx),
                transport.deliver(device, content, "same", ctx),
            )
            c = await transport.deliver(device, content, "same", ctx)
            assert a == b and a.status is OutcomeStatus.DELIVERED
            assert c.status is OutcomeStatus.DELIVERED and c.remote_id == a.remote_id
            assert "already played" in c.reason
            assert speaker.received.invites == 1 and transport.plays(device.device_id) == 1
        await stop_speakers([speaker])

    run(main)


def test_failures_have_actionable_reasons_and_leak_nothing() -> None:
    """Wrong password, unreachable (nothing on the port: ICMP), silent (no answer at all),
    malformed answers and a speaker that never answers each end as an outcome a technician can
    act on; sockets and tasks return to their baseline."""
    library = Library()
    content = library.add("a.wav", tone_wav(0.3))

    async def main() -> None:
        await asyncio.sleep(0)
        fds, tasks = open_fds(), len(asyncio.all_tasks())
        locked = await Speaker("khoa", password="dung").start()
        garbage = await Speaker("rac", behaviour="garbage").start()
        silent = await Speaker("im", behaviour="never").start()
        speakers = [locked, garbage, silent]
        mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a host that swallows SIP
        mute.bind(("127.0.0.1", 0))
        base = open_fds()
        transport = fast_transport(library, environ={"P": "sai"})
        await transport.open()
        wrong = speaker_device(locked, 1, "Loa khoá", password="env:P")
        down = DeviceTarget(
            UUID(int=2), "Loa tắt", DeviceKind.IP_SPEAKER, f"127.0.0.1:{free_udp_port()}"
        )
        bad = speaker_device(garbage, 3, "Loa lỗi")
        never = speaker_device(silent, 4, "Loa không nhấc máy")
        quiet = DeviceTarget(
            UUID(int=5), "Loa im lặng", DeviceKind.IP_SPEAKER, f"127.0.0.1:{mute.getsockname()[1]}"
        )
        began = asyncio.get_running_loop().time()
        outcomes = await asyncio.gather(
            *(
                transport.deliver(d, content, f"k{i}", make_context())
                for i, d in enumerate((wrong, down, bad, never, quiet))
            )
        )
        assert asyncio.get_running_loop().time() - began < 2.5  # within limits.timeout_s (3 s)
        by = dict(zip(("wrong", "down", "bad", "never", "quiet"), outcomes, strict=True))
        assert by["wrong"].status is OutcomeStatus.FAILED
        assert (
            "Loa khoá" in by["wrong"].reason and "wrong username or password" in by["wrong"].reason
        )
        assert by["down"].status is OutcomeStatus.RETRYABLE
        assert "Loa tắt at 127.0.0.1:" in by["down"].reason
        assert "port unreachable: nothing listens for SIP on that port" in by["down"].reason
        assert by["quiet"].status is OutcomeStatus.RETRYABLE
        assert "no SIP answer from Loa im lặng" in by["quiet"].reason
        assert "within 1.0 s (INVITE sent" in by["quiet"].reason
        assert "wrong address/port" in by["quiet"].reason
        assert by["bad"].status is OutcomeStatus.FAILED
        assert "malformed SIP response from Loa lỗi" in by["bad"].reason
        assert by["never"].status is OutcomeStatus.RETRYABLE
        assert "rang for 1 s without answering" in by["never"].reason
        assert "auto-answer is not enabled" in by["never"].reason
        await wait_for(lambda: silent.received.cancels == 1)
        healths = await asyncio.gather(*(transport.probe(d) for d in (down, bad, quiet)))
        assert not healths[0].ok and "port unreachable" in healths[0].detail
        assert not healths[1].ok and "answers garbage" in healths[1].detail
        assert not healths[2].ok and "no answer to SIP OPTIONS" in healths[2].detail
        assert open_fds() > base
        await transport.close()
        await stop_speakers(speakers)
        mute.close()
        await asyncio.sleep(0)
        assert open_fds() == fds
        assert len(asyncio.all_tasks()) == tasks, asyncio.all_tasks()

    run(main)


def test_invite_retransmits_on_timer_a_then_gives_up() -> None:
    """RFC 3261 Timer A: with no answer at all the same INVITE (same branch, CSeq) goes again
    after T1, 2·T1, 4·T1 ...; after response_timeout_s the delivery is retryable."""
    library = Library()
    content = library.add("a.wav", tone_wav(0.2))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        arrivals: list[tuple[float, bytes]] = []

        class Silent(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                arrivals.append((loop.time(), data))

        sink, _ = await loop.create_datagram_endpoint(Silent, local_addr=("127.0.0.1", 0))
        port = sink.get_extra_info("sockname")[1]
        target = DeviceTarget(UUID(int=1), "Loa câm", DeviceKind.IP_SPEAKER, f"127.0.0.1:{port}")
        async with running(fast_transport(library, timers=Timers(t1=0.1))) as transport:
            outcome = await transport.deliver(target, content, "k", make_context())
        sink.close()
        assert outcome.status is OutcomeStatus.RETRYABLE and "INVITE sent 4 times" in outcome.reason
        assert len({data for _, data in arrivals}) == 1  # byte for byte the same request
        assert parse_message(arrivals[0][1]).method == "INVITE"
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
        assert len(gaps) == 3
        for gap, expected in zip(gaps, (0.1, 0.2, 0.4), strict=True):
            assert expected * 0.8 < gap < expected + 0.08, gaps

    run(main)


def test_bad_settings_and_content_fail_clearly() -> None:
    """Unknown profile, bad address, non-audio content and missing media: failed, saying why."""
    library = Library()

    async def main() -> None:
        async with running(fast_transport(library)) as transport:
            ctx = make_context()
            d = DeviceTarget(UUID(int=1), "Loa 1", DeviceKind.IP_SPEAKER, "127.0.0.1:5999")
            wrong = DeviceTarget(
                UUID(int=2), "Loa 2", DeviceKind.IP_SPEAKER, "127.0.0.1:5999", {"profile": "x"}
            )
            out = await transport.deliver(wrong, AudioContent("a", "0" * 64), "1", ctx)
            assert out.status is OutcomeStatus.FAILED and "unknown profile 'x'" in out.reason
            out = await transport.deliver(d, BoardContent("chữ"), "2", ctx)
            assert out.status is OutcomeStatus.FAILED and "not audio" in out.reason
            out = await transport.deliver(d, AudioContent("https://x/y.mp3", "0" * 64), "3", ctx)
            assert out.status is OutcomeStatus.FAILED and "not in the media library" in out.reason
            nowhere = DeviceTarget(UUID(int=3), "Loa 3", DeviceKind.IP_SPEAKER, "a b c")
            out = await transport.deliver(nowhere, AudioContent("a", "0" * 64), "4", ctx)
            assert out.status is OutcomeStatus.FAILED and "not a SIP address" in out.reason

    run(main)


def test_multicast_paging_zones_by_priority() -> None:
    """A paging device sends RTP to its zone for the item's priority (TTL and interface set); an
    emergency page takes over from a normal one. Loopback stands in for the group address
    because tests send to 127.0.0.1 only."""
    library = Library()
    normal = library.add("n.wav", tone_wav(2.0))
    alarm = library.add("e.wav", tone_wav(0.3))

    async def main() -> None:
        sinks = []
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            sinks.append(s)
        zones = ",".join(
            f"{level}=127.0.0.1:{s.getsockname()[1]}"
            for level, s in zip(("normal", "emergency"), sinks, strict=True)
        )
        device = DeviceTarget(
            UUID(int=9),
            "Cụm loa xã",
            DeviceKind.SPEAKER_CLUSTER,
            "multicast:",
            {"mode": "multicast", "zones": zones, "ttl": "4", "interface": "127.0.0.1"},
        )
        async with running(fast_transport(library)) as transport:
            first = await transport.deliver(device, normal, "n", make_context())
            assert first.status is OutcomeStatus.DELIVERED and "paging zone normal" in first.reason
            await asyncio.sleep(0.3)
            urgent = make_context(priority=Priority.EMERGENCY)
            second = await transport.deliver(device, alarm, "e", urgent)
            assert second.status is OutcomeStatus.DELIVERED and "zone emergency" in second.reason
            sock = transport._calls[device.device_id].sock
            assert sock is not None
            assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 4
            await asyncio.sleep(0.6)
            health = await transport.probe(device)
            assert health.ok
            emergency_skipped = transport.history[-1].skipped
        counts = []
        for s in sinks:
            n = 0
            with contextlib.suppress(BlockingIOError):
                while s.recv(2048):
                    n += 1
            counts.append(n)
            s.close()
        assert 8 <= counts[0] < 100  # the normal page was cut by the emergency
        assert counts[1] + emergency_skipped == 15

    run(main)


def test_scheduler_drives_calls_and_an_emergency_cuts_in() -> None:
    """End to end through tcs-core's scheduler: a normal bulletin calls every speaker of the
    province; an emergency five (virtual) seconds later preempts it (BYE) and plays; both
    Dispatches record delivered outcomes."""
    library = Library()
    normal = library.add("thong-bao.wav", tone_wav(3.0))
    alarm = library.add("bao-dong.wav", tone_wav(0.5))
    day = datetime(2020, 1, 1).date()

    async def main() -> None:
        speakers = await start_speakers(3)
        app = SourceSystem(Settings.in_memory())
        app.bootstrap_admin("admin")
        app.create_area("P", "Tỉnh P", "province", parent=None, effective=day, actor="admin")
        app.create_area("C1", "Xã Ea Tiêu", "commune", parent="P", effective=day, actor="admin")
        app.create_principal(
            "op", grants=[("operator", "P")], permissions=["emergency"], actor="admin"
        )
        app.create_principal(
            "ap", grants=[("approver", "P")], permissions=["emergency"], actor="admin"
        )
        ids = [
            app.register_device(
                f"Loa thôn {i + 1}",
                "ip_speaker",
                area="C1",
                transport="sip",
                address=sp.address,
                channels=["audio"],
                settings={"profile": "answer-mode"},
                actor="admin",
            )
            for i, sp in enumerate(speakers)
        ]
        t0 = datetime.now(UTC).replace(microsecond=0)

        def approve(content: AudioContent, at: datetime, priority: Priority) -> UUID:
            b = app.draft_broadcast(
                f"Bản tin {priority.value}",
                category=Category.DISASTER,
                priority=priority,
                content={Channel.AUDIO: content},
                targets=Targets(areas=("P",), channels=["audio"]),
                schedule=ScheduleSpec.once(at, duration_s=30),
                actor="op",
            )
            app.submit_broadcast(b, "op")
            app.approve_broadcast(b, "ap")
            return b

        first = approve(normal, t0, Priority.NORMAL)
        second = approve(alarm, t0 + timedelta(seconds=5), Priority.EMERGENCY)
        transport = fast_transport(library)
        scheduler = Scheduler(app, [transport], VirtualClock(t0))
        await scheduler.start()
        await scheduler.run_until(t0 + timedelta(seconds=4))
        await asyncio.sleep(0.5)  # the normal bulletin plays for real for a while
        await scheduler.run_until(t0 + timedelta(seconds=10))
        await asyncio.sleep(1.0)  # the emergency plays to its end
        await scheduler.stop()
        await transport.close()
        for b, at in ((first, t0), (second, t0 + timedelta(seconds=5))):
            dispatch = app.dispatch_of(b, at)
            assert dispatch is not None
            for device in ids:
                outcome = dispatch.outcome(device)
                assert outcome is not None and outcome.status is OutcomeStatus.DELIVERED
        for sp in speakers:
            calls = sp.received.calls
            assert len(calls) == 2 and calls[0].ended_by == "BYE" and calls[1].ended_by == "BYE"
            assert calls[0].packets < 150  # cut by the emergency
            assert calls[1].headers["priority"] == "emergency"
            assert calls[1].packets + transport.history[-1].skipped >= 20
        await stop_speakers(speakers)

    run(main)


def test_entry_point_builds_the_transport() -> None:
    """pyproject's ``sip`` entry point is SipTransport, constructible without arguments."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split('[project.entry-points."tcs_core.transports"]', 1)[1]
    declared = re.search(r'^sip = "([^"]+)"', section, re.MULTILINE)
    assert declared is not None
    factory = EntryPoint("sip", declared.group(1), "tcs_core.transports").load()
    assert factory is SipTransport
    transport = factory()
    assert isinstance(transport, Transport) and transport.name == "sip"


# -- the conformance suite ------------------------------------------------------------------------


class TestSipConformance(TransportConformance):
    """tcs-core's transport conformance suite on simulated speakers (working, slow, garbage)."""

    concurrent_calls = 16

    @pytest.fixture(autouse=True)
    def _sockets(self) -> Iterator[None]:
        # the speakers' SIP sockets are bound before the test's loop runs, so fixtures know them
        self.socks = []
        for _ in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            self.socks.append(s)
        self.ports = [s.getsockname()[1] for s in self.socks]
        yield
        for s in self.socks:
            s.close()

    def peer(self) -> contextlib.AbstractAsyncContextManager[object]:
        socks = self.socks

        @contextlib.asynccontextmanager
        async def run_speakers() -> AsyncIterator[object]:
            speakers = [
                Speaker("loa1"),
                Speaker("loa2", answer_delay_s=10.0),
                Speaker("loa3", behaviour="garbage"),
            ]
            for sp, sock in zip(speakers, socks, strict=True):
                await sp.start(sock)
            try:
                yield speakers
            finally:
                await stop_speakers(speakers)

        return run_speakers()

    @pytest.fixture
    def transport(self) -> Transport:
        library = Library()
        library.files["https://example.invalid/ban-tin-sang.mp3"] = tone_wav(0.5)
        return SipTransport(
            local_host="127.0.0.1",
            timers=Timers(t1=0.05),
            answer_timeout_s=0.5,
            limits=Limits(concurrency=100, rate_per_s=50.0, timeout_s=1.5),
            media=library,
            verify_sha256=False,  # the suite's sample recording has a made-up hash
        )

    def _device(self, n: int, name: str) -> DeviceTarget:
        return DeviceTarget(
            UUID(int=n),
            name,
            DeviceKind.IP_SPEAKER,
            f"sip:loa{n}@127.0.0.1:{self.ports[n - 1]}",
            {},
            (Channel.AUDIO,),
        )

    @pytest.fixture
    def device(self) -> DeviceTarget:
        return self._device(1, "Loa thôn Một")

    @pytest.fixture
    def slow_device(self) -> DeviceTarget:
        return self._device(2, "Loa buôn Kô Đung")

    @pytest.fixture
    def malformed_device(self) -> DeviceTarget:
        return self._device(3, "Loa trường học")

    @pytest.fixture
    def unreachable_device(self) -> DeviceTarget:
        return DeviceTarget(
            UUID(int=4),
            "Loa chợ Ea Tiêu",
            DeviceKind.IP_SPEAKER,
            f"sip:loa@127.0.0.1:{free_udp_port()}",
            {},
            (Channel.AUDIO,),
        )
