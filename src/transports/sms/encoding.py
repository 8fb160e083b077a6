"""SMS text encoding: GSM-7 when the text allows, UCS-2 otherwise, and segment counts.

GSM 03.38 (GSM-7) carries 160 septets in one message, 153 per part of a concatenated message (the
UDH takes 7). Characters of the extension table (``{ } [ ] ~ \\ | ^ €``) take two septets (escape +
character) and are never split across parts. UCS-2 carries 70 UTF-16 code units, 67 per part;
a character outside the Basic Multilingual Plane takes two units and is never split either.

Vietnamese with diacritics needs UCS-2 ("Thông báo" has ô, á): 70 characters per message instead
of 160. ``strip_diacritics`` turns it into GSM-7 text (``Thong bao``) and says exactly what it
changed, so the loss is explicit and recorded, never silent.

The GSM 03.38 tables come from the ``gsm0338`` codec (PyPI), which registers ``"gsm03.38"``:
each character encodes to one byte per septet (two for the extension table), exactly the count
the segmentation needs.
"""

from __future__ import annotations

import enum
import functools
import unicodedata
from collections.abc import Callable

import attrs
import gsm0338  # type: ignore[import-untyped]  # registers the "gsm03.38" codec

__all__ = [
    "GSM7_MULTI",
    "GSM7_SINGLE",
    "UCS2_MULTI",
    "UCS2_SINGLE",
    "Coding",
    "Encoded",
    "Stripped",
    "encode",
    "gsm7_septets",
    "is_gsm7",
    "strip_diacritics",
]

_CODEC = "gsm03.38"
assert gsm0338  # the import registers the codec
GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


class Coding(enum.StrEnum):
    """How the text travels: GSM 03.38 septets or UCS-2 (UTF-16BE) code units."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"

    @property
    def kannel(self) -> int:
        """Kannel's ``coding`` parameter: 0 (7-bit) or 2 (UCS-2)."""
        return 0 if self is Coding.GSM7 else 2


@functools.lru_cache(maxsize=4096)
def _septets(ch: str) -> int:
    """Septets of one character in GSM-7, or 0 if it has none."""
    try:
        encoded = ch.encode(_CODEC)
    except UnicodeEncodeError:
        return 0
    # The codec maps a few characters to look-alikes; only an exact round trip counts.
    return len(encoded) if encoded.decode(_CODEC) == ch else 0


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` exists in GSM 03.38 (basic or extension table)."""
    return all(_septets(c) for c in text)


def gsm7_septets(text: str) -> int:
    """Septets ``text`` takes in GSM-7 (ValueError if a character has none)."""
    total = 0
    for c in text:
        n = _septets(c)
        if not n:
            raise ValueError(f"{c!r} (U+{ord(c):04X}) is not in the GSM 03.38 alphabet")
        total += n
    return total


def _units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


@attrs.frozen
class Encoded:
    """The text as it goes out: its coding, size in units, and its parts."""

    coding: Coding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: tuple[str, ...]

    @property
    def segments(self) -> int:
        """How many SMS the text costs (0 for an empty text)."""
        return len(self.parts)

    @property
    def summary(self) -> str:
        """``"gsm7, 1 segment, 42/160 septets"``: recorded with each outcome."""
        single = GSM7_SINGLE if self.coding is Coding.GSM7 else UCS2_SINGLE
        multi = GSM7_MULTI if self.coding is Coding.GSM7 else UCS2_MULTI
        unit = "septets" if self.coding is Coding.GSM7 else "UCS-2 units"
        n = self.segments
        cap = single if n <= 1 else multi * n
        word = "segment" if n == 1 else "segments"
        return f"{self.coding.value}, {n} {word}, {self.units}/{cap} {unit}"


def _split(text: str, size: Callable[[str], int], single: int, multi: int) -> tuple[str, ...]:
    if not text:
        return ()
    units = [size(c) for c in text]
    if sum(units) <= single:
        return (text,)
    parts, start, used = [], 0, 0
    for i, n in enumerate(units):
        if used + n > multi:  # never split an escape pair or a surrogate pair
            parts.append(text[start:i])
            start, used = i, 0
        used += n
    parts.append(text[start:])
    return tuple(parts)


@functools.lru_cache(maxsize=512)  # a dispatch sends one text to every subscriber
def encode(text: str, coding: Coding | None = None) -> Encoded:
    """Choose the coding (GSM-7 when every character allows, else UCS-2) and split the text.

    Passing ``coding=Coding.UCS2`` forces UCS-2; forcing GSM-7 on a text that needs UCS-2 raises
    ValueError (strip the diacritics first, with ``strip_diacritics``)."""
    if coding is None:
        coding = Coding.GSM7 if is_gsm7(text) else Coding.UCS2
    if coding is Coding.GSM7:
        units = gsm7_septets(text)
        return Encoded(coding, units, _split(text, _septets, GSM7_SINGLE, GSM7_MULTI))
    units = sum(_units(c) for c in text)
    return Encoded(coding, units, _split(text, _units, UCS2_SINGLE, UCS2_MULTI))


# Punctuation that word processors put in and GSM-7 lacks: the usual plain equivalents.
_PLAIN = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " ", "\u2022": "*",
    "\u0111": "d", "\u0110": "D",  # đ Đ: a letter of its own, not a base letter + mark
}  # fmt: skip


@attrs.frozen
class Stripped:
    """The GSM-7 text and exactly what was lost on the way."""

    text: str
    replaced: tuple[tuple[str, str], ...]  # (original, replacement), each distinct pair once
    dropped: tuple[str, ...]  # characters with no GSM-7 equivalent, replaced by "?"

    @property
    def changed(self) -> bool:
        """Whether anything was replaced or dropped."""
        return bool(self.replaced or self.dropped)

    @property
    def loss(self) -> str:
        """``"diacritics stripped: ô→o ×3, ư→u; no GSM-7 form: 😀"``, or empty."""
        out = []
        if self.replaced:
            out.append("diacritics stripped: " + ", ".join(f"{a}→{b}" for a, b in self.replaced))
        if self.dropped:
            out.append("no GSM-7 form, sent as '?': " + " ".join(self.dropped))
        return "; ".join(out)


def _plain(ch: str) -> str | None:
    if _septets(ch):
        return ch
    if ch in _PLAIN:
        return _PLAIN[ch]
    base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
    if base and base != ch and is_gsm7(base):
        return base
    return None


def strip_diacritics(text: str) -> Stripped:
    """GSM-7 text from any text: Vietnamese letters lose their marks (ô, ơ, ớ → o; đ → d),
    typographic punctuation becomes plain, anything else becomes ``?``; all of it reported."""
    out: list[str] = []
    replaced: dict[tuple[str, str], None] = {}
    dropped: dict[str, None] = {}
    for ch in text:
        p = _plain(ch)
        if p is None:
            dropped[ch] = None
            out.append("?")
        else:
            if p != ch:
                replaced[(ch, p)] = None
            out.append(p)
    return Stripped("".join(out), tuple(replaced), tuple(dropped))
