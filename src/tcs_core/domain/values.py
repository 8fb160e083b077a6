"""Value types of the domain: enums and immutable attrs classes.

Every value here survives a round trip through the event store unchanged. JSON turns tuples into
lists, enum members into plain strings and dict keys into strings, so each field carries a converter
that normalises what comes back (see ``tcs_core.transcodings``).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any, ClassVar, TypeAlias, TypeVar
from uuid import UUID

import attrs
import pytz
from croniter import croniter

from tcs_core.errors import ValidationError

__all__ = [
    "DEFAULT_ZONE",
    "AreaKind",
    "AudioContent",
    "BoardContent",
    "BroadcastStatus",
    "Category",
    "Channel",
    "Condition",
    "ContentVariant",
    "CutIn",
    "DeliveryOutcome",
    "DeviceKind",
    "DeviceStatus",
    "FacilityKind",
    "FeedbackChannel",
    "FeedbackStatus",
    "Interrupted",
    "OutcomeStatus",
    "Permission",
    "Preemption",
    "Priority",
    "Role",
    "RoleGrant",
    "ScheduleKind",
    "ScheduleSpec",
    "SmsContent",
    "SpeechContent",
    "StationKind",
    "Targets",
    "as_utc",
    "cron_parts",
]

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"

E = TypeVar("E", bound=enum.Enum)


# --------------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------------


class AreaKind(enum.StrEnum):
    """Level of an administrative area (data, not code: depth is arbitrary)."""

    COUNTRY = "country"
    PROVINCE = "province"
    DISTRICT = "district"
    WARD = "ward"  # phường
    TOWNSHIP = "township"  # thị trấn
    COMMUNE = "commune"  # xã
    SPECIAL_ZONE = "special_zone"  # đặc khu
    VILLAGE = "village"  # thôn, bản, tổ dân phố

    @property
    def is_commune_level(self) -> bool:
        """True for the units the plans count as communes (xã, phường, thị trấn, đặc khu)."""
        return self in _COMMUNE_LEVEL

    @property
    def is_urban(self) -> bool:
        """True for wards and towns (phường, thị trấn), the plans' "urban" denominator."""
        return self in (AreaKind.WARD, AreaKind.TOWNSHIP)


_COMMUNE_LEVEL = frozenset(
    {AreaKind.WARD, AreaKind.TOWNSHIP, AreaKind.COMMUNE, AreaKind.SPECIAL_ZONE}
)


class DeviceKind(enum.StrEnum):
    """What a device is; the scheduler drives devices, the KPIs count stations and facilities."""

    IP_SPEAKER = "ip_speaker"
    SPEAKER_CLUSTER = "speaker_cluster"
    BOARD = "board"
    DISTRICT_BOARD = "district_board"
    SMS_GATEWAY = "sms_gateway"
    SMS_SUBSCRIBER = "sms_subscriber"  # a phone number (E.164 address) that receives SMS
    OTHER = "other"


class Channel(enum.StrEnum):
    """A delivery channel; each broadcast carries one content variant per channel."""

    AUDIO = "audio"
    BOARD = "board"
    SMS = "sms"


class DeviceStatus(enum.StrEnum):
    """Operational state of a device; only transitions are events, never heartbeats."""

    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"
    FAULT = "fault"
    MAINTENANCE = "maintenance"


class StationKind(enum.StrEnum):
    """Technology of a commune radio station (đài truyền thanh)."""

    WIRED = "wired"
    FM = "fm"
    IP = "ip"


class Condition(enum.StrEnum):
    """Condition of a station, as Bình Định's conversion plan ranks them."""

    GOOD = "good"
    DEGRADED = "degraded"
    BROKEN = "broken"


class FacilityKind(enum.StrEnum):
    """Facilities the KPIs count (websites, public e-boards, large district boards)."""

    WEBSITE = "website"
    EBOARD = "eboard"
    DISTRICT_BOARD = "district_board"
    SOURCE_SYSTEM = "source_system"


