"""Hypothesis strategies for tcs-core's public domain types, and random area histories.

Every strategy here yields *valid* values: they construct without ``ValidationError`` and are
accepted by the ``SourceSystem`` commands that take them. Strategies named in the plural yield one
value each (``channels()`` yields one ``Channel``); the few that yield collections say so
(``channel_sets()``, ``outcome_batches()``, ``area_histories()``).

Area histories are plain data: a list of operations (``CreateArea``, ``RenameArea``, ``MoveArea``,
``MergeAreas``, ``SplitArea``, ``DissolveArea``) with non-decreasing effective dates, applied to
an application by ``apply_history``. ``AreaModel`` is the reference model the generator uses to
keep every operation valid; tests use it as an oracle (``AreaModel.replay(ops, until=day)``).

Requires the ``test`` extra (``hypothesis``).
"""

from __future__ import annotations

import enum
import functools
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any, Literal, TypeAlias, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from croniter import croniter
from hypothesis import strategies as st

from tcs_core.app import Actor, SourceSystem
from tcs_core.domain.area import area_id
from tcs_core.domain.device import validate_settings
from tcs_core.domain.discovered import DiscoveredService
from tcs_core.domain.dispatch import RECEIPT_STATUSES, DeliveryReceipt
from tcs_core.domain.values import (
    AreaKind,
    AudioContent,
    BoardContent,
    BroadcastStatus,
    Category,
    Channel,
    Condition,
    ContentVariant,
    CutIn,
    DeliveryOutcome,
    DeviceKind,
    DeviceStatus,
    FacilityKind,
    FeedbackChannel,
    FeedbackStatus,
    Interrupted,
    OutcomeStatus,
    Permission,
    Preemption,
    Priority,
    Role,
    RoleGrant,
    ScheduleKind,
    ScheduleSpec,
    SmsContent,
    SpeechContent,
    StationKind,
    Targets,
)
from tcs_core.errors import ValidationError

__all__ = [
    "CRON_EXPRESSIONS",
    "VIETNAMESE_WORDS",
    "ZONES",
    "AreaModel",
    "AreaNode",
    "AreaOp",
    "BroadcastDraft",
    "CreateArea",
    "DissolveArea",
    "MergeAreas",
    "MoveArea",
    "RenameArea",
    "SettingValue",
    "SplitArea",
    "apply_history",
    "area_codes",
    "area_histories",
    "area_kinds",
    "area_names",
    "audio_contents",
    "aware_datetimes",
    "board_contents",
    "broadcast_drafts",
    "broadcast_statuses",
    "categories",
    "channel_sets",
    "channels",
    "conditions",
    "content_for",
    "content_variants",
    "cron_expressions",
    "cut_ins",
    "delivery_outcomes",
    "delivery_receipts",
    "device_kinds",
    "device_settings",
    "device_statuses",
    "discovered_services",
    "facility_kinds",
    "feedback_channels",
    "feedback_statuses",
    "group_names",
    "interruptions",
    "outcome_batches",
    "outcome_statuses",
    "permissions",
    "preemptions",
    "priorities",
    "role_grants",
    "roles",
    "schedule_kinds",
    "schedule_specs",
    "sms_contents",
    "speech_contents",
    "station_kinds",
    "targets",
    "titles",
    "usernames",
    "vietnamese_text",
    "zones",
]

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")

#: Zones the schedule and datetime strategies draw from (``ScheduleSpec.zone`` takes the names).
ZONES: tuple[str, ...] = ("Asia/Ho_Chi_Minh", "Europe/Berlin", "America/New_York", "UTC")

#: Cron expressions that are valid and typical of a commune's broadcast plan.
CRON_EXPRESSIONS: tuple[str, ...] = (
    "0 7 * * *",  # 07:00 every day
    "30 17 * * *",  # 17:30 every day
    "0 6,11,17 * * *",  # three bulletins a day
    "*/15 * * * *",  # every quarter of an hour (emergency repeats)
    "0 7 * * 1-5",  # working days
    "0 8 * * 0",  # Sundays
    "0 19 1 * *",  # first of the month
    "45 5 * * 1,3,5",  # Mon, Wed, Fri
    "0 0 1 1 *",  # new year
    "15 6-18/3 * * *",  # every three hours during the day
)

#: Vietnamese words of the kind bulletins are made of; most carry diacritics.
VIETNAMESE_WORDS: tuple[str, ...] = (
    "thông",
    "báo",
    "khẩn",
    "cấp",
    "bão",
    "số",
    "lũ",
    "lụt",
    "sạt",
    "lở",
    "đất",
    "mưa",
    "lớn",
    "gió",
    "giật",
    "cấp",
    "độ",
    "xã",
    "phường",
    "thị",
    "trấn",
    "thôn",
    "bản",
    "tổ",
    "dân",
    "phố",
    "người",
    "bà",
    "con",
    "chú",
    "ý",
    "sơ",
    "tán",
    "phòng",
    "chống",
    "dịch",
    "bệnh",
    "tiêm",
    "chủng",
    "vắc-xin",
    "họp",
    "nhân",
    "ủy",
    "ban",
    "Đắk",
    "Lắk",
    "Huế",
    "Quảng",
    "Ngãi",
    "Hà",
    "Nội",
    "Việt",
    "Nam",
    "nước",
    "sạch",
    "điện",
    "lúc",
    "giờ",
    "ngày",
    "tháng",
    "năm",
    "2025",
    "07:30",
    "chính",
    "sách",
    "pháp",
    "luật",
    "an",
    "ninh",
    "trật",
    "tự",
    "gương",
    "tốt",
    "việc",
)

