"""The SIP transport against real peers: sipp as a UAS (answering, busy, digest, never
answering), baresip answering by itself, and espeak-ng speaking Vietnamese.

RTP is checked on the wire: sipp's SDP answer points the media at a UDP socket of the test, which
records every packet; baresip decodes what it receives into a WAV (its ``sndfile`` module). Every
peer process is started by a fixture and killed when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tcs_core.domain.values import (
    Channel,
    DeviceKind,
    OutcomeStatus,
    Priority,
    SpeechContent,
)
from tcs_core.testing.conformance import TransportConformance, make_context
from tcs_core.transport import DeviceTarget, Limits
from transports.sip import EspeakRenderer, SipTransport, Timers, decode_wav
from transports.sip.audio import g722_available

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from simulated_speaker import Speaker, start_speakers, stop_speakers  # noqa: E402

from test_sip import Library, check_rtp, tone_wav, wait_for  # noqa: E402

pytestmark = pytest.mark.sip

RTP = struct.Struct("!BBHII")


def need(program: str, package: str) -> str:
    """The path of a peer program, or skip saying how to install it."""
    found = shutil.which(program)
    if found is None:
        pytest.skip(f"{program} not installed: apt-get install {package}")
    return found


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_taken(port: int) -> bool:
    """Whether something is bound to UDP 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


# -- sipp scenarios -------------------------------------------------------------------------------

_TAG = ";tag=[pid]SIPpTag01[call_number]"


def _answer(
    status: str, *, to_tag: bool = True, extra: str = "", cseq: str = "[last_CSeq:]"
) -> str:
    tag = _TAG if to_tag else ""
    return f"""
  <send>
    <![CDATA[

      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:]{tag}
      [last_Call-ID:]
      {cseq}
      {extra}Content-Length: 0

    ]]>
  </send>"""


_OK_SDP = f"""
  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]{_TAG}
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:loa@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=loa 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [rtpsink] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>"""

_UNTIL_BYE = """
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>""" + _answer("200 OK", to_tag=False)


def _check(header: str, regexp: str, var: str) -> str:
    return (
        f'<action><ereg regexp="{regexp}" search_in="hdr" header="{header}:" '
        f'check_it="true" assign_to="{var}"/></action>'
    )


def scenario(body: str) -> str:
    # sipp refuses variables assigned but never read: <Reference> marks them as used
    names = [n for group in re.findall(r'assign_to="([^"]+)"', body) for n in group.split(",")]
    refs = f'\n  <Reference variables="{",".join(names)}"/>' if names else ""
    return (
        f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="tcs">{body}{refs}\n'
        "</scenario>\n"
    )


SCENARIOS = {
    # answers, after checking that the INVITE carries the auto-answer header
    "answer": scenario(
        f'\n  <recv request="INVITE" crlf="true">'
        f"{_check('Call-Info', 'answer-after=0', 'aa')}</recv>"
        + _answer("100 Trying", to_tag=False)
        + _answer("180 Ringing")
        + _OK_SDP
        + _UNTIL_BYE
    ),
    "busy": scenario(
        '\n  <recv request="INVITE"/>' + _answer("486 Busy Here") + '\n  <recv request="ACK"/>'
    ),
    # busy for the first INVITE; takes the one with RFC 5373's Priv-Answer-Mode (barge)
    "barge": scenario(
        f'\n  <recv request="INVITE">{_check("Priority", "emergency", "p")}</recv>'
        + _answer("486 Busy Here")
        + '\n  <recv request="ACK"/>'
        + f'\n  <recv request="INVITE">{_check("Priv-Answer-Mode", "Auto", "b")}</recv>'
        + _OK_SDP
        + _UNTIL_BYE
    ),
    "never": scenario(
        '\n  <recv request="INVITE"><action><ereg regexp="([0-9]+) INVITE" search_in="hdr" '
        'header="CSeq:" assign_to="whole,csn"/></action></recv>'
        + _answer("100 Trying", to_tag=False)
        + _answer("180 Ringing")
        + '\n  <recv request="CANCEL"/>'
        + _answer("200 OK", to_tag=False)
        + _answer("487 Request Terminated", cseq="CSeq: [$csn] INVITE")
        + '\n  <recv request="ACK"/>'
    ),
}


