"""Vietnamese phone numbers: validate and normalise to E.164 (``+84…``) with ``phonenumbers``
(Google's libphonenumber metadata, kept current with the numbering plan: the 2018 move from 11
to 10 digits, new mobile prefixes 03x/05x/07x/08x/09x)."""

from __future__ import annotations

import enum
import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from tcs_core.errors import ValidationError

__all__ = ["NumberFormat", "format_number", "mask", "normalise_vn"]

_SMS_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


class NumberFormat(enum.StrEnum):
    """How a gateway wants the destination written."""

    E164 = "e164"  # +84912345678
    INTERNATIONAL = "international"  # 84912345678 (Kannel's usual form)
    NATIONAL = "national"  # 0912345678


_E164_VN = re.compile(r"\+84[35789]\d{8}")
# Mobile ranges of Vietnam's plan are fixed by the first three digits of the 9-digit national
# number: one full check per range, then numbers already in E.164 are checked by their prefix.
_MOBILE_RANGES: set[str] = set()


def normalise_vn(number: str, field: str = "address") -> str:
    """``+84…`` for a valid Vietnamese mobile number written any usual way (``0912 345 678``,
    ``84912345678``, ``+84-91-234-5678``); ValidationError naming ``field`` otherwise."""
    if isinstance(number, str) and _E164_VN.fullmatch(number) and number[:6] in _MOBILE_RANGES:
        return number
    e164 = _normalise(number, field)
    if len(e164) == 12:
        _MOBILE_RANGES.add(e164[:6])
    return e164


def _normalise(number: str, field: str) -> str:
    """``+84…`` for a valid Vietnamese mobile number written any usual way (``0912 345 678``,
    ``84912345678``, ``+84-91-234-5678``); ValidationError naming ``field`` otherwise."""
    raw = str(number).strip()
    if not raw:
        raise ValidationError(field, "no phone number given")
    if raw.startswith("84") and not raw.startswith("+"):
        raw = "+" + raw
    try:
        parsed = phonenumbers.parse(raw, "VN")
    except NumberParseException as exc:
        raise ValidationError(field, f"{number!r} is not a phone number ({exc})") from None
    if parsed.country_code != 84:
        raise ValidationError(field, f"{number!r} is not a Vietnamese number (+84)")
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(
            field, f"{number!r} is not a valid Vietnamese number (wrong length or prefix)"
        )
    if phonenumbers.number_type(parsed) not in _SMS_TYPES:
        raise ValidationError(field, f"{number!r} is a fixed line, not a mobile: it takes no SMS")
    return str(phonenumbers.format_number(parsed, PhoneNumberFormat.E164))


def format_number(e164: str, how: NumberFormat | str) -> str:
    """An E.164 number (as ``normalise_vn`` returns) written the way a gateway wants it."""
    how = NumberFormat(how)
    if how is NumberFormat.E164:
        return e164
    if how is NumberFormat.INTERNATIONAL:
        return e164.lstrip("+")
    return "0" + e164[3:]


def mask(number: str) -> str:
    """``+8491****678``: enough to tell numbers apart in logs without publishing them."""
    return number[:5] + "*" * max(0, len(number) - 8) + number[-3:] if len(number) > 8 else "***"