_DIACRITIC_WORDS = tuple(w for w in VIETNAMESE_WORDS if not w.isascii())
_VI_LOWER = (
    "aàáảãạăằắẳẵặâầấẩẫậbcdđeèéẻẽẹêềếểễệghiìíỉĩịklmnoòóỏõọôồốổỗộơờớởỡợpqrstuùúủũụưừứửữựvxyỳýỷỹỵ"
)
_VI_LETTERS = _VI_LOWER + _VI_LOWER.upper()
_PUNCTUATION = ("", ".", "!", ",", ";", ":", "?", " ...")

_NAME_PREFIX: dict[AreaKind, str] = {
    AreaKind.COUNTRY: "Nước",
    AreaKind.PROVINCE: "Tỉnh",
    AreaKind.DISTRICT: "Huyện",
    AreaKind.WARD: "Phường",
    AreaKind.TOWNSHIP: "Thị trấn",
    AreaKind.COMMUNE: "Xã",
    AreaKind.SPECIAL_ZONE: "Đặc khu",
    AreaKind.VILLAGE: "Thôn",
}

_KINDS_BELOW: dict[AreaKind | None, tuple[AreaKind, ...]] = {
    None: (AreaKind.PROVINCE,),
    AreaKind.COUNTRY: (AreaKind.PROVINCE,),
    AreaKind.PROVINCE: (AreaKind.DISTRICT, AreaKind.COMMUNE, AreaKind.WARD, AreaKind.SPECIAL_ZONE),
    AreaKind.DISTRICT: (AreaKind.COMMUNE, AreaKind.WARD, AreaKind.TOWNSHIP),
    AreaKind.WARD: (AreaKind.VILLAGE,),
    AreaKind.TOWNSHIP: (AreaKind.VILLAGE,),
    AreaKind.COMMUNE: (AreaKind.VILLAGE,),
    AreaKind.SPECIAL_ZONE: (AreaKind.VILLAGE,),
    AreaKind.VILLAGE: (AreaKind.VILLAGE,),
}

_MIN_DAY = datetime(2000, 1, 1)
_MAX_DAY = datetime(2040, 12, 31)


def _members(cls: type[E]) -> st.SearchStrategy[E]:
    return st.sampled_from(list(cls))


@functools.cache
def _sampled(values: tuple[T, ...]) -> st.SearchStrategy[T]:
    return st.sampled_from(values)


def _source(values: Sequence[T] | st.SearchStrategy[T], what: str) -> st.SearchStrategy[T]:
    if isinstance(values, st.SearchStrategy):
        return values
    if not values:
        raise ValueError(f"give at least one {what}")
    return _sampled(tuple(values))


# --------------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------------


def area_kinds() -> st.SearchStrategy[AreaKind]:
    """Any ``AreaKind``."""
    return _members(AreaKind)


def device_kinds() -> st.SearchStrategy[DeviceKind]:
    """Any ``DeviceKind``."""
    return _members(DeviceKind)


def channels() -> st.SearchStrategy[Channel]:
    """Any ``Channel``."""
    return _members(Channel)


def channel_sets(min_size: int = 1) -> st.SearchStrategy[tuple[Channel, ...]]:
    """A sorted tuple of distinct channels (at least ``min_size``)."""
    return st.lists(channels(), min_size=min_size, max_size=len(Channel), unique=True).map(
        _sorted_channels
    )


def _sorted_channels(values: list[Channel]) -> tuple[Channel, ...]:
    return tuple(sorted(values))


def device_statuses() -> st.SearchStrategy[DeviceStatus]:
    """Any ``DeviceStatus``."""
    return _members(DeviceStatus)


def station_kinds() -> st.SearchStrategy[StationKind]:
    """Any ``StationKind``."""
    return _members(StationKind)


def conditions() -> st.SearchStrategy[Condition]:
    """Any station ``Condition``."""
    return _members(Condition)


def facility_kinds() -> st.SearchStrategy[FacilityKind]:
    """Any ``FacilityKind``."""
    return _members(FacilityKind)


def priorities() -> st.SearchStrategy[Priority]:
    """Any ``Priority``."""
    return _members(Priority)


def categories() -> st.SearchStrategy[Category]:
    """Any ``Category`` of essential information."""
    return _members(Category)


def broadcast_statuses() -> st.SearchStrategy[BroadcastStatus]:
    """Any ``BroadcastStatus``."""
    return _members(BroadcastStatus)


def outcome_statuses() -> st.SearchStrategy[OutcomeStatus]:
    """Any delivery ``OutcomeStatus``."""
    return _members(OutcomeStatus)


def feedback_statuses() -> st.SearchStrategy[FeedbackStatus]:
    """Any ``FeedbackStatus``."""
    return _members(FeedbackStatus)


def feedback_channels() -> st.SearchStrategy[FeedbackChannel]:
    """Any ``FeedbackChannel``."""
    return _members(FeedbackChannel)


def roles() -> st.SearchStrategy[Role]:
    """Any ``Role``."""
    return _members(Role)


def permissions() -> st.SearchStrategy[Permission]:
    """Any special ``Permission``."""
    return _members(Permission)


def schedule_kinds() -> st.SearchStrategy[ScheduleKind]:
    """Any ``ScheduleKind``."""
    return _members(ScheduleKind)


def cut_ins() -> st.SearchStrategy[CutIn]:
    """Any ``CutIn``."""
    return _members(CutIn)


def interruptions() -> st.SearchStrategy[Interrupted]:
    """Any ``Interrupted`` policy."""
    return _members(Interrupted)


def zones() -> st.SearchStrategy[str]:
    """A zone name from ``ZONES``."""
    return st.sampled_from(ZONES)


# --------------------------------------------------------------------------------------------
# Text, names, codes
# --------------------------------------------------------------------------------------------


_WORD: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(VIETNAMESE_WORDS),
    st.text(alphabet=_VI_LETTERS, min_size=1, max_size=10),
    st.integers(min_value=0, max_value=99_999).map(str),
)
_NORMAL_FORMS: tuple[Literal["NFC", "NFD"], ...] = ("NFC", "NFC", "NFD")