def digest_scenario(password: str) -> str:
    """Challenges the INVITE; answers a valid Authorization, challenges a wrong one again."""
    challenge = (
        'WWW-Authenticate: Digest realm="loa.xa", nonce="[pid]n[call_number]x", qop="auth", '
        "algorithm=MD5\n      "
    )
    return scenario(
        '\n  <recv request="INVITE"/>'
        + _answer("401 Unauthorized", extra=challenge)
        + '\n  <recv request="ACK"/>'
        + '\n  <recv request="INVITE"><action><verifyauth assign_to="authvalid" username="loa" '
        f'password="{password}"/></action></recv>'
        + '\n  <nop hide="true" test="authvalid" next="good"/>'
        + _answer("401 Unauthorized", extra=challenge.replace(']x"', ']y"'))
        + '\n  <recv request="ACK" next="done"/>'
        + '\n  <label id="good"/>'
        + _OK_SDP
        + _UNTIL_BYE
        + '\n  <label id="done"/>'
    )


class Sipp:
    """A running sipp UAS."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    @property
    def address(self) -> str:
        return f"sip:loa@127.0.0.1:{self.port}"

    async def finished(self, timeout: float = 10.0) -> int:
        """sipp's exit code once its one call is over (0: the scenario ran to the end)."""
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    def errors(self) -> str:
        texts = [p.read_text(errors="replace")[-2000:] for p in self.log.parent.glob("*err*")]
        return "\n".join(texts) or self.log.read_text(errors="replace")[-2000:]


@contextlib.asynccontextmanager
async def sipp_uas(tmp_path: Path, xml: str, rtp_port: int = 9) -> AsyncIterator[Sipp]:
    """Run sipp with scenario ``xml`` for one call; killed on exit whatever happened."""
    exe = need("sipp", "sip-tester")
    path = tmp_path / f"uas-{time.monotonic_ns()}.xml"
    path.write_text(xml, encoding="utf-8")
    log = tmp_path / "sipp.out"
    for _ in range(5):  # the chosen port may be taken by someone else in between: try again
        port = free_udp_port()
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                exe, "-sf", str(path), "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
                "-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error",
                "-key", "rtpsink", str(rtp_port), "-trace_err",
                "-error_file", str(tmp_path / "sipp-errors.log"),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                cwd=tmp_path,
            )  # fmt: skip
        try:
            for _ in range(200):
                if port_taken(port) or proc.returncode is not None:
                    break
                await asyncio.sleep(0.01)
            if proc.returncode is None:
                yield Sipp(proc, port, log)
                return
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    pytest.fail(f"sipp did not start: {log.read_text(errors='replace')[-1500:]}")