class Priority(enum.StrEnum):
    """Bulletin priority per Thông tư 39/2020/TT-BTTTT."""

    NORMAL = "normal"  # thông thường
    PRIORITY = "priority"  # ưu tiên
    EMERGENCY = "emergency"  # khẩn cấp

    @property
    def rank(self) -> int:
        """Higher rank goes first: normal 0, priority 1, emergency 2."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.NORMAL: 0, Priority.PRIORITY: 1, Priority.EMERGENCY: 2}


class Category(enum.StrEnum):
    """Kinds of essential information (thông tin thiết yếu, Nghị định 49/2024/NĐ-CP)."""

    POLICY_LAW = "policy_law"  # chủ trương, chính sách, pháp luật
    LOCAL_GOVERNMENT = "local_government"  # chỉ đạo, điều hành của chính quyền
    DISASTER = "disaster"  # thiên tai, hỏa hoạn, sự cố
    HEALTH = "health"  # dịch bệnh, y tế
    SECURITY = "security"  # an ninh, trật tự
    KNOWLEDGE = "knowledge"  # kiến thức khoa học, kinh tế, văn hóa, xã hội
    GOOD_EXAMPLES = "good_examples"  # gương người tốt, việc tốt
    FEEDBACK_ANSWER = "feedback_answer"  # trả lời ý kiến người dân
    OTHER = "other"


class BroadcastStatus(enum.StrEnum):
    """Lifecycle of a broadcast."""

    DRAFTED = "drafted"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class OutcomeStatus(enum.StrEnum):
    """Result of one delivery to one device (outcomes are values, never exceptions)."""

    DELIVERED = "delivered"
    FAILED = "failed"
    RETRYABLE = "retryable"

    @property
    def is_final(self) -> bool:
        """Delivered and failed are final; a retryable outcome may still change."""
        return self is not OutcomeStatus.RETRYABLE


class FeedbackStatus(enum.StrEnum):
    """Lifecycle of a citizen's feedback item."""

    RECEIVED = "received"
    ASSIGNED = "assigned"
    ANSWERED = "answered"
    CLOSED = "closed"


class FeedbackChannel(enum.StrEnum):
    """How a feedback item reached the system."""

    SMS = "sms"
    APP = "app"
    WEB = "web"
    HOTLINE = "hotline"
    IN_PERSON = "in_person"


class Role(enum.StrEnum):
    """Roles, each scoped to an area subtree. Each role includes the ones before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Viewer 0 < operator 1 < approver 2 < admin 3."""
        return _ROLE_RANK[self]


_ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.APPROVER: 2, Role.ADMIN: 3}


class Permission(enum.StrEnum):
    """Special permissions held apart from roles."""

    EMERGENCY = "emergency"  # may submit and approve emergency broadcasts
    SMS_SENDER = "sms_sender"  # may broadcast on SMS (NĐ 49/2024 art. 32-33: provincial level)


class ScheduleKind(enum.StrEnum):
    """How a schedule names its occurrences."""

    ONCE = "once"
    CRON = "cron"
    LIST = "list"


class CutIn(enum.StrEnum):
    """Whether an item interrupts what plays or waits for it to end (always explicit)."""

    NOW = "now"
    AFTER_CURRENT = "after_current"


class Interrupted(enum.StrEnum):
    """What happens to an item that was cut off by a higher-priority one."""

    RESUME = "resume"
    RESTART = "restart"
    DROP = "drop"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def as_utc(value: datetime, field: str = "instant") -> datetime:
    """Return an aware datetime in UTC; naive datetimes are rejected (their zone is a guess)."""
    if not isinstance(value, datetime):
        raise ValidationError(field, f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "datetime must carry a time zone (e.g. +07:00 or UTC)")
    return value.astimezone(UTC)


def _opt_utc(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is UTC:
        return value  # already aware and in UTC: exactly what as_utc would return
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


def _date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value)
    return value


def _enum_tuple(enum_cls: type[E]) -> Any:
    """Converter: any iterable of members or values → sorted tuple of unique members."""

    def convert(values: Iterable[Any]) -> tuple[E, ...]:
        if isinstance(values, str):
            values = (values,)
        try:
            members = {enum_cls(v) for v in values}
        except ValueError as exc:
            allowed = ", ".join(str(m.value) for m in enum_cls)
            raise ValidationError(enum_cls.__name__, f"{exc}; allowed: {allowed}") from None
        return tuple(sorted(members, key=lambda m: str(m.value)))

    return convert


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    return tuple(sorted({str(v) for v in values}))


def _require_text(field: str, value: str, max_len: int) -> None:
    if not value or not value.strip():
        raise ValidationError(field, "must not be empty")
    if len(value) > max_len:
        raise ValidationError(field, f"is {len(value)} characters long; at most {max_len}")


@functools.lru_cache(maxsize=4096)
def _cron_ok(expression: str) -> bool:
    """croniter's check, cached: every replay of a schedule re-validates it."""
    return bool(croniter.is_valid(expression))


def cron_parts(cron: str) -> list[str]:
    """The expressions of a cron schedule: one, or a union written ``"0 6 * * * | 30 11 * * *"``
    (times a day that do not form an hours × minutes grid need several expressions)."""
    return [p.strip() for p in cron.split("|") if p.strip()]