@st.composite
def _vietnamese_text(draw: st.DrawFn, words: st.SearchStrategy[list[str]], max_len: int) -> str:
    chosen = draw(words)
    chosen.insert(draw(st.integers(0, len(chosen))), draw(st.sampled_from(_DIACRITIC_WORDS)))
    text = " ".join(chosen) + draw(st.sampled_from(_PUNCTUATION))
    text = unicodedata.normalize(draw(st.sampled_from(_NORMAL_FORMS)), text)
    return text[:max_len].rstrip()


@functools.cache
def _text_strategy(min_words: int, max_words: int, max_len: int) -> st.SearchStrategy[str]:
    words = st.lists(_WORD, min_size=min_words - 1, max_size=max_words - 1)
    return _vietnamese_text(words, max_len)


def vietnamese_text(
    min_words: int = 1, max_words: int = 20, max_len: int = 2000
) -> st.SearchStrategy[str]:
    """Vietnamese text with at least one diacritic, never blank, at most ``max_len`` characters.

    Words come from ``VIETNAMESE_WORDS``, random Vietnamese letters and numbers; about a third of
    the texts are in NFD (decomposed) form, as some keyboards and SMS gateways produce.
    """
    if min_words < 1 or max_words < min_words or max_len < 1:
        raise ValueError("need 1 <= min_words <= max_words and max_len >= 1")
    return _text_strategy(min_words, max_words, max_len)


def titles() -> st.SearchStrategy[str]:
    """A broadcast title (1-300 characters, no surrounding whitespace)."""
    return vietnamese_text(1, 12, 300)


@functools.cache
def _names_strategy(kind: AreaKind | None) -> st.SearchStrategy[str]:
    prefixes = list(_NAME_PREFIX.values()) if kind is None else [_NAME_PREFIX[kind]]
    return st.builds(
        lambda p, rest: f"{p} {rest}", st.sampled_from(prefixes), vietnamese_text(1, 3, 80)
    )


def area_names(kind: AreaKind | None = None) -> st.SearchStrategy[str]:
    """An area name such as "Xã Ea Tiêu" (prefix by ``kind``; any prefix if None)."""
    return _names_strategy(None if kind is None else AreaKind(kind))


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(string.digits, min_size=n, max_size=n)


@functools.cache
def _codes_strategy(kind: AreaKind | None) -> st.SearchStrategy[str]:
    if kind is None:
        return st.one_of(_digits(2), _digits(5))
    if kind is AreaKind.COUNTRY:
        return st.sampled_from(("VN", "VNM", "704"))
    if kind is AreaKind.PROVINCE:
        return _digits(2)
    if kind is AreaKind.DISTRICT:
        return _digits(3)
    if kind is AreaKind.VILLAGE:
        return st.builds(lambda a, b: f"{a}-{b}", _digits(5), _digits(3))
    return _digits(5)


def area_codes(kind: AreaKind | None = None) -> st.SearchStrategy[str]:
    """An official-looking area code: 2 digits (province), 3 (district), 5 (commune level),
    5+3 for villages (``"00004-012"``); provinces' or communes' when ``kind`` is None."""
    return _codes_strategy(None if kind is None else AreaKind(kind))


_official_codes = area_codes  # ``targets`` has a parameter of that name


_LOWER = string.ascii_lowercase


def _word(first: str, rest: str, max_rest: int, min_rest: int = 0) -> st.SearchStrategy[str]:
    """``[first][rest]{min_rest,max_rest}`` without ``from_regex`` (slow to set up)."""
    return st.builds(
        lambda a, b: a + b,
        st.sampled_from(first),
        st.text(rest, min_size=min_rest, max_size=max_rest),
    )


_USERNAMES = _word(_LOWER + string.digits, _LOWER + string.digits + "._@-", 23, min_rest=1)


def usernames() -> st.SearchStrategy[str]:
    """A valid username: lowercase ASCII letters, digits and ``. _ @ -``, 2-24 characters."""
    return _USERNAMES


def group_names() -> st.SearchStrategy[str]:
    """A device group name (``"loa-cho"``, ``"bang-tin-2"``, ...)."""
    return st.one_of(
        st.sampled_from(("loa-cho", "loa-truong", "bang-tin", "ven-bien", "vung-lu")),
        _word(_LOWER, _LOWER + string.digits + "-", 15),
    )


# --------------------------------------------------------------------------------------------
# Datetimes
# --------------------------------------------------------------------------------------------

_TZINFOS: dict[str, tzinfo] = {z: ZoneInfo(z) for z in ZONES}


def aware_datetimes(
    min_value: datetime = _MIN_DAY,
    max_value: datetime = _MAX_DAY,
    zone_names: Sequence[str] = ZONES,
) -> st.SearchStrategy[datetime]:
    """Aware datetimes in the named zones or at a fixed +07:00 offset (bounds are naive local)."""
    return _aware(min_value, max_value, tuple(zone_names))


@functools.cache
def _aware(
    min_value: datetime, max_value: datetime, zone_names: tuple[str, ...]
) -> st.SearchStrategy[datetime]:
    tzs: list[tzinfo] = [_TZINFOS.get(z) or ZoneInfo(z) for z in zone_names]
    tzs.append(timezone(timedelta(hours=7)))
    return st.datetimes(
        min_value=min_value,
        max_value=max_value,
        timezones=st.sampled_from(tzs),
        allow_imaginary=False,
    )


def _days() -> st.SearchStrategy[date]:
    return st.dates(min_value=_MIN_DAY.date(), max_value=_MAX_DAY.date())


# --------------------------------------------------------------------------------------------
# Content variants
# --------------------------------------------------------------------------------------------


def _uris(extensions: Sequence[str]) -> st.SearchStrategy[str]:
    stem = st.text(string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=24)
    base = st.sampled_from(
        (
            "https://media.tinh.example.vn/ban-tin/",
            "file:///srv/tcs/media/",
            "s3://tcs-media/2025/",
        )
    )
    return st.builds(lambda b, s, e: f"{b}{s}.{e}", base, stem, st.sampled_from(list(extensions)))


