"""Transcodings that let every tcs-core value type pass through eventsourcing's JSON transcoder.

Names are stable topics (``tcs.<type>``): stored data outlives class names, so renaming a class
must never change how its old events decode.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import attrs
from eventsourcing.persistence import JSONTranscoder, Transcoding

from tcs_core.domain import values as v

__all__ = ["VALUE_TYPES", "AttrsTranscoding", "DateAsISO", "FrozensetAsList", "register_all"]


class DateAsISO(Transcoding):
    """``datetime.date`` as an ISO string (eventsourcing ships only the datetime one)."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class FrozensetAsList(Transcoding):
    """A frozenset as a sorted list (snapshots of principals and dispatches hold frozensets)."""

    type = frozenset
    name = "frozenset"

    def encode(self, obj: frozenset[Any]) -> list[Any]:
        return sorted(obj, key=str)

    def decode(self, data: list[Any]) -> frozenset[Any]:
        return frozenset(data)


class AttrsTranscoding(Transcoding):
    """An attrs value type as a dict of its fields; the field converters normalise on decode."""

    def __init__(self, cls: type[Any], name: str) -> None:
        self.type = cls
        self.name = name
        self._fields = tuple(f.name for f in attrs.fields(cls))

    def encode(self, obj: Any) -> dict[str, Any]:
        return {f: getattr(obj, f) for f in self._fields}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


VALUE_TYPES: dict[str, type[Any]] = {
    "tcs.audio_content": v.AudioContent,
    "tcs.speech_content": v.SpeechContent,
    "tcs.board_content": v.BoardContent,
    "tcs.sms_content": v.SmsContent,
    "tcs.targets": v.Targets,
    "tcs.preemption": v.Preemption,
    "tcs.schedule_spec": v.ScheduleSpec,
    "tcs.role_grant": v.RoleGrant,
    "tcs.delivery_outcome": v.DeliveryOutcome,
}


def register_all(transcoder: JSONTranscoder) -> None:
    """Register the date transcoding and one transcoding per value type."""
    transcoder.register(DateAsISO())
    transcoder.register(FrozensetAsList())
    for name, cls in VALUE_TYPES.items():
        transcoder.register(AttrsTranscoding(cls, name))