class RtpSink(asyncio.DatagramProtocol):
    """Records every RTP packet that arrives on a UDP socket, like a capture on the port."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, int, int, int, int, int]] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        first, second, seq, ts, ssrc = RTP.unpack_from(data)
        self.packets.append((time.monotonic(), first, second, seq, ts, ssrc))

    def as_call(self) -> Any:
        """The packets in the shape check_rtp reads."""

        class Call:
            pass

        call = Call()
        p = self.packets
        call.payload_types = {x[2] & 0x7F for x in p}  # type: ignore[attr-defined]
        call.packets = len(p)  # type: ignore[attr-defined]
        call.first_marker = bool(p[0][2] & 0x80) if p else None  # type: ignore[attr-defined]
        call.ssrcs = {x[5] for x in p}  # type: ignore[attr-defined]
        call.seqs = [x[3] for x in p]  # type: ignore[attr-defined]
        call.timestamps = [x[4] for x in p]  # type: ignore[attr-defined]
        call.arrivals = [x[0] for x in p]  # type: ignore[attr-defined]
        return call


@contextlib.asynccontextmanager
async def rtp_sink() -> AsyncIterator[tuple[RtpSink, int]]:
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(RtpSink, local_addr=("127.0.0.1", 0))
    try:
        yield sink, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def device(address: str, n: int = 1, name: str = "Loa sipp", **settings: str) -> DeviceTarget:
    return DeviceTarget(
        UUID(int=n), name, DeviceKind.IP_SPEAKER, address, settings, (Channel.AUDIO,)
    )


def transport_for(library: Library, **kwargs: Any) -> SipTransport:
    options: dict[str, Any] = {
        "local_host": "127.0.0.1",
        "timers": Timers(t1=0.1),
        "answer_timeout_s": 1.0,
        "limits": Limits(concurrency=100, timeout_s=5.0),
        "media": library,
        "emergency_retry_interval_s": 0.1,
    }
    options.update(kwargs)
    return SipTransport(**options)


# -- sipp -----------------------------------------------------------------------------------------


def test_sipp_answers_and_receives_g711_until_bye(tmp_path: Path) -> None:
    """sipp (checking the Call-Info auto-answer header) answers; the RTP on the wire is PCMU,
    one packet per 20 ms for the item's length, seq +1 and ts +160; sipp's scenario ends with
    our BYE."""
    library = Library()
    content = library.add("ban-tin.wav", tone_wav(1.2))

    async def main() -> None:
        async with rtp_sink() as (sink, port), sipp_uas(tmp_path, SCENARIOS["answer"], port) as uas:
            transport = transport_for(library)
            await transport.open()
            try:
                outcome = await transport.deliver(device(uas.address), content, "k", make_context())
                assert outcome.status is OutcomeStatus.DELIVERED, outcome.reason
                assert await uas.finished() == 0, uas.errors()
                check_rtp(sink.as_call(), 0, 1.2, transport.clock_stats)
                assert transport.history[-1].ended_by == "the audio ended (BYE answered 200 OK)"
            finally:
                await transport.close()

    asyncio.run(main())


def test_sipp_busy_normal_is_retryable(tmp_path: Path) -> None:
    """sipp answers 486: a normal item is retryable later, and the 486 is ACKed."""
    library = Library()
    content = library.add("a.wav", tone_wav(0.2))

    async def main() -> None:
        async with sipp_uas(tmp_path, SCENARIOS["busy"]) as uas:
            transport = transport_for(library, busy_retry_s=45.0)
            await transport.open()
            try:
                outcome = await transport.deliver(device(uas.address), content, "k", make_context())
                assert outcome.status is OutcomeStatus.RETRYABLE
                assert outcome.retry_after_s == 45.0 and "486 Busy Here" in outcome.reason
                assert await uas.finished() == 0, uas.errors()
            finally:
                await transport.close()

    asyncio.run(main())


def test_sipp_busy_emergency_barges_with_priv_answer_mode(tmp_path: Path) -> None:
    """An emergency to a busy sipp: the INVITE says Priority: emergency; after the 486 the
    answer-mode profile's barge (Priv-Answer-Mode: Auto) is answered and the audio flows."""
    library = Library()
    content = library.add("bao-dong.wav", tone_wav(0.4))

    async def main() -> None:
        async with rtp_sink() as (sink, port), sipp_uas(tmp_path, SCENARIOS["barge"], port) as uas:
            transport = transport_for(library)
            await transport.open()
            try:
                target = device(uas.address, profile="answer-mode")
                ctx = make_context(priority=Priority.EMERGENCY)
                outcome = await transport.deliver(target, content, "k", ctx)
                assert outcome.status is OutcomeStatus.DELIVERED, outcome.reason
                assert "barged in with Priv-Answer-Mode" in outcome.reason
                assert await uas.finished() == 0, uas.errors()
                check_rtp(sink.as_call(), 0, 0.4, transport.clock_stats)
            finally:
                await transport.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("status", "extra", "outcome", "phrase", "retry_after"),
    [
        ("302 Moved Temporarily", "Contact: <sip:loa@10.9.9.9>\n      ", "failed",
         "redirects the call (302 Moved Temporarily) to <sip:loa@10.9.9.9>", None),
        ("403 Forbidden", "", "failed", "refuses our calls (403 Forbidden)", None),
        ("404 Not Found", "", "failed", "no such user (404 Not Found)", None),
        ("480 Temporarily Unavailable", "", "retryable", "temporarily unavailable", None),
        ("488 Not Acceptable Here", "", "failed", "accepts none of PCMU/PCMA", None),
        ("503 Service Unavailable", "Retry-After: 120\n      ", "retryable",
         "temporarily unavailable (503 Service Unavailable)", 120.0),
        ("603 Decline", "", "failed", "refused the call (603 Decline)", None),
        ("600 Busy Everywhere", "", "retryable", "is busy (600 Busy Everywhere)", 30.0),
    ],
    ids=["302", "403", "404", "480", "488", "503", "603", "600"],
)  # fmt: skip
def test_sipp_final_responses_become_outcomes(
    tmp_path: Path,
    status: str,
    extra: str,
    outcome: str,
    phrase: str,
    retry_after: float | None,
) -> None:
    """3xx-6xx final answers from sipp: each is ACKed and becomes failed or retryable with the
    speaker's own words (and Retry-After where it gives one)."""
    library = Library()
    content = library.add("a.wav", tone_wav(0.2))
    xml = scenario(
        '\n  <recv request="INVITE"/>'
        + _answer("100 Trying", to_tag=False)
        + _answer(status, extra=extra)
        + '\n  <recv request="ACK"/>'
    )

    async def main() -> None:
        async with sipp_uas(tmp_path, xml) as uas:
            transport = transport_for(library, busy_retry_s=30.0)
            await transport.open()
            try:
                result = await transport.deliver(device(uas.address), content, "k", make_context())
                assert result.status.value == outcome, result.reason
                assert phrase in result.reason and "Loa sipp" in result.reason
                assert result.retry_after_s == retry_after
                assert await uas.finished() == 0, uas.errors()
            finally:
                await transport.close()

    asyncio.run(main())