def audio_contents() -> st.SearchStrategy[AudioContent]:
    """A recorded bulletin: URI, SHA-256 (64 lowercase hex) and an optional duration."""
    return st.builds(
        AudioContent,
        uri=_uris(("mp3", "ogg", "wav", "opus")),
        sha256=st.binary(min_size=32, max_size=32).map(bytes.hex),
        duration_s=st.none()
        | st.floats(min_value=0.0, max_value=86_400.0, exclude_min=True, allow_nan=False),
    )


def speech_contents() -> st.SearchStrategy[SpeechContent]:
    """Vietnamese text (with diacritics) for text-to-speech, and a voice."""
    return st.builds(
        SpeechContent,
        text=vietnamese_text(1, 60, 20_000),
        voice=st.sampled_from(("vi", "vi-VN-north", "vi-VN-central", "vi-VN-south")),
    )


def board_contents() -> st.SearchStrategy[BoardContent]:
    """Board text, up to four image references and a layout hint."""
    return st.builds(
        BoardContent,
        text=vietnamese_text(1, 40, 10_000),
        images=st.lists(_uris(("png", "jpg", "webp")), max_size=4).map(tuple),
        layout=st.sampled_from(("default", "full", "split", "ticker")),
    )


def sms_contents() -> st.SearchStrategy[SmsContent]:
    """SMS text of at most 670 characters (10 UCS-2 segments)."""
    return st.builds(SmsContent, text=vietnamese_text(1, 40, 670))


def content_variants() -> st.SearchStrategy[ContentVariant]:
    """Any content variant (audio, speech, board or SMS)."""
    return st.one_of(audio_contents(), speech_contents(), board_contents(), sms_contents())


def _variant_for(channel: Channel) -> st.SearchStrategy[ContentVariant]:
    if channel is Channel.AUDIO:
        return st.one_of(audio_contents(), speech_contents())
    if channel is Channel.BOARD:
        return board_contents()
    return sms_contents()


def content_for(
    channels: Iterable[Channel | str],
) -> st.SearchStrategy[dict[Channel, ContentVariant]]:
    """One content variant per channel in ``channels`` (audio gets a recording or speech)."""
    return _content_for(tuple(sorted({Channel(c) for c in channels})))


@functools.cache
def _content_for(chans: tuple[Channel, ...]) -> st.SearchStrategy[dict[Channel, ContentVariant]]:
    return st.fixed_dictionaries({c: _variant_for(c) for c in chans})


# --------------------------------------------------------------------------------------------
# Targets, schedules, preemption
# --------------------------------------------------------------------------------------------


def targets(
    area_codes: Sequence[str] | st.SearchStrategy[str] | None = None,
    *,
    channels: Sequence[Channel] | None = None,
    max_areas: int = 3,
) -> st.SearchStrategy[Targets]:
    """Targets over 1..``max_areas`` distinct codes drawn from ``area_codes``.

    ``area_codes`` is a list of codes that exist in the application under test (or a strategy);
    the default draws official-looking codes, which only suits value-level tests. ``channels``
    fixes the channels; otherwise any non-empty set. Device-kind and group filters are sometimes set.
    """
    codes = _official_codes() if area_codes is None else _source(area_codes, "area code")
    return _targets(codes, None if channels is None else tuple(channels), max_areas)


@functools.cache
def _targets(
    codes: st.SearchStrategy[str], chans: tuple[Channel, ...] | None, max_areas: int
) -> st.SearchStrategy[Targets]:
    return st.builds(
        Targets,
        areas=st.lists(codes, min_size=1, max_size=max_areas, unique=True),
        channels=channel_sets() if chans is None else st.just(tuple(chans)),
        device_kinds=st.lists(device_kinds(), max_size=2, unique=True),
        groups=st.lists(group_names(), max_size=2, unique=True),
    )


def cron_expressions() -> st.SearchStrategy[str]:
    """A valid cron expression: one of ``CRON_EXPRESSIONS`` or one built field by field."""
    n = st.integers
    minute = st.one_of(
        n(0, 59).map(str),
        st.sampled_from(("*/5", "*/10", "*/15", "*/30")),
        st.lists(n(0, 59), min_size=2, max_size=3, unique=True).map(
            lambda xs: ",".join(map(str, sorted(xs)))
        ),
    )
    hour = st.one_of(
        st.just("*"),
        n(0, 23).map(str),
        st.tuples(n(0, 11), n(12, 23)).map(lambda t: f"{t[0]}-{t[1]}"),
        st.lists(n(0, 23), min_size=2, max_size=4, unique=True).map(
            lambda xs: ",".join(map(str, sorted(xs)))
        ),
    )
    dom = st.one_of(st.just("*"), n(1, 28).map(str))
    month = st.one_of(st.just("*"), n(1, 12).map(str))
    dow = st.one_of(st.just("*"), st.sampled_from(("1-5", "0,6", "1,3,5")), n(0, 6).map(str))
    built = st.builds(lambda *f: " ".join(f), minute, hour, dom, month, dow)
    return st.one_of(st.sampled_from(CRON_EXPRESSIONS), built).filter(croniter.is_valid)