def _zone(value: str) -> str:
    try:
        pytz.timezone(value)
    except pytz.UnknownTimeZoneError:
        raise ValidationError(
            "zone", f"unknown time zone {value!r} (e.g. {DEFAULT_ZONE!r})"
        ) from None
    return value


# --------------------------------------------------------------------------------------------
# Content variants
# --------------------------------------------------------------------------------------------

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@attrs.frozen
class AudioContent:
    """A recorded audio bulletin: a file reference and its SHA-256, so devices can verify it."""

    channel: ClassVar[Channel] = Channel.AUDIO
    uri: str
    sha256: str
    duration_s: float | None = None

    def __attrs_post_init__(self) -> None:
        _require_text("audio.uri", self.uri, 2048)
        if not _SHA256.fullmatch(self.sha256):
            raise ValidationError("audio.sha256", "must be 64 lowercase hexadecimal characters")
        if self.duration_s is not None and not (0 < self.duration_s <= 24 * 3600):
            raise ValidationError("audio.duration_s", "must be between 0 and 86400 seconds")


@attrs.frozen
class SpeechContent:
    """Text to be spoken by a text-to-speech renderer on the audio channel."""

    channel: ClassVar[Channel] = Channel.AUDIO
    text: str
    voice: str = "vi"

    def __attrs_post_init__(self) -> None:
        _require_text("speech.text", self.text, 20_000)
        _require_text("speech.voice", self.voice, 64)


@attrs.frozen
class BoardContent:
    """What a public electronic board shows: text, image references and a layout hint."""

    channel: ClassVar[Channel] = Channel.BOARD
    text: str
    images: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    layout: str = "default"

    def __attrs_post_init__(self) -> None:
        _require_text("board.text", self.text, 10_000)
        if len(self.images) > 32:
            raise ValidationError("board.images", "at most 32 images per item")


@attrs.frozen
class SmsContent:
    """Text of an SMS bulletin (segmentation is the SMS transport's job)."""

    channel: ClassVar[Channel] = Channel.SMS
    text: str

    def __attrs_post_init__(self) -> None:
        # 10 UCS-2 segments of 67 characters: beyond that operators refuse concatenation.
        _require_text("sms.text", self.text, 670)


ContentVariant: TypeAlias = AudioContent | SpeechContent | BoardContent | SmsContent


def _content_map(value: Mapping[Any, ContentVariant]) -> dict[Channel, ContentVariant]:
    out: dict[Channel, ContentVariant] = {}
    for key, variant in value.items():
        channel = Channel(key)
        if variant.channel is not channel:
            raise ValidationError(
                f"content.{channel.value}",
                f"a {type(variant).__name__} is content for the {variant.channel.value} channel",
            )
        out[channel] = variant
    return out


# --------------------------------------------------------------------------------------------
# Targets, schedules, preemption
# --------------------------------------------------------------------------------------------


def _channels(values: Iterable[Any]) -> tuple[Channel, ...]:
    return _enum_tuple(Channel)(values)  # type: ignore[no-any-return]


def _device_kinds(values: Iterable[Any]) -> tuple[DeviceKind, ...]:
    return _enum_tuple(DeviceKind)(values)  # type: ignore[no-any-return]


@attrs.frozen
class Targets:
    """Whom a broadcast is for: area codes (whole subtrees), channels, optional kind/group filters."""

    areas: tuple[str, ...] = attrs.field(converter=_str_tuple)
    channels: tuple[Channel, ...] = attrs.field(converter=_channels)
    device_kinds: tuple[DeviceKind, ...] = attrs.field(default=(), converter=_device_kinds)
    groups: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    def __attrs_post_init__(self) -> None:
        if not self.areas:
            raise ValidationError("targets.areas", "name at least one area code")
        if not self.channels:
            raise ValidationError("targets.channels", "name at least one channel")


@attrs.frozen
class Preemption:
    """Explicit interruption rules: does the item cut in now, and what becomes of what it cut off."""

    cut_in: CutIn = attrs.field(converter=CutIn)
    interrupted: Interrupted = attrs.field(default=Interrupted.RESUME, converter=Interrupted)

    @classmethod
    def for_priority(cls, priority: Priority) -> Preemption:
        """TT 39 defaults: emergencies cut in now; the others wait for the current item."""
        if Priority(priority) is Priority.EMERGENCY:
            return cls(CutIn.NOW, Interrupted.RESUME)
        return cls(CutIn.AFTER_CURRENT, Interrupted.RESUME)