@pytest.mark.parametrize("right", [True, False], ids=["right-password", "wrong-password"])
def test_sipp_digest_authentication(tmp_path: Path, right: bool) -> None:
    """sipp challenges (401, qop=auth) and verifies our digest: the right password plays; a wrong
    one fails saying the credentials were rejected (and never shows the password)."""
    library = Library()
    content = library.add("a.wav", tone_wav(0.3))
    env = {"LOA_PASSWORD": "mat-khau" if right else "sai-roi"}

    async def main() -> None:
        xml = digest_scenario("mat-khau")
        async with rtp_sink() as (sink, port), sipp_uas(tmp_path, xml, port) as uas:
            transport = transport_for(library, environ=env)
            await transport.open()
            try:
                target = device(uas.address, username="loa", password="env:LOA_PASSWORD")
                outcome = await transport.deliver(target, content, "k", make_context())
                assert await uas.finished() == 0, uas.errors()
                if right:
                    assert outcome.status is OutcomeStatus.DELIVERED, outcome.reason
                    check_rtp(sink.as_call(), 0, 0.3, transport.clock_stats)
                else:
                    assert outcome.status is OutcomeStatus.FAILED
                    assert "rejected the credentials of user 'loa'" in outcome.reason
                    assert "realm 'loa.xa'" in outcome.reason and "sai-roi" not in outcome.reason
                    assert not sink.packets
            finally:
                await transport.close()

    asyncio.run(main())


def test_sipp_never_answering_is_cancelled(tmp_path: Path) -> None:
    """sipp rings and never answers: we CANCEL after answer_timeout_s, ACK its 487, and the
    outcome is retryable telling the technician to check auto-answer."""
    library = Library()
    content = library.add("a.wav", tone_wav(0.3))

    async def main() -> None:
        async with sipp_uas(tmp_path, SCENARIOS["never"]) as uas:
            transport = transport_for(library)
            await transport.open()
            try:
                began = time.monotonic()
                outcome = await transport.deliver(device(uas.address), content, "k", make_context())
                assert time.monotonic() - began < 3.0
                assert outcome.status is OutcomeStatus.RETRYABLE
                assert "rang for 1 s without answering" in outcome.reason
                assert await uas.finished() == 0, uas.errors()
            finally:
                await transport.close()

    asyncio.run(main())


# -- baresip --------------------------------------------------------------------------------------

BARESIP_CONFIG = """\
poll_method epoll
sip_listen 127.0.0.1:{port}
net_interface 127.0.0.1
audio_player aubridge,loa
audio_source aubridge,loa
audio_alert aubridge,loa
module_path /usr/lib/baresip/modules
module g711.so
module g722.so
module aubridge.so
module sndfile.so
module_app account.so
snd_path {records}
"""