@st.composite
def _schedule_specs(
    draw: st.DrawFn,
    kind: ScheduleKind | None,
    zone_names: tuple[str, ...],
    instant: st.SearchStrategy[datetime],
) -> ScheduleSpec:
    k = draw(schedule_kinds()) if kind is None else ScheduleKind(kind)
    kwargs: dict[str, Any] = {
        "zone": draw(st.sampled_from(zone_names)),
        "exceptions": draw(st.lists(_days(), max_size=4)),
        "duration_s": draw(st.integers(1, 24 * 3600)),
        "misfire_grace_s": draw(st.integers(0, 7 * 24 * 3600)),
        "coalesce": draw(st.booleans()),
    }
    valid_from = draw(st.none() | instant)
    kwargs["valid_from"] = valid_from
    if draw(st.booleans()):
        if valid_from is None:
            kwargs["valid_until"] = draw(instant)
        else:
            length = draw(st.integers(1, 10 * 366 * 24 * 3600))
            # In UTC: wall-clock arithmetic across a DST fall-back could land earlier.
            kwargs["valid_until"] = valid_from.astimezone(UTC) + timedelta(seconds=length)
    if k is ScheduleKind.ONCE:
        return ScheduleSpec.once(draw(instant), **kwargs)
    if k is ScheduleKind.LIST:
        return ScheduleSpec.at_instants(draw(st.lists(instant, min_size=1, max_size=5)), **kwargs)
    zone = kwargs.pop("zone")
    return ScheduleSpec.recurring(draw(cron_expressions()), zone, **kwargs)


def schedule_specs(
    kind: ScheduleKind | None = None, zone_names: Sequence[str] = ZONES
) -> st.SearchStrategy[ScheduleSpec]:
    """A schedule: one-shot, cron (listed or built from fields) or an explicit list of instants.

    Instants are aware datetimes in ``zone_names`` (or +07:00); the schedule's zone is one of
    ``zone_names``; the validity window is open, half-open or closed; up to four exception dates.
    """
    return _schedule_strategy(None if kind is None else ScheduleKind(kind), tuple(zone_names))


@functools.cache
def _schedule_strategy(
    kind: ScheduleKind | None, zone_names: tuple[str, ...]
) -> st.SearchStrategy[ScheduleSpec]:
    return _schedule_specs(kind, zone_names, aware_datetimes(zone_names=zone_names))


def preemptions() -> st.SearchStrategy[Preemption]:
    """Any explicit preemption rule."""
    return st.builds(Preemption, cut_in=cut_ins(), interrupted=interruptions())


def role_grants(
    area_ids: Sequence[UUID] | None = None, *, allow_global: bool = True
) -> st.SearchStrategy[RoleGrant]:
    """A role over one of ``area_ids`` (any UUID if None), or over every area (``None``)."""
    ids: st.SearchStrategy[UUID] = st.uuids() if area_ids is None else _source(area_ids, "area id")
    scope: st.SearchStrategy[UUID | None] = st.none() | ids if allow_global else ids
    return st.builds(RoleGrant, role=roles(), area_id=scope)


_REASONS = (
    "timeout",
    "HTTP 503",
    "mất kết nối",
    "thiết bị đang bảo trì",
    "SIP 486 Busy Here",
    "SMSC rejected: 0x0B",
)


@functools.cache
def _reasons() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(_REASONS), vietnamese_text(1, 8, 200))


@st.composite
def _outcome(draw: st.DrawFn, device_id: UUID, at: st.SearchStrategy[datetime]) -> DeliveryOutcome:
    status = draw(outcome_statuses())
    needs_reason = status is not OutcomeStatus.DELIVERED
    reason = draw(_reasons()) if needs_reason or draw(st.booleans()) else ""
    return DeliveryOutcome(device_id, status, draw(at), reason)


def delivery_outcomes(
    device_ids: Sequence[UUID] | st.SearchStrategy[UUID],
    at: st.SearchStrategy[datetime] | None = None,
) -> st.SearchStrategy[DeliveryOutcome]:
    """One outcome for a device in ``device_ids``; failed and retryable ones carry a reason."""
    ids = _source(device_ids, "device id")
    when = aware_datetimes() if at is None else at
    return ids.flatmap(lambda d: _outcome(d, when))


@st.composite
def _batches(
    draw: st.DrawFn, device_ids: tuple[UUID, ...], max_size: int, when: st.SearchStrategy[datetime]
) -> list[DeliveryOutcome]:
    chosen = draw(st.lists(st.sampled_from(device_ids), min_size=1, max_size=max_size, unique=True))
    return [draw(_outcome(d, when)) for d in chosen]


def outcome_batches(
    device_ids: Sequence[UUID],
    max_size: int = 8,
    at: st.SearchStrategy[datetime] | None = None,
) -> st.SearchStrategy[list[DeliveryOutcome]]:
    """A non-empty batch of outcomes for distinct devices of ``device_ids`` (one dispatch event)."""
    if not device_ids:
        raise ValueError("give at least one device id")
    return _batches(tuple(device_ids), max_size, aware_datetimes() if at is None else at)


def delivery_receipts(
    device_ids: Sequence[UUID],
    max_size: int = 8,
    at: st.SearchStrategy[datetime] | None = None,
) -> st.SearchStrategy[list[DeliveryReceipt]]:
    """A non-empty list of delivery receipts (e.g. SMS delivery reports) about ``device_ids``,
    repeats and out-of-order ranks included, as gateways send them."""
    if not device_ids:
        raise ValueError("give at least one device id")
    one = st.builds(
        DeliveryReceipt,
        st.sampled_from(tuple(device_ids)),
        st.sampled_from(tuple(RECEIPT_STATUSES)),
        aware_datetimes() if at is None else at,
        st.text(alphabet="0123456789abcdef", max_size=16),
        st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "Zs"]), max_size=40),
    )
    return st.lists(one, min_size=1, max_size=max_size)


# Service types the built-in transports declare, and one a third-party plugin might.
_SERVICE_TYPES = (
    ("_tcs-board._tcp.local.", "board", DeviceKind.BOARD, Channel.BOARD),
    ("_tcs-speaker._udp.local.", "sip", DeviceKind.IP_SPEAKER, Channel.AUDIO),
    ("_vendor-loa._tcp.local.", "vendor", DeviceKind.SPEAKER_CLUSTER, Channel.AUDIO),
)