def _instants(values: Iterable[datetime | str]) -> tuple[datetime, ...]:
    return tuple(sorted({_utc(v) for v in values}))


def _dates(values: Iterable[date | str]) -> tuple[date, ...]:
    return tuple(sorted({_date(v) for v in values}))


@attrs.frozen
class ScheduleSpec:
    """When a broadcast plays, as data: one-shot, cron or explicit list, within a validity window.

    The recurrence math lives in ``tcs_core.schedule``; this type only validates and stores.
    """

    kind: ScheduleKind = attrs.field(converter=ScheduleKind)
    instants: tuple[datetime, ...] = attrs.field(default=(), converter=_instants)
    cron: str | None = None
    zone: str = attrs.field(default=DEFAULT_ZONE, converter=_zone)
    valid_from: datetime | None = attrs.field(default=None, converter=_opt_utc)
    valid_until: datetime | None = attrs.field(default=None, converter=_opt_utc)
    exceptions: tuple[date, ...] = attrs.field(default=(), converter=_dates)
    duration_s: int = 300
    misfire_grace_s: int = 300
    coalesce: bool = True

    def __attrs_post_init__(self) -> None:
        if self.kind is ScheduleKind.CRON:
            parts = cron_parts(self.cron or "")
            if not parts or not all(_cron_ok(p) for p in parts):
                raise ValidationError(
                    "schedule.cron", f"not a valid cron expression: {self.cron!r}"
                )
            if self.instants:
                raise ValidationError("schedule.instants", "a cron schedule takes no instants")
        else:
            if self.cron is not None:
                raise ValidationError(
                    "schedule.cron", f"a {self.kind.value} schedule takes no cron"
                )
            if not self.instants:
                raise ValidationError("schedule.instants", "name at least one instant")
            if self.kind is ScheduleKind.ONCE and len(self.instants) != 1:
                raise ValidationError("schedule.instants", "a one-shot schedule has one instant")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValidationError("schedule.valid_until", "must be after valid_from")
        if not (1 <= self.duration_s <= 24 * 3600):
            raise ValidationError("schedule.duration_s", "must be between 1 and 86400 seconds")
        if not (0 <= self.misfire_grace_s <= 7 * 24 * 3600):
            raise ValidationError("schedule.misfire_grace_s", "must be between 0 and 604800")

    @classmethod
    def once(cls, at: datetime, **kwargs: Any) -> ScheduleSpec:
        """A single occurrence at an aware instant."""
        return cls(ScheduleKind.ONCE, instants=(at,), **kwargs)

    @classmethod
    def recurring(cls, cron: str, zone: str = DEFAULT_ZONE, **kwargs: Any) -> ScheduleSpec:
        """Occurrences from a cron expression, evaluated in the named zone."""
        return cls(ScheduleKind.CRON, cron=cron, zone=zone, **kwargs)

    @classmethod
    def at_instants(cls, instants: Iterable[datetime], **kwargs: Any) -> ScheduleSpec:
        """An explicit list of aware instants."""
        return cls(ScheduleKind.LIST, instants=tuple(instants), **kwargs)


# --------------------------------------------------------------------------------------------
# Principals and outcomes
# --------------------------------------------------------------------------------------------


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _opt_uuid(value: UUID | str | None) -> UUID | None:
    return None if value is None else _uuid(value)


@attrs.frozen
class RoleGrant:
    """A role held over an area subtree; ``area_id`` None means every area."""

    role: Role = attrs.field(converter=Role)
    area_id: UUID | None = attrs.field(default=None, converter=_opt_uuid)


_OUTCOME_STATUSES: dict[str, OutcomeStatus] = {s.value: s for s in OutcomeStatus}


def _outcome_status(value: OutcomeStatus | str) -> OutcomeStatus:
    """``OutcomeStatus(value)`` without the enum machinery on the hot path."""
    try:
        return _OUTCOME_STATUSES[value]
    except (KeyError, TypeError):
        return OutcomeStatus(value)  # raises the usual ValueError


_DELIVERED = OutcomeStatus.DELIVERED


@attrs.frozen
class DeliveryOutcome:
    """The result of delivering one dispatch to one device."""

    device_id: UUID = attrs.field(converter=_uuid)
    status: OutcomeStatus = attrs.field(converter=_outcome_status)
    at: datetime = attrs.field(converter=_utc)
    reason: str = ""

    def __attrs_post_init__(self) -> None:
        if self.status is not _DELIVERED and not self.reason:
            raise ValidationError("outcome.reason", "a failed or retryable outcome needs a reason")