@pytest.fixture
def baresip(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """baresip configured as an auto-answering speaker on 127.0.0.1; its decoded audio goes to
    WAV files. Yields (address, records folder, log); killed at the end."""
    exe = need("baresip", "baresip")
    home = tmp_path / "baresip"
    records = home / "records"
    records.mkdir(parents=True)
    (home / "accounts").write_text("<sip:loa@127.0.0.1>;regint=0;answermode=auto\n")
    log = home / "baresip.log"
    for _ in range(5):
        port = free_udp_port()
        (home / "config").write_text(BARESIP_CONFIG.format(port=port, records=records))
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [exe, "-f", str(home)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            for _ in range(300):
                if "baresip is ready" in log.read_text(errors="replace") or proc.poll() is not None:
                    break
                time.sleep(0.01)
            if proc.poll() is None and port_taken(port):
                yield f"sip:loa@127.0.0.1:{port}", records, log
                return
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    pytest.fail(f"baresip did not start: {log.read_text(errors='replace')[-1500:]}")


def baresip_log_after(log: Path, calls: int, timeout: float = 10.0) -> str:
    """baresip's log once it has written the end of `calls` calls. baresip logs (and closes its
    recordings) on its own schedule after our BYE is answered, so reading at once races it."""
    deadline = time.monotonic() + timeout
    text = log.read_text(errors="replace")
    while text.count("terminated") < calls and time.monotonic() < deadline:
        time.sleep(0.05)
        text = log.read_text(errors="replace")
    return text


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722"])
def test_baresip_auto_answers_and_plays_the_audio(
    baresip: tuple[str, Path, Path], codec: str
) -> None:
    """baresip (answermode=auto, profile none) answers at once, decodes our audio in the
    device's codec for the item's length, and the call ends with our BYE answered 200."""
    address, records, log = baresip
    library = Library()
    content = library.add("ban-tin.wav", tone_wav(1.0))
    if codec == "G722" and not g722_available():
        pytest.skip("g722 not installed: pip install 'g722>=1.2.8,<2' (the sip extra)")

    async def main() -> None:
        transport = transport_for(library)
        await transport.open()
        try:
            target = device(address, name="Loa baresip", profile="none", codecs=codec)
            health = await transport.probe(target)
            assert health.ok, health.detail
            outcome = await transport.deliver(target, content, "k", make_context())
            assert outcome.status is OutcomeStatus.DELIVERED, outcome.reason
            assert outcome.reason.startswith("Loa baresip answered in")
            assert f"; {codec} 1.0 s" in outcome.reason
            record = transport.history[-1]
            await wait_for(lambda: record.state == "ended", 5.0)
            assert record.ended_by == "the audio ended (BYE answered 200 OK)"
            assert record.packets + record.skipped == 50
        finally:
            await transport.close()

    asyncio.run(main())
    text = baresip_log_after(log, calls=1)
    assert "Call established" in text and "terminated" in text, text[-1500:]
    assert "incoming rtp for 'audio' established" in text
    rate = 16000 if codec == "G722" else 8000
    assert f"Set audio decoder: {codec} {rate}Hz" in text, text[-1500:]
    (decoded,) = records.glob("*dec.wav")
    with wave.open(str(decoded)) as w:
        seconds = w.getnframes() / w.getframerate()
    # what baresip decoded: the item less its jitter buffer's start (it plays what arrived)
    assert 0.75 <= seconds <= 1.05, seconds


def test_baresip_preemption_normal_call_ends_and_emergency_plays(
    baresip: tuple[str, Path, Path],
) -> None:
    """On baresip: a normal item plays; an emergency arrives (preempt + deliver, as the engine
    does); the normal call is ended by our BYE early and the emergency's audio is decoded whole."""
    address, records, log = baresip
    library = Library()
    normal = library.add("thong-bao.wav", tone_wav(4.0))
    alarm = library.add("bao-dong.wav", tone_wav(1.0))

    async def main() -> None:
        transport = transport_for(library)
        await transport.open()
        try:
            target = device(address, name="Loa baresip", profile="none")
            first = await transport.deliver(target, normal, "normal", make_context())
            assert first.status is OutcomeStatus.DELIVERED, first.reason
            await asyncio.sleep(1.3)  # baresip names its recordings by the second
            urgent = make_context(priority=Priority.EMERGENCY)
            stopped, second = await asyncio.gather(
                transport.preempt(target), transport.deliver(target, alarm, "alarm", urgent)
            )
            assert (
                stopped.status is OutcomeStatus.DELIVERED and "BYE answered 200" in stopped.reason
            )
            assert second.status is OutcomeStatus.DELIVERED, second.reason
            records_by_key = {r.key: r for r in transport.history}
            assert 50 <= records_by_key["normal"].packets < 150
            assert records_by_key["normal"].ended_by.startswith("preempted")
            await wait_for(lambda: records_by_key["alarm"].state == "ended", 5.0)
            assert records_by_key["alarm"].packets + records_by_key["alarm"].skipped == 50
        finally:
            await transport.close()

    asyncio.run(main())
    text = baresip_log_after(log, calls=2)
    assert text.count("Call established") == 2, text[-2000:]
    lengths = []
    for decoded in sorted(records.glob("*dec.wav")):
        with wave.open(str(decoded)) as w:
            lengths.append(w.getnframes() / w.getframerate())
    assert len(lengths) == 2, lengths
    assert 0.9 <= lengths[0] <= 2.2, lengths  # the normal item, cut after about 1.3 s
    assert 0.75 <= lengths[1] <= 1.05, lengths  # the emergency, whole


class TestSipConformanceOnBaresip(TransportConformance):
    """tcs-core's conformance suite with baresip as the working speaker (slow and garbage
    speakers are simulated ones; the unreachable one is a port nobody listens on)."""

    concurrent_calls = 8
    examples_per_variant = 3

    @pytest.fixture(autouse=True)
    def _speakers(self, baresip: tuple[str, Path, Path]) -> Iterator[None]:
        self.baresip = baresip[0]
        self.socks = []
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            self.socks.append(sock)
        yield
        for sock in self.socks:
            sock.close()

    def peer(self) -> contextlib.AbstractAsyncContextManager[object]:
        socks = self.socks

        @contextlib.asynccontextmanager
        async def run() -> AsyncIterator[object]:
            slow = Speaker("cham", answer_delay_s=30.0)
            garbage = Speaker("rac", behaviour="garbage")
            await slow.start(socks[0])
            await garbage.start(socks[1])
            try:
                yield slow, garbage
            finally:
                await stop_speakers([slow, garbage])

        return run()

    @pytest.fixture
    def transport(self) -> SipTransport:
        library = Library()
        library.files["https://example.invalid/ban-tin-sang.mp3"] = tone_wav(0.5)
        return SipTransport(
            local_host="127.0.0.1",
            timers=Timers(t1=0.05),
            answer_timeout_s=0.7,
            limits=Limits(concurrency=100, rate_per_s=20.0, timeout_s=2.0),
            media=library,
            verify_sha256=False,  # the suite's sample recording has a made-up hash
        )

    @pytest.fixture
    def device(self) -> DeviceTarget:
        return device(self.baresip, 1, "Loa baresip", profile="none")

    @pytest.fixture
    def slow_device(self) -> DeviceTarget:
        port = self.socks[0].getsockname()[1]
        return device(f"sip:cham@127.0.0.1:{port}", 2, "Loa chậm")

    @pytest.fixture
    def malformed_device(self) -> DeviceTarget:
        port = self.socks[1].getsockname()[1]
        return device(f"sip:rac@127.0.0.1:{port}", 3, "Loa lỗi")

    @pytest.fixture
    def unreachable_device(self) -> DeviceTarget:
        return device(f"sip:loa@127.0.0.1:{free_udp_port()}", 4, "Loa tắt")


# -- espeak-ng ------------------------------------------------------------------------------------


def test_espeak_renders_vietnamese_in_three_regional_voices() -> None:
    """espeak-ng speaks Vietnamese text (Northern, Central, Southern voices) into a WAV that
    decodes to 8 kHz; an unknown voice is refused naming the known ones."""
    need("espeak-ng", "espeak-ng")
    renderer = EspeakRenderer()

    async def main() -> None:
        lengths = []
        for voice in ("vi", "vi-VN-central", "vi-VN-south"):
            wav = await renderer.render("Thông báo: mưa lớn, bà con chú ý phòng chống bão.", voice)
            with wave.open(io.BytesIO(wav)) as w:
                assert w.getframerate() == 22_050 and w.getnchannels() == 1
            pcm = decode_wav(wav)
            assert 1.5 < pcm.duration_s < 10, pcm.duration_s
            lengths.append(pcm.duration_s)
        assert len(set(lengths)) >= 2  # the regional voices really differ
        with pytest.raises(Exception, match="known: vi"):
            await renderer.render("xin chào", "klingon")

    asyncio.run(main())


def test_speech_is_rendered_once_and_played_on_every_speaker() -> None:
    """The same spoken item to three speakers at once: espeak-ng runs once (content hash), and
    each speaker receives the whole rendered audio as RTP."""
    need("espeak-ng", "espeak-ng")
    content = SpeechContent("Ủy ban nhân dân xã thông báo lịch tiêm chủng.", "vi")

    async def main() -> None:
        speakers = await start_speakers(3)
        transport = transport_for(Library())
        await transport.open()
        try:
            targets = [device(s.address, i + 1, f"Loa {i + 1}") for i, s in enumerate(speakers)]
            outcomes = await asyncio.gather(
                *(
                    transport.deliver(t, content, f"k{i}", make_context())
                    for i, t in enumerate(targets)
                )
            )
            assert all(o.status is OutcomeStatus.DELIVERED for o in outcomes), outcomes
            assert transport.cache.renders == 1
            pcm = await transport.cache.pcm(content)
            for s in speakers:
                call = s.received.calls[0]
                await wait_for(lambda c=call: c.ended_by == "BYE", 15.0)  # type: ignore[misc]
                frames = math.ceil(round(pcm.duration_s / 0.02, 6))
                if transport.clock_stats.skipped_ticks == 0:  # else a starved machine skipped
                    assert call.packets == frames
                assert call.packets + transport.clock_stats.skipped_ticks >= frames
                assert statistics.median(
                    b - a for a, b in zip(call.arrivals, call.arrivals[1:], strict=False)
                ) == pytest.approx(0.02, abs=0.002)
        finally:
            await transport.close()
            await stop_speakers(speakers)

    asyncio.run(main())


def test_long_speech_is_retryable_while_espeak_renders_then_served_from_the_cache() -> None:
    """A long text takes espeak-ng longer than render_wait_s: the delivery is retryable saying
    so, the render goes on, and the retry is answered from the cache (one render in all)."""
    need("espeak-ng", "espeak-ng")
    text = "Ủy ban nhân dân xã thông báo lịch phòng chống bão số ba cho toàn thể bà con. " * 150
    content = SpeechContent(text, "vi-VN-south")

    async def main() -> None:
        (speaker,) = await start_speakers(1)
        transport = transport_for(Library(), render_wait_s=0.05)
        await transport.open()
        try:
            target = device(speaker.address)
            first = await transport.deliver(target, content, "k1", make_context())
            assert first.status is OutcomeStatus.RETRYABLE, first.reason
            assert "speech for Loa sipp is still being prepared" in first.reason
            await wait_for(lambda: transport.cache.renders == 1, 60.0)
            second = await transport.deliver(target, content, "k1", make_context())
            assert second.status is OutcomeStatus.DELIVERED, second.reason
            assert transport.cache.renders == 1
            assert speaker.received.invites == 1
        finally:
            await transport.close()
            await stop_speakers([speaker])

    asyncio.run(main())


def test_espeak_missing_gives_a_clear_reason() -> None:
    """A renderer whose program is missing fails the delivery saying what to install."""
    renderer = EspeakRenderer("espeak-ng-not-here")

    async def main() -> None:
        (speaker,) = await start_speakers(1)
        transport = transport_for(Library(), renderer=renderer)
        await transport.open()
        try:
            outcome = await transport.deliver(
                device(speaker.address), SpeechContent("Xin chào"), "k", make_context()
            )
            assert outcome.status is OutcomeStatus.FAILED
            assert "espeak-ng-not-here is not installed" in outcome.reason
        finally:
            await transport.close()
            await stop_speakers([speaker])

    asyncio.run(main())