@st.composite
def discovered_services(draw: st.DrawFn) -> DiscoveredService:
    """A valid advertisement as a zeroconf browser resolves it (Vietnamese instance names)."""
    service_type, transport, kind, channel = draw(st.sampled_from(_SERVICE_TYPES))
    name = draw(titles())
    host = f"127.0.0.{draw(st.integers(1, 254))}"
    port = draw(st.integers(1024, 65535))
    props = draw(
        st.dictionaries(
            st.sampled_from(("vendor", "firmware", "zone", "room")),
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=12),
            max_size=3,
        )
    )
    return DiscoveredService(
        service_name=f"{name}.{service_type}",
        service_type=service_type,
        transport=transport,
        kind=kind,
        channels=(channel,),
        address=f"http://{host}:{port}/" if transport == "board" else f"sip:loa@{host}:{port}",
        name=name,
        host=host,
        port=port,
        model=draw(st.sampled_from(("", "TCS-SIM", "LOA-IP-30W"))),
        properties=tuple(sorted(props.items())),
    )


# --------------------------------------------------------------------------------------------
# Device settings
# --------------------------------------------------------------------------------------------

SettingValue: TypeAlias = str | int | bool

_PLAIN_SETTINGS = ("volume", "codec", "port", "retries", "vendor", "model", "sample_rate", "zone")
_SECRET_SETTINGS = ("password", "sip_password", "api_token", "secret", "auth_key", "pin")


def _is_secret_name(name: str) -> bool:
    try:
        validate_settings({name: "not-a-reference"})
    except ValidationError:
        return True
    return False


_SETTING_NAME: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(_PLAIN_SETTINGS + _SECRET_SETTINGS),
    _word(_LOWER, _LOWER + string.digits + "_", 15),
)
_SETTING_VALUE: st.SearchStrategy[SettingValue] = st.one_of(
    st.text(string.ascii_letters + string.digits + " .:/-_", max_size=20),
    st.integers(min_value=-(2**31), max_value=2**31),
    st.booleans(),
)
_ENV_NAME = _word(string.ascii_uppercase + "_", string.ascii_uppercase + string.digits + "_", 20)


@st.composite
def _device_settings(
    draw: st.DrawFn, raw: st.SearchStrategy[dict[str, SettingValue]]
) -> dict[str, SettingValue]:
    return {
        k: (f"env:{draw(_ENV_NAME)}" if _is_secret_name(k) else v) for k, v in draw(raw).items()
    }


def device_settings(max_size: int = 6) -> st.SearchStrategy[dict[str, SettingValue]]:
    """Device settings; every secret-looking name holds an ``env:NAME`` reference, never a value.

    Whether a name looks secret is decided by ``tcs_core.domain.device.validate_settings`` itself,
    so the strategy follows the rule as the engine applies it.
    """
    return _settings_strategy(max_size)


@functools.cache
def _settings_strategy(max_size: int) -> st.SearchStrategy[dict[str, SettingValue]]:
    return _device_settings(st.dictionaries(_SETTING_NAME, _SETTING_VALUE, max_size=max_size))


