"""JSON Schemas (2020-12) of the API: the handlers validate with them, /openapi.json shows them.

One dict per shape, defined once: the OpenAPI document is generated from the same objects the
request validator uses, so the two cannot drift. Response schemas are what the tests (and
schemathesis) check every answer against.
"""

# ruff: noqa: RUF012  (S is a read-only namespace of schema dicts, never mutated)
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from uuid import UUID

from jsonschema import Draft202012Validator, FormatChecker

__all__ = ["FORMATS", "S", "validator"]

Schema = dict[str, Any]

# Dates between 1970 and 2100: a calendar far outside that is a typo, and keeps date arithmetic
# (due dates, schedule windows) well inside what Python's datetime can represent.
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|z|[+-]\d\d:\d\d)$")
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
_YEARS = range(1970, 2101)

FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    return datetime.fromisoformat(value.replace("z", "Z")).year in _YEARS


@FORMATS.checks("date", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return bool(_DATE.match(value)) and date.fromisoformat(value).year in _YEARS


@FORMATS.checks("uuid", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return len(value) == 36 and str(UUID(value)) == value.lower()


def validator(schema: Schema) -> Draft202012Validator:
    """A validator that also checks the formats above."""
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FORMATS)


def text(max_len: int, min_len: int = 1) -> Schema:
    """A string of ``min_len``..``max_len`` characters."""
    return {"type": "string", "minLength": min_len, "maxLength": max_len}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null."""
    t = schema.get("type")
    if isinstance(t, str) and t != "object":
        return {**schema, "type": [t, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def obj(props: dict[str, Schema], required: tuple[str, ...] = (), strict: bool = True) -> Schema:
    """An object; request bodies are strict (unknown fields are an error)."""
    out: Schema = {"type": "object", "properties": props, "required": list(required)}
    if strict:
        out["additionalProperties"] = False
    return out


def enum(*values: str) -> Schema:
    """One of ``values``."""
    return {"type": "string", "enum": list(values)}


def array(items: Schema, max_items: int = 1000, unique: bool = False) -> Schema:
    """A list of ``items``."""
    out: Schema = {"type": "array", "items": items, "maxItems": max_items}
    if unique:
        out["uniqueItems"] = True
    return out


class S:
    """The schemas, by name."""

    UUID: Schema = {"type": "string", "format": "uuid"}
    CODE: Schema = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,32}$"}
    USERNAME: Schema = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._@-]{1,63}$"}
    DATE: Schema = {"type": "string", "format": "date", "description": "years 1970-2100"}
    DATETIME: Schema = {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 with an offset; years 1970-2100",
    }
    ZONE: Schema = {
        "type": "string",
        "pattern": "^[A-Za-z_]{1,32}(/[A-Za-z0-9_+-]{1,32}){0,2}$",
    }
    ROLE = enum("viewer", "operator", "approver", "admin")
    PERMISSION = enum("emergency", "sms_sender")
    CHANNEL = enum("audio", "board", "sms")
    DEVICE_KIND = enum(
        "ip_speaker", "speaker_cluster", "board", "district_board", "sms_gateway", "other"
    )
    DEVICE_STATUS = enum("unknown", "online", "offline", "fault", "maintenance")
    AREA_KIND = enum(
        "country", "province", "district", "ward", "township", "commune", "special_zone", "village"
    )
    CATEGORY = enum(
        "policy_law",
        "local_government",
        "disaster",
        "health",
        "security",
        "knowledge",
        "good_examples",
        "feedback_answer",
        "other",
    )
    PRIORITY = enum("normal", "priority", "emergency")
    BROADCAST_STATUS = enum(
        "drafted", "submitted", "approved", "rejected", "scheduled", "cancelled", "expired"
    )
    OUTCOME = enum("delivered", "failed", "retryable")
    STATION_KIND = enum("wired", "fm", "ip")
    CONDITION = enum("good", "degraded", "broken")
    FACILITY_KIND = enum("website", "eboard", "district_board", "source_system")
    FEEDBACK_CHANNEL = enum("sms", "app", "web", "hotline", "in_person")
    FEEDBACK_STATUS = enum("received", "assigned", "answered", "closed")
    REASON = obj({"reason": text(1000)}, ("reason",))
    EMPTY = obj({})

    AREA_REF = nullable(
        obj(
            {"id": UUID, "code": {"type": "string"}, "name": {"type": "string"}},
            ("id", "code", "name"),
            strict=False,
        )
    )
    AREA = obj(
        {
            "id": UUID,
            "code": {"type": "string"},
            "name": {"type": "string"},
            "kind": AREA_KIND,
            "parent": AREA_REF,
            "valid_from": DATE,
            "valid_to": nullable(DATE),
        },
        ("id", "code", "name", "kind", "parent", "valid_from", "valid_to"),
        strict=False,
    )
    AREA_DETAIL = obj(
        {"area": AREA, "ancestors": array(AREA), "children": array(AREA, 100_000)},
        ("area", "ancestors", "children"),
        strict=False,
    )
    AREA_IN = obj(
        {
            "code": CODE,
            "name": text(200),
            "kind": AREA_KIND,
            "parent": nullable(CODE),
            "effective": DATE,
        },
        ("code", "name", "kind", "parent", "effective"),
    )

    GRANT = obj({"role": ROLE, "area": nullable(CODE)}, ("role", "area"))
    GRANT_OUT = obj({"role": ROLE, "area": AREA_REF}, ("role", "area"), strict=False)
    PRINCIPAL_IN = obj(
        {
            "username": USERNAME,
            "display_name": text(200, 0),
            "grants": array(GRANT, 50),
            "permissions": array(PERMISSION, 2, unique=True),
            "password": text(256, 12),
        },
        ("username",),
    )
    PRINCIPAL = obj(
        {
            "username": {"type": "string"},
            "grants": array(GRANT_OUT),
            "permissions": array(PERMISSION),
            "has_password": {"type": "boolean"},
        },
        ("username", "grants", "permissions"),
        strict=False,
    )
    SESSION = obj(
        {
            "username": {"type": "string"},
            "grants": array(GRANT_OUT),
            "permissions": array(PERMISSION),
            "via": enum("token", "session"),
            "csrf_token": nullable({"type": "string"}),
        },
        ("username", "grants", "permissions", "via", "csrf_token"),
        strict=False,
    )
    PASSWORD_CHANGE = obj(
        {"current_password": text(256), "new_password": text(256, 12)},
        ("current_password", "new_password"),
    )
    PASSWORD_SET = obj({"password": text(256, 12)}, ("password",))
    TOKEN_IN = obj(
        {
            "label": text(100),
            "username": USERNAME,
            "ttl_days": {"type": "integer", "minimum": 1, "maximum": 3650},
        },
        ("label",),
    )
    TOKEN = obj(
        {
            "id": {"type": "string"},
            "username": {"type": "string"},
            "label": {"type": "string"},
            "created_at": DATETIME,
            "expires_at": DATETIME,
            "last_used": nullable(DATETIME),
        },
        ("id", "username", "label", "created_at", "expires_at", "last_used"),
        strict=False,
    )
    TOKEN_ISSUED = obj(
        {"token": {"type": "string"}, "info": TOKEN}, ("token", "info"), strict=False
    )

    DEVICE = obj(
        {
            "id": UUID,
            "name": {"type": "string"},
            "kind": DEVICE_KIND,
            "area": AREA_REF,
            "transport": {"type": "string"},
            "address": {"type": "string"},
            "channels": array(CHANNEL),
            "groups": array({"type": "string"}),
            "status": DEVICE_STATUS,
            "active": {"type": "boolean"},
        },
        ("id", "name", "kind", "area", "transport", "address", "channels", "status", "active"),
        strict=False,
    )
    DEVICE_IN = obj(
        {
            "name": text(200),
            "kind": DEVICE_KIND,
            "area": CODE,
            "transport": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,63}$"},
            "address": text(2048),
            "channels": array(CHANNEL, 3, unique=True),
            "groups": array(text(64), 50, unique=True),
            "settings": {
                "type": "object",
                "maxProperties": 50,
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"},
                "additionalProperties": {"type": ["string", "number", "boolean"]},
            },
        },
        ("name", "kind", "area", "transport", "address", "channels"),
    )
    DEVICE_STATUS_IN = obj({"status": DEVICE_STATUS, "reason": text(500, 0)}, ("status",))

    STATION = obj(
        {
            "id": UUID,
            "name": {"type": "string"},
            "area": AREA_REF,
            "kind": STATION_KIND,
            "commissioned_year": {"type": "integer"},
            "condition": CONDITION,
            "reaches_villages": {"type": "boolean"},
            "registered_on": DATE,
            "converted_on": nullable(DATE),
            "closed_on": nullable(DATE),
        },
        ("id", "name", "area", "kind", "condition"),
        strict=False,
    )
    STATION_IN = obj(
        {
            "name": text(200),
            "area": CODE,
            "kind": STATION_KIND,
            "commissioned_year": {"type": "integer", "minimum": 1900, "maximum": 2100},
            "condition": CONDITION,
            "reaches_villages": {"type": "boolean"},
            "effective": DATE,
        },
        ("name", "area", "kind", "commissioned_year", "effective"),
    )
    EFFECTIVE_IN = obj({"effective": DATE}, ("effective",))
    ASSESS_IN = obj(
        {"condition": CONDITION, "reaches_villages": {"type": "boolean"}, "effective": DATE},
        ("condition", "reaches_villages", "effective"),
    )
    FACILITY = obj(
        {
            "id": UUID,
            "name": {"type": "string"},
            "kind": FACILITY_KIND,
            "area": AREA_REF,
            "established_on": DATE,
            "connected_on": nullable(DATE),
            "closed_on": nullable(DATE),
        },
        ("id", "name", "kind", "area"),
        strict=False,
    )
    FACILITY_IN = obj(
        {"name": text(200), "kind": FACILITY_KIND, "area": CODE, "effective": DATE},
        ("name", "kind", "area", "effective"),
    )

    SPEECH = obj(
        {"type": {"const": "speech"}, "text": text(20_000), "voice": text(64)}, ("type", "text")
    )
    RECORDING = obj(
        {
            "type": {"const": "recording"},
            "uri": text(2048),
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "duration_s": nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 86400}),
        },
        ("type", "uri", "sha256"),
    )
    BOARD = obj(
        {"text": text(10_000), "images": array(text(2048), 32), "layout": text(64)}, ("text",)
    )
    SMS = obj({"text": text(670)}, ("text",))
    CONTENT = {
        "type": "object",
        "properties": {"audio": {"oneOf": [SPEECH, RECORDING]}, "board": BOARD, "sms": SMS},
        "additionalProperties": False,
        "minProperties": 1,
    }
    TARGETS = obj(
        {
            "areas": array(CODE, 500, unique=True),
            "channels": array(CHANNEL, 3, unique=True),
            "device_kinds": array(DEVICE_KIND, 6, unique=True),
            "groups": array(text(64), 50, unique=True),
        },
        ("areas", "channels"),
    )
    SCHEDULE = obj(
        {
            "kind": enum("once", "cron", "list"),
            "instants": array(DATETIME, 366),
            "cron": nullable(text(200)),
            "zone": ZONE,
            "valid_from": nullable(DATETIME),
            "valid_until": nullable(DATETIME),
            "exceptions": array(DATE, 366),
            "duration_s": {"type": "integer", "minimum": 1, "maximum": 86400},
            "misfire_grace_s": {"type": "integer", "minimum": 0, "maximum": 604800},
            "coalesce": {"type": "boolean"},
        },
        ("kind",),
    )
    PREEMPTION = obj(
        {"cut_in": enum("now", "after_current"), "interrupted": enum("resume", "restart", "drop")},
        ("cut_in",),
    )
    BROADCAST_IN = obj(
        {
            "title": text(300),
            "category": CATEGORY,
            "priority": PRIORITY,
            "content": CONTENT,
            "targets": TARGETS,
            "schedule": SCHEDULE,
            "preemption": nullable(PREEMPTION),
        },
        ("title", "category", "content", "targets", "schedule"),
    )
    BROADCAST = obj(
        {
            "id": UUID,
            "title": {"type": "string"},
            "category": CATEGORY,
            "priority": PRIORITY,
            "status": BROADCAST_STATUS,
            "author": {"type": "string"},
            "editors": array({"type": "string"}),
            "submitted_by": nullable({"type": "string"}),
            "approved_by": nullable({"type": "string"}),
            "reason": nullable({"type": "string"}),
            "scheduled_at": nullable(DATETIME),
            "content": {"type": "object"},
            "targets": {"type": "object"},
            "schedule": {"type": "object"},
            "preemption": {"type": "object"},
            "version": {"type": "integer"},
        },
        (
            "id",
            "title",
            "category",
            "priority",
            "status",
            "author",
            "content",
            "targets",
            "schedule",
        ),
        strict=False,
    )
    COUNTS = obj(
        {
            k: {"type": "integer", "minimum": 0}
            for k in ("delivered", "failed", "retryable", "pending")
        },
        ("delivered", "failed", "retryable", "pending"),
        strict=False,
    )
    DISPATCH = obj(
        {
            "id": UUID,
            "broadcast_id": UUID,
            "occurrence": DATETIME,
            "priority": PRIORITY,
            "devices": {"type": "integer", "minimum": 0},
            "counts": COUNTS,
            "completed_at": nullable(DATETIME),
        },
        ("id", "broadcast_id", "occurrence", "priority", "devices", "counts", "completed_at"),
        strict=False,
    )
    OUTCOME_ROW = obj(
        {
            "device_id": UUID,
            "device": nullable({"type": "string"}),
            "status": enum("delivered", "failed", "retryable", "pending"),
            "at": nullable(DATETIME),
            "reason": {"type": "string"},
        },
        ("device_id", "status", "at", "reason"),
        strict=False,
    )
    DISPATCH_DETAIL = {
        **DISPATCH,
        "properties": {
            **DISPATCH["properties"],
            "outcomes": array(OUTCOME_ROW, 1_000_000),
            "unmatched": array(UUID, 1_000_000),
        },
        "required": [*DISPATCH["required"], "outcomes", "unmatched"],
    }
    TODAY = obj(
        {
            "date": DATE,
            "communes": array(
                obj(
                    {
                        "area": AREA_REF,
                        "items": array(
                            obj(
                                {
                                    "broadcast_id": UUID,
                                    "title": {"type": "string"},
                                    "priority": PRIORITY,
                                    "status": BROADCAST_STATUS,
                                    "at": DATETIME,
                                    "dispatch": nullable(DISPATCH),
                                },
                                ("broadcast_id", "title", "priority", "status", "at", "dispatch"),
                                strict=False,
                            ),
                            100_000,
                        ),
                    },
                    ("area", "items"),
                    strict=False,
                ),
                100_000,
            ),
        },
        ("date", "communes"),
        strict=False,
    )
    FEEDBACK_IN = obj(
        {
            "text": text(5000),
            "channel": FEEDBACK_CHANNEL,
            "sender_ref": text(200),
            "area": nullable(CODE),
            "source_ref": nullable(text(200)),
            "received_at": nullable(DATETIME),
        },
        ("text", "channel", "sender_ref", "area"),
    )
    FEEDBACK = obj(
        {
            "id": UUID,
            "channel": FEEDBACK_CHANNEL,
            "area": AREA_REF,
            "sender_ref": {"type": "string"},
            "text": {"type": "string"},
            "received_at": DATETIME,
            "due": DATE,
            "status": FEEDBACK_STATUS,
            "assignee": nullable({"type": "string"}),
            "answer": nullable({"type": "string"}),
        },
        ("id", "channel", "area", "text", "received_at", "due", "status"),
        strict=False,
    )
    ASSIGN_IN = obj({"assignee": USERNAME}, ("assignee",))
    ANSWER_IN = obj({"text": text(5000)}, ("text",))
    PLAN = obj(
        {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "area": AREA_REF,
            "years": array({"type": "integer"}),
        },
        ("id", "title", "area", "years"),
        strict=False,
    )
    SCHEDULE_IN = obj({"at": nullable(DATETIME)})
    ERROR = obj(
        {
            "error": obj(
                {
                    "status": {"type": "integer"},
                    "code": {"type": "string"},
                    "title": {"type": "string"},
                    "message": {"type": "string"},
                    "field": nullable({"type": "string"}),
                    "reason": nullable({"type": "string"}),
                },
                ("status", "code", "title", "message", "field", "reason"),
                strict=False,
            )
        },
        ("error",),
        strict=False,
    )
    HEALTH = obj(
        {"status": {"const": "ok"}, "position": {"type": "integer"}},
        ("status", "position"),
        strict=False,
    )
