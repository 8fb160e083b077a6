"""Audio for the speakers: WAV in, G.711 out, Vietnamese text through a pluggable TTS renderer.

Every item is decoded, resampled to 8 kHz mono and G.711-encoded **once** (``AudioCache``, keyed
by a hash of the content); the frame clock then only slices 160-byte frames out of the encoded
bytes. G.711 and resampling use ``audioop``: the standard library's C module up to Python 3.12,
and its maintained port ``audioop-lts`` (same API) from 3.13 on. (numpy would need a 64k lookup
table and an interpolating resampler of our own; aiortp encodes per frame inside one timer per
stream, which is what the single frame clock avoids.)
"""

from __future__ import annotations

import array
import asyncio
import functools
import hashlib
import importlib
import importlib.util
import io
import os
import shutil
import sys
import tempfile
import warnings
import wave
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from tcs_core.domain.values import AudioContent, SpeechContent

with warnings.catch_warnings():  # deprecated in 3.11/3.12 only because audioop-lts takes over
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "FRAME_BYTES",
    "NARROW_RATE",
    "SAMPLE_RATE",
    "SILENCE",
    "AudioCache",
    "AudioError",
    "EspeakRenderer",
    "MediaResolver",
    "PcmAudio",
    "TtsRenderer",
    "content_key",
    "decode_wav",
    "encode",
    "g722_available",
    "local_media",
]

SAMPLE_RATE = 16_000  # items are kept wideband: G.722 uses it, G.711 halves it
NARROW_RATE = 8000
FRAME_MS = 20
# 20 ms is 160 bytes in every codec here: G.711 (8 kHz, 8 bits) and G.722 (64 kbit/s)
FRAME_BYTES = NARROW_RATE * FRAME_MS // 1000
#: The G.711 byte of digital silence per codec (pads the last frame).
SILENCE: Mapping[str, int] = {"PCMU": 0xFF, "PCMA": 0xD5}


class AudioError(Exception):
    """Audio that cannot be played; the message tells a technician what to fix."""


@dataclass(frozen=True)
class PcmAudio:
    """16-bit signed little-endian mono PCM at 16 kHz."""

    samples: bytes

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / 2 / SAMPLE_RATE