# --------------------------------------------------------------------------------------------
# Broadcast drafts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BroadcastDraft:
    """Consistent arguments for ``SourceSystem.draft_broadcast`` / ``revise_broadcast``."""

    title: str
    category: Category
    priority: Priority
    content: dict[Channel, ContentVariant]
    targets: Targets
    schedule: ScheduleSpec
    preemption: Preemption | None

    @property
    def special_permissions(self) -> frozenset[Permission]:
        """Permissions whoever submits or approves it needs (emergency, SMS)."""
        out: set[Permission] = set()
        if self.priority is Priority.EMERGENCY:
            out.add(Permission.EMERGENCY)
        if Channel.SMS in self.targets.channels:
            out.add(Permission.SMS_SENDER)
        return frozenset(out)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``draft_broadcast`` (add ``actor``; title first positionally)."""
        return {
            "title": self.title,
            "category": self.category,
            "priority": self.priority,
            "content": dict(self.content),
            "targets": self.targets,
            "schedule": self.schedule,
            "preemption": self.preemption,
        }


@st.composite
def _drafts(
    draw: st.DrawFn, where: st.SearchStrategy[Targets], prios: st.SearchStrategy[Priority]
) -> BroadcastDraft:
    t = draw(where)
    return BroadcastDraft(
        title=draw(titles()),
        category=draw(categories()),
        priority=draw(prios),
        content=draw(content_for(t.channels)),
        targets=t,
        schedule=draw(schedule_specs()),
        preemption=draw(st.none() | preemptions()),
    )


def broadcast_drafts(
    area_codes: Sequence[str] | st.SearchStrategy[str],
    *,
    channels: Sequence[Channel] | None = None,
    priority: Priority | None = None,
) -> st.SearchStrategy[BroadcastDraft]:
    """A complete, consistent draft over codes from ``area_codes`` (content for every channel)."""
    prios = priorities() if priority is None else st.just(Priority(priority))
    return _drafts(targets(area_codes, channels=channels), prios)


# --------------------------------------------------------------------------------------------
# Area histories
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateArea:
    """``create_area(code, name, kind, parent=parent, effective=effective)``."""

    code: str
    name: str
    kind: AreaKind
    parent: str | None
    effective: date

    def apply(self, app: SourceSystem, actor: Actor) -> None:
        """Run the command on ``app``."""
        app.create_area(
            self.code,
            self.name,
            self.kind,
            parent=self.parent,
            effective=self.effective,
            actor=actor,
        )


@dataclass(frozen=True)
class RenameArea:
    """``rename_area(code, name, effective=effective)``."""

    code: str
    name: str
    effective: date

    def apply(self, app: SourceSystem, actor: Actor) -> None:
        """Run the command on ``app``."""
        app.rename_area(self.code, self.name, effective=self.effective, actor=actor)


@dataclass(frozen=True)
class MoveArea:
    """``move_area(code, parent, effective=effective)`` (``parent`` None: becomes a root)."""

    code: str
    parent: str | None
    effective: date

    def apply(self, app: SourceSystem, actor: Actor) -> None:
        """Run the command on ``app``."""
        app.move_area(self.code, self.parent, effective=self.effective, actor=actor)


@dataclass(frozen=True)
class MergeAreas:
    """``merge_areas(codes, into=into, effective=effective)``."""

    codes: tuple[str, ...]
    into: str
    effective: date

    def apply(self, app: SourceSystem, actor: Actor) -> None:
        """Run the command on ``app``."""
        app.merge_areas(self.codes, into=self.into, effective=self.effective, actor=actor)


@dataclass(frozen=True)
class SplitArea:
    """``split_area(code, into=into, effective=effective)``."""

    code: str
    into: tuple[str, ...]
    effective: date

    def apply(self, app: SourceSystem, actor: Actor) -> None:
        """Run the command on ``app``."""
        app.split_area(self.code, into=self.into, effective=self.effective, actor=actor)


@dataclass(frozen=True)
class DissolveArea:
    """``dissolve_area(code, effective=effective)``."""

    code: str
    effective: date

    def apply(self, app: SourceSystem, actor: Actor) -> None:
        """Run the command on ``app``."""
        app.dissolve_area(self.code, effective=self.effective, actor=actor)


AreaOp: TypeAlias = CreateArea | RenameArea | MoveArea | MergeAreas | SplitArea | DissolveArea


def apply_history(app: SourceSystem, ops: Iterable[AreaOp], actor: Actor) -> None:
    """Apply ``ops`` in order through the public ``SourceSystem`` area commands."""
    for op in ops:
        op.apply(app, actor)


@dataclass
class AreaNode:
    """One area in the reference model (ids are the engine's: ``area_id(code, created)``)."""

    area_id: UUID
    code: str
    name: str
    kind: AreaKind
    parent_id: UUID | None
    created: date
    ended: date | None = None
    successor_ids: tuple[UUID, ...] = ()


@dataclass
class AreaModel:
    """Reference model of the area structure, the oracle for ``AreaIndex``.

    ``AreaModel.replay(ops, until=day)`` is the structure on ``day``: every operation effective on
    or before it, in order. ``apply`` raises ``ValueError`` on an operation the engine would
    refuse (unknown code, code held, cycle, an area merged into itself).
    """

    nodes: dict[UUID, AreaNode] = field(default_factory=dict)
    holders: dict[str, UUID] = field(default_factory=dict)

    @classmethod
    def replay(cls, ops: Iterable[AreaOp], until: date | None = None) -> AreaModel:
        """The model after the operations effective on or before ``until`` (None: all)."""
        model = cls()
        for op in ops:
            if until is None or op.effective <= until:
                model.apply(op)
        return model

    # -- queries -----------------------------------------------------------------------------

    def live(self) -> dict[UUID, AreaNode]:
        """Areas that exist (created and not ended)."""
        return {self.holders[c]: self.nodes[self.holders[c]] for c in sorted(self.holders)}

    def holder(self, code: str) -> AreaNode:
        """The live area holding ``code``."""
        try:
            return self.nodes[self.holders[code]]
        except KeyError:
            raise ValueError(f"no live area holds code {code!r}") from None

    def children(self, aid: UUID | None) -> list[AreaNode]:
        """Live direct children of ``aid`` (None: the roots), by code."""
        return [n for n in self.live().values() if n.parent_id == aid]

    def subtree(self, aid: UUID) -> set[UUID]:
        """``aid`` and its live descendants."""
        out, stack = set(), [aid]
        while stack:
            x = stack.pop()
            if x in out:
                continue
            out.add(x)
            stack.extend(n.area_id for n in self.children(x))
        return out

    def ancestors(self, aid: UUID) -> list[UUID]:
        """Parent, grandparent, ... (nearest first)."""
        out: list[UUID] = []
        node = self.nodes.get(aid)
        while node is not None and node.parent_id is not None and node.parent_id not in out:
            out.append(node.parent_id)
            node = self.nodes.get(node.parent_id)
        return out

    def successors(self, aid: UUID) -> set[UUID]:
        """Live areas holding ``aid``'s territory now (itself if live; ended ones followed)."""
        out: set[UUID] = set()
        stack, seen = [aid], set()
        while stack:
            x = stack.pop()
            if x in seen or x not in self.nodes:
                continue
            seen.add(x)
            node = self.nodes[x]
            if node.ended is None:
                out.add(x)
            else:
                stack.extend(node.successor_ids)
        return out

    def orphans(self) -> list[AreaNode]:
        """Live areas whose parent has ended (the generator never produces any)."""
        return [
            n
            for n in self.live().values()
            if n.parent_id is not None and self.nodes[n.parent_id].ended is not None
        ]

    # -- operations --------------------------------------------------------------------------

    def apply(self, op: AreaOp) -> None:
        """Apply one operation, checking it as the engine would."""
        if isinstance(op, CreateArea):
            if op.code in self.holders:
                raise ValueError(f"code {op.code} is held on {op.effective}")
            aid = area_id(op.code, op.effective)
            if aid in self.nodes:
                raise ValueError(f"area {op.code} effective {op.effective} existed already")
            parent = None if op.parent is None else self.holder(op.parent).area_id
            self.nodes[aid] = AreaNode(aid, op.code, op.name, op.kind, parent, op.effective)
            self.holders[op.code] = aid
        elif isinstance(op, RenameArea):
            self.holder(op.code).name = op.name
        elif isinstance(op, MoveArea):
            node = self.holder(op.code)
            parent = None if op.parent is None else self.holder(op.parent).area_id
            if parent is not None and parent in self.subtree(node.area_id):
                raise ValueError(f"moving {op.code} under {op.parent} makes a cycle")
            node.parent_id = parent
        elif isinstance(op, MergeAreas):
            target = self.holder(op.into).area_id
            ended = [self.holder(c) for c in op.codes]
            if not ended or any(n.area_id == target for n in ended):
                raise ValueError(f"cannot merge {op.codes} into {op.into}")
            for n in ended:
                self._end(n, op.effective, (target,))
        elif isinstance(op, SplitArea):
            node = self.holder(op.code)
            ids = tuple(self.holder(c).area_id for c in op.into)
            if not ids or node.area_id in ids:
                raise ValueError(f"cannot split {op.code} into {op.into}")
            self._end(node, op.effective, ids)
        else:
            self._end(self.holder(op.code), op.effective, ())

    def _end(self, node: AreaNode, effective: date, successors: tuple[UUID, ...]) -> None:
        node.ended = effective
        node.successor_ids = successors
        del self.holders[node.code]


def _node_id(node: AreaNode) -> UUID:
    return node.area_id


def _kind_below(draw: st.DrawFn, parent: AreaNode | None) -> AreaKind:
    return draw(st.sampled_from(_KINDS_BELOW[None if parent is None else parent.kind]))


def _fresh_code(draw: st.DrawFn, model: AreaModel, kind: AreaKind, day: date) -> str:
    def free(code: str) -> bool:
        return code not in model.holders and area_id(code, day) not in model.nodes

    reusable = sorted({n.code for n in model.nodes.values() if free(n.code)})
    reuse = draw(st.booleans())
    if reusable and reuse:
        return draw(st.sampled_from(reusable))
    code = draw(area_codes(kind))
    n = 0
    while not free(code):  # rare: step to the next free code, deterministically
        n += 1
        code = f"{code.split('~')[0]}~{n}"
    return code


@st.composite
def _area_histories(
    draw: st.DrawFn, max_initial: int, max_changes: int, start: tuple[date, date]
) -> list[AreaOp]:
    model = AreaModel()
    ops: list[AreaOp] = []

    def emit(op: AreaOp) -> None:
        model.apply(op)  # a ValueError here is a bug in this generator
        ops.append(op)

    def code_of(aid: UUID | None) -> str | None:
        return None if aid is None else model.nodes[aid].code

    def create(day: date, root: bool) -> None:
        live = list(model.live().values())
        parent = None if root or not live else draw(st.sampled_from(live))
        kind = _kind_below(draw, parent)
        code = _fresh_code(draw, model, kind, day)
        parent_code = None if parent is None else parent.code
        emit(CreateArea(code, draw(area_names(kind)), kind, parent_code, day))

    def rehome_children(
        ended: Sequence[AreaNode], new_parents: Sequence[UUID | None], day: date
    ) -> None:
        gone = {n.area_id for n in ended}
        for n in ended:
            for child in model.children(n.area_id):
                if child.area_id not in gone:
                    emit(MoveArea(child.code, code_of(draw(st.sampled_from(new_parents))), day))

    day = draw(st.dates(min_value=start[0], max_value=start[1]))
    for i in range(draw(st.integers(1, max_initial))):
        create(day, root=i == 0 or draw(st.integers(0, 7)) == 0)

    for _ in range(draw(st.integers(0, max_changes))):
        day += timedelta(days=draw(st.one_of(st.just(0), st.integers(1, 800))))
        live = list(model.live().values())
        action = draw(st.sampled_from(("create", "rename", "move", "merge", "split", "dissolve")))
        if action == "create" or not live:
            create(day, root=not live or draw(st.integers(0, 9)) == 0)
        elif action == "rename":
            node = draw(st.sampled_from(live))
            emit(RenameArea(node.code, draw(area_names(node.kind)), day))
        elif action == "move":
            node = draw(st.sampled_from(live))
            inside = model.subtree(node.area_id)
            parents = [None, *(n.area_id for n in live if n.area_id not in inside)]
            emit(MoveArea(node.code, code_of(draw(st.sampled_from(parents))), day))
        elif action == "merge":
            merged = draw(
                st.lists(st.sampled_from(live), min_size=1, max_size=2, unique_by=_node_id)
            )
            inside = set().union(*(model.subtree(n.area_id) for n in merged))
            candidates = [n for n in live if n.area_id not in inside]
            if not candidates:
                continue
            into = draw(st.sampled_from(candidates))
            rehome_children(merged, [into.area_id], day)
            emit(MergeAreas(tuple(n.code for n in merged), into.code, day))
        elif action == "split":
            node = draw(st.sampled_from(live))
            inside = model.subtree(node.area_id)
            candidates = [n for n in live if n.area_id not in inside]
            if len(candidates) < 2:
                continue
            shares = draw(
                st.lists(st.sampled_from(candidates), min_size=2, max_size=3, unique_by=_node_id)
            )
            rehome_children([node], [n.area_id for n in shares], day)
            emit(SplitArea(node.code, tuple(n.code for n in shares), day))
        else:
            node = draw(st.sampled_from(live))
            rehome_children([node], [node.parent_id], day)
            emit(DissolveArea(node.code, day))
    return ops


def area_histories(
    max_initial: int = 8,
    max_changes: int = 10,
    start: tuple[date, date] = (date(2000, 1, 1), date(2030, 12, 31)),
) -> st.SearchStrategy[list[AreaOp]]:
    """A random area tree, then random reorganisations, as a list of operations.

    The first operations create 1..``max_initial`` areas on one start date (one or more roots);
    then up to ``max_changes`` reorganisations follow, each on a date on or after the previous one
    (often the same day): create, rename, move, merge, split, dissolve. Every operation is valid
    when applied in order: codes are free when created (ended codes are sometimes reused), parents
    and successors exist on the effective date, moves never make a cycle, and an area's live
    children are moved away (to the merge target, a split successor, or the dissolved area's
    parent) on the same date before it ends, so no area is ever left under an ended parent.
    Apply with ``apply_history``; check with ``AreaModel.replay``.
    """
    if max_initial < 1 or max_changes < 0:
        raise ValueError("need max_initial >= 1 and max_changes >= 0")
    return _area_histories(max_initial, max_changes, start)