def decode_wav(data: bytes, what: str = "WAV") -> PcmAudio:
    """Decode a PCM WAV (8/16/24/32-bit, any rate, mono or stereo) to 16 kHz mono 16-bit."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{what} is not a PCM WAV file ({exc}); convert it to WAV first") from None
    if channels < 1 or rate < 1:
        raise AudioError(f"{what} has {channels} channels at {rate} Hz")
    if width == 1:  # WAV 8-bit is unsigned
        frames = audioop.bias(frames, 1, -128)
    if width != 2:
        frames = audioop.lin2lin(frames, width, 2)
    if channels == 2:
        frames = audioop.tomono(frames, 2, 0.5, 0.5)
    elif channels > 2:
        raise AudioError(f"{what} has {channels} channels; give mono or stereo")
    if rate != SAMPLE_RATE:
        frames, _ = audioop.ratecv(frames, 2, 1, rate, SAMPLE_RATE, None)
    return PcmAudio(frames)


def g722_available() -> bool:
    """Whether the G.722 encoder (PyPI package ``g722``, module ``G722``) is installed."""
    return importlib.util.find_spec("G722") is not None


def encode(pcm: PcmAudio, codec: str) -> bytes:
    """The item's bytes in ``codec`` (PCMU, PCMA, or G722 with the ``g722`` package), padded
    with silence to a whole number of 20 ms frames (160 bytes each)."""
    if codec == "G722":
        return _encode_g722(pcm.samples)
    narrow, _ = audioop.ratecv(pcm.samples, 2, 1, SAMPLE_RATE, NARROW_RATE, None)
    if codec == "PCMU":
        out = audioop.lin2ulaw(narrow, 2)
    elif codec == "PCMA":
        out = audioop.lin2alaw(narrow, 2)
    else:
        raise AudioError(f"codec {codec} has no encoder here (use PCMU, PCMA or G722)")
    pad = -len(out) % FRAME_BYTES
    return out + bytes([SILENCE[codec]]) * pad


def _encode_g722(samples: bytes) -> bytes:
    try:  # optional: only devices whose codecs setting offers G.722 need it
        g722: Any = importlib.import_module("G722")
    except ImportError:
        raise AudioError(
            "G.722 needs the g722 package (pip install 'g722>=1.2.8,<2'), or drop G722 from "
            "the device's codecs"
        ) from None
    pcm = array.array("h")
    pcm.frombytes(samples + b"\0\0" * (-(len(samples) // 2) % 320))  # whole 20 ms frames
    if sys.byteorder == "big":
        pcm.byteswap()
    out: bytes = g722.G722(SAMPLE_RATE, 64_000).encode(pcm)
    return out


# -- where recorded audio comes from ------------------------------------------------------------

MediaResolver = Callable[[AudioContent], Awaitable[bytes]]


def local_media(root: str | os.PathLike[str] | None = None) -> MediaResolver:
    """A resolver for ``file://`` URIs and paths (relative ones under ``root``).

    Other schemes (``https://``, ``s3://``) need a resolver of your own that fetches the file;
    this one answers with a clear error naming the URI.
    """
    base = Path(root) if root is not None else None

    async def resolve(content: AudioContent) -> bytes:
        uri = content.uri
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
        elif parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
            path = Path(uri)
            if not path.is_absolute() and base is not None:
                path = base / path
        else:
            raise AudioError(
                f"cannot fetch {uri}: the SIP transport reads local files only; stage the file "
                "and give a file:// URI, or construct SipTransport with a media resolver"
            )
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise AudioError(f"cannot read audio file {path}: {exc.strerror or exc}") from None

    return resolve


# -- text to speech ----------------------------------------------------------------------------


@runtime_checkable
class TtsRenderer(Protocol):
    """Turns text into a WAV file's bytes. ``name`` identifies the renderer in cache keys."""

    name: str

    async def render(self, text: str, voice: str) -> bytes:
        """The WAV bytes of ``text`` spoken with ``voice``; ``AudioError`` if it cannot."""
        ...


#: Voice names of the content model mapped to espeak-ng voices (regional Vietnamese voices).
ESPEAK_VOICES: Mapping[str, str] = {
    "vi": "vi",
    "vi-vn": "vi",
    "vi-vn-north": "vi",
    "vi-vn-central": "vi-vn-x-central",
    "vi-vn-south": "vi-vn-x-south",
    "vi-vn-x-central": "vi-vn-x-central",
    "vi-vn-x-south": "vi-vn-x-south",
}


class EspeakRenderer:
    """Vietnamese speech from ``espeak-ng`` (voices ``vi``, ``vi-vn-x-central``, ``vi-vn-x-south``).

    The text goes in on standard input (never on the command line) and the WAV comes back on
    standard output; a render is bounded by ``timeout_s``.
    """

    name = "espeak-ng"

    def __init__(
        self,
        executable: str = "espeak-ng",
        *,
        speed_wpm: int = 150,
        timeout_s: float = 60.0,
        voices: Mapping[str, str] = ESPEAK_VOICES,
    ) -> None:
        self.executable = executable
        self.speed_wpm = speed_wpm
        self.timeout_s = timeout_s
        self.voices = dict(voices)

    def voice_of(self, voice: str) -> str:
        """The espeak-ng voice for a content voice name; ``AudioError`` if unknown."""
        found = self.voices.get(voice.strip().lower())
        if found is None:
            known = ", ".join(sorted(self.voices))
            raise AudioError(f"no espeak-ng voice for {voice!r} (known: {known})")
        return found

    async def render(self, text: str, voice: str) -> bytes:
        """Speak ``text`` with ``espeak-ng -v VOICE --stdin --stdout``."""
        exe = shutil.which(self.executable)
        if exe is None:
            raise AudioError(
                f"{self.executable} is not installed (apt-get install espeak-ng) or not on PATH"
            )
        args = [exe, "-v", self.voice_of(voice), "-s", str(self.speed_wpm), "--stdin", "--stdout"]
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                out, err = await proc.communicate(text.encode("utf-8"))
        except BaseException:  # timeout or cancellation: never leave espeak-ng running
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0 or not out:
            why = err.decode("utf-8", "replace").strip()[:200] or f"exit code {proc.returncode}"
            raise AudioError(f"espeak-ng failed: {why}")
        return _fix_stream_wav(out)


def _fix_stream_wav(data: bytes) -> bytes:
    """espeak-ng writing to a pipe cannot seek back, so its RIFF/data sizes may be 0 or
    0xFFFFFFFF: set them from the real length so ``wave`` reads every sample."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    buf = bytearray(data)
    buf[4:8] = (len(buf) - 8).to_bytes(4, "little")
    pos = 12
    while pos + 8 <= len(buf):
        chunk, size = bytes(buf[pos : pos + 4]), int.from_bytes(buf[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            buf[pos + 4 : pos + 8] = (len(buf) - pos - 8).to_bytes(4, "little")
            break
        pos += 8 + size + (size & 1)
    return bytes(buf)


# -- the render cache --------------------------------------------------------------------------


def content_key(content: AudioContent | SpeechContent, renderer: str) -> str:
    """The hash an item's audio is cached under (the same item renders once)."""
    if isinstance(content, AudioContent):
        raw = f"audio\0{content.uri}\0{content.sha256}"
    else:
        raw = f"speech\0{renderer}\0{content.voice.lower()}\0{content.text}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class AudioCache:
    """Encoded audio by content hash and codec, rendered once even when many calls ask at once.

    Bounded by ``max_bytes`` (least recently used first out). With ``directory`` the rendered
    PCM is also kept on disk, so a restart does not speak the same text again.
    """

    def __init__(
        self,
        resolve: MediaResolver,
        renderer: TtsRenderer | None,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        directory: str | os.PathLike[str] | None = None,
        verify_sha256: bool = True,
    ) -> None:
        self.resolve = resolve
        self.renderer = renderer
        self.max_bytes = max_bytes
        self.directory = Path(directory) if directory is not None else None
        self.verify_sha256 = verify_sha256
        self._pcm: OrderedDict[str, PcmAudio] = OrderedDict()
        self._encoded: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._size = 0
        self._pending: dict[str, asyncio.Task[PcmAudio]] = {}
        self.renders = 0  # how many items were decoded or spoken (not served from the cache)

    async def get(self, content: AudioContent | SpeechContent, codec: str) -> bytes:
        """The item's G.711 bytes for ``codec`` (rendering it on first use)."""
        renderer = self.renderer.name if self.renderer is not None else "none"
        key = content_key(content, renderer)
        hit = self._encoded.get((key, codec))
        if hit is not None:
            self._encoded.move_to_end((key, codec))
            return hit
        pcm = await self.pcm(content, key)
        hit = self._encoded.get((key, codec))  # another caller may have encoded it meanwhile
        if hit is not None:
            return hit
        data = encode(pcm, codec)
        self._store_encoded((key, codec), data)
        return data

    async def pcm(self, content: AudioContent | SpeechContent, key: str | None = None) -> PcmAudio:
        """The item's 8 kHz PCM (one render per key however many callers wait for it)."""
        if key is None:
            key = content_key(content, self.renderer.name if self.renderer else "none")
        hit = self._pcm.get(key)
        if hit is not None:
            self._pcm.move_to_end(key)
            return hit
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self._render(content, key))
            self._pending[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        # shield: one caller giving up (timeout) must not cancel the render the others await
        return await asyncio.shield(task)

    def _forget(self, key: str, _task: object) -> None:
        self._pending.pop(key, None)

    async def close(self) -> None:
        """Cancel renders in progress (their espeak-ng processes are killed)."""
        tasks = list(self._pending.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _render(self, content: AudioContent | SpeechContent, key: str) -> PcmAudio:
        disk = self.directory / f"{key}.pcm" if self.directory is not None else None
        if disk is not None and disk.exists():
            pcm = PcmAudio(await asyncio.to_thread(disk.read_bytes))
        else:
            pcm = await self._decode(content)
            self.renders += 1
            if disk is not None:
                await asyncio.to_thread(_write_atomic, disk, pcm.samples)
        self._pcm[key] = pcm
        self._size += len(pcm.samples)
        self._evict()
        return pcm

    async def _decode(self, content: AudioContent | SpeechContent) -> PcmAudio:
        if isinstance(content, SpeechContent):
            if self.renderer is None:
                raise AudioError("no text-to-speech renderer is configured for spoken items")
            wav = await self.renderer.render(content.text, content.voice)
            return decode_wav(wav, f"speech from {self.renderer.name}")
        data = await self.resolve(content)
        if self.verify_sha256:
            digest = hashlib.sha256(data).hexdigest()
            if digest != content.sha256:
                raise AudioError(
                    f"audio file {content.uri} has SHA-256 {digest[:12]}…, the broadcast says "
                    f"{content.sha256[:12]}…: the file was changed or is not the approved one"
                )
        return await asyncio.to_thread(decode_wav, data, content.uri)

    def _store_encoded(self, key: tuple[str, str], data: bytes) -> None:
        self._encoded[key] = data
        self._size += len(data)
        self._evict()

    def _evict(self) -> None:
        while self._size > self.max_bytes and (self._encoded or len(self._pcm) > 1):
            if self._encoded:
                _, data = self._encoded.popitem(last=False)
                self._size -= len(data)
            else:
                _, pcm = self._pcm.popitem(last=False)
                self._size -= len(pcm.samples)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
