"""The REST API: one table of operations, from which come routing, validation and /openapi.json.

Each ``Op`` names its method, path, parameters, request body schema and response schema. The
request wrapper validates path, query and body against those schemas (jsonschema, Draft 2020-12)
before the handler runs, and ``openapi()`` writes the same objects into the OpenAPI 3.1
document, so the document cannot drift from what the handlers accept and return.

Errors are JSON: ``{"error": {"status", "code", "title", "message", "field", "reason"}}``:
400 malformed request (schema), 401 not authenticated, 403 not allowed (role, scope, permission,
CSRF), 404 unknown, 409 not allowed in the current state or already exists, 422 refused by a
domain rule (field + reason), 429 rate limited. Each command is one core command, and the core
records nothing when it refuses one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import attrs
from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema import ValidationError as SchemaError

from tcs_core import (
    AlreadyExists,
    AudioContent,
    BoardContent,
    Broadcast,
    Channel,
    Dispatch,
    Facility,
    Feedback,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    Preemption,
    Role,
    ScheduleSpec,
    SmsContent,
    SpeechContent,
    Station,
    Targets,
    TcsError,
    UnknownArea,
    ValidationError,
)
from tcs_core.schedule import occurrences

from .schemas import S, Schema, validator
from .state import State

__all__ = [
    "OPS",
    "STATE",
    "USER",
    "ApiError",
    "Ctx",
    "Op",
    "Param",
    "error_response",
    "openapi",
    "wrap",
]

STATE = web.AppKey("tcs_state", State)
log = logging.getLogger("province_server.api")


def _request_key(name: str) -> Any:
    # aiohttp >= 3.12 has typed request keys; older ones take strings.
    maker = getattr(web, "RequestKey", None)
    return maker(name, str) if maker is not None else name


USER = _request_key("tcs_user")  # the authenticated username
VIA = _request_key("tcs_via")  # "token" or "session"
SID = _request_key("tcs_sid")  # the session id (cookie)

TITLES = {
    "vi": {
        400: "Yêu cầu không hợp lệ",
        401: "Chưa đăng nhập",
        403: "Không có quyền",
        404: "Không tìm thấy",
        405: "Phương thức không được hỗ trợ",
        409: "Xung đột trạng thái",
        422: "Dữ liệu không hợp lệ",
        429: "Quá nhiều yêu cầu",
    },
    "en": {
        400: "Bad request",
        401: "Not authenticated",
        403: "Forbidden",
        404: "Not found",
        405: "Method not allowed",
        409: "Conflict",
        422: "Invalid data",
        429: "Too many requests",
    },
}


class ApiError(Exception):
    """An error answer with a status, a machine code, a message and the field at fault."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field, self.reason = field, reason
        self.headers = headers or {}


def lang_of(request: web.Request) -> str:
    """``?lang=`` or the ``tcs_lang`` cookie, else Vietnamese."""
    lang = request.query.get("lang") or request.cookies.get("tcs_lang") or "vi"
    return lang if lang in ("vi", "en") else "vi"


def error_response(request: web.Request, err: ApiError) -> web.Response:
    """The JSON body of an error."""
    body = {
        "error": {
            "status": err.status,
            "code": err.code,
            "title": TITLES[lang_of(request)].get(err.status, "Error"),
            "message": err.message,
            "field": err.field,
            "reason": err.reason,
        }
    }
    return web.json_response(
        body,
        status=err.status,
        headers=err.headers,
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )


def from_core(exc: TcsError) -> ApiError:
    """Map the core's typed errors to HTTP."""
    if isinstance(exc, ValidationError):
        return ApiError(422, "invalid", str(exc), exc.field, exc.reason)
    if isinstance(exc, PermissionDenied):
        return ApiError(403, "forbidden", str(exc))
    if isinstance(exc, UnknownArea):
        return ApiError(404, "unknown_area", str(exc))
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, InvalidTransition):
        return ApiError(409, "invalid_transition", str(exc))
    if isinstance(exc, AlreadyExists):
        return ApiError(409, "exists", str(exc))
    return ApiError(422, "refused", str(exc))


def _schema_error(err: SchemaError, where: str) -> ApiError:
    path = [where, *(str(p) for p in err.absolute_path)]
    reason = err.message
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        if missing:
            path.append(missing[0])
            reason = "is required"
    elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in known)
        if extra:
            path.append(str(extra[0]))
            reason = "is not a known field"
    field = ".".join(p for p in path if p)
    if len(reason) > 300:
        reason = reason[:300] + "…"
    return ApiError(400, "invalid_request", f"{field}: {reason}", field, reason)


# ----------------------------------------------------------------------------------------------
# Operations
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class Param:
    """A query parameter."""

    name: str
    schema: Schema
    required: bool = False
    description: str = ""


@attrs.define
class Ctx:
    """What a handler gets: the state, the user, and the validated inputs."""

    request: web.Request
    state: State
    user: str
    path: dict[str, str]
    query: dict[str, Any]
    body: Any

    @property
    def app(self) -> Any:
        """The SourceSystem."""
        return self.state.system


Handler = Callable[[Ctx], Awaitable[Any]]


@attrs.define
class Op:
    """One API operation."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    response: Schema | None
    status: int = 200
    body: Schema | None = None
    query: tuple[Param, ...] = ()
    path_schemas: dict[str, Schema] = attrs.field(factory=dict)
    media: str = "application/json"
    public: bool = False
    operation_id: str = ""
    validators: dict[str, Draft202012Validator] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.operation_id = self.operation_id or self.handler.__name__.strip("_")
        if self.body is not None:
            self.validators["body"] = validator(self.body)
        for p in self.query:
            self.validators["query." + p.name] = validator(p.schema)
        for name, schema in self.path_schemas.items():
            self.validators["path." + name] = validator(schema)

    def _check(self, key: str, value: Any) -> None:
        err = next(iter(self.validators[key].iter_errors(value)), None)
        if err is not None:
            raise _schema_error(err, key)

    async def parse(self, request: web.Request) -> tuple[dict[str, str], dict[str, Any], Any]:
        """Validated path, query and body, or ApiError(400)."""
        path = dict(request.match_info)
        for name in self.path_schemas:
            self._check("path." + name, path.get(name, ""))
        query: dict[str, Any] = {}
        for p in self.query:
            raw = request.query.getall(p.name, [])
            if not raw:
                if p.required:
                    raise ApiError(
                        400,
                        "invalid_request",
                        f"query.{p.name}: is required",
                        f"query.{p.name}",
                        "is required",
                    )
                continue
            value: Any = raw[-1]
            if p.schema.get("type") == "integer":
                try:
                    value = int(value)
                except ValueError:
                    raise ApiError(
                        400,
                        "invalid_request",
                        f"query.{p.name}: not an integer",
                        f"query.{p.name}",
                        "not an integer",
                    ) from None
            self._check("query." + p.name, value)
            query[p.name] = value
        body: Any = None
        if self.body is not None:
            raw_body = await request.read()
            if not raw_body:
                raise ApiError(
                    400, "invalid_request", "body: send a JSON object", "body", "send a JSON object"
                )
            try:
                body = json.loads(raw_body, parse_constant=_no_constants)
            except (ValueError, RecursionError) as exc:
                raise ApiError(
                    400,
                    "invalid_request",
                    f"body: not valid JSON ({exc})",
                    "body",
                    "not valid JSON",
                ) from None
            self._check("body", body)
        return path, query, body


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# ----------------------------------------------------------------------------------------------
# Conversions between JSON and the core's value types
# ----------------------------------------------------------------------------------------------


def iso(value: datetime | date | str | None) -> str | None:
    """ISO 8601 (UTC instants end with +00:00)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.isoformat()


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("z", "Z"))


def content_from_json(content: dict[str, Any]) -> dict[Channel, Any]:
    """The content variants of a request body (schema-checked already)."""
    out: dict[Channel, Any] = {}
    audio = content.get("audio")
    if audio is not None:
        if audio["type"] == "speech":
            out[Channel.AUDIO] = SpeechContent(audio["text"], audio.get("voice", "vi"))
        else:
            out[Channel.AUDIO] = AudioContent(
                audio["uri"], audio["sha256"], audio.get("duration_s")
            )
    if "board" in content:
        b = content["board"]
        out[Channel.BOARD] = BoardContent(
            b["text"], tuple(b.get("images", ())), b.get("layout", "default")
        )
    if "sms" in content:
        out[Channel.SMS] = SmsContent(content["sms"]["text"])
    return out


def content_json(content: dict[Channel, Any]) -> dict[str, Any]:
    """Content variants as the API shows them."""
    out: dict[str, Any] = {}
    for ch, v in content.items():
        if isinstance(v, SpeechContent):
            out[ch.value] = {"type": "speech", "text": v.text, "voice": v.voice}
        elif isinstance(v, AudioContent):
            out[ch.value] = {
                "type": "recording",
                "uri": v.uri,
                "sha256": v.sha256,
                "duration_s": v.duration_s,
            }
        elif isinstance(v, BoardContent):
            out[ch.value] = {"text": v.text, "images": list(v.images), "layout": v.layout}
        elif isinstance(v, SmsContent):
            out[ch.value] = {"text": v.text}
    return out


def schedule_from_json(s: dict[str, Any]) -> ScheduleSpec:
    """A ScheduleSpec from its JSON form (cross-field rules are the core's)."""
    kwargs: dict[str, Any] = {
        "kind": s["kind"],
        "instants": [_dt(x) for x in s.get("instants", [])],
    }
    for k in ("cron", "zone", "duration_s", "misfire_grace_s", "coalesce"):
        if s.get(k) is not None:
            kwargs[k] = s[k]
    for k in ("valid_from", "valid_until"):
        if s.get(k) is not None:
            kwargs[k] = _dt(s[k])
    kwargs["exceptions"] = [date.fromisoformat(x) for x in s.get("exceptions", [])]
    return ScheduleSpec(**kwargs)


def schedule_json(s: ScheduleSpec) -> dict[str, Any]:
    """A ScheduleSpec as JSON."""
    return {
        "kind": s.kind.value,
        "instants": [iso(x) for x in s.instants],
        "cron": s.cron,
        "zone": s.zone,
        "valid_from": iso(s.valid_from),
        "valid_until": iso(s.valid_until),
        "exceptions": [x.isoformat() for x in s.exceptions],
        "duration_s": s.duration_s,
        "misfire_grace_s": s.misfire_grace_s,
        "coalesce": s.coalesce,
    }


def targets_json(t: Targets) -> dict[str, Any]:
    """Targets as JSON."""
    return {
        "areas": list(t.areas),
        "channels": [c.value for c in t.channels],
        "device_kinds": [k.value for k in t.device_kinds],
        "groups": list(t.groups),
    }


def broadcast_args(body: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of draft/revise from a request body. A value type that refuses a field
    raises the core's ValidationError (→ 422 with the field)."""
    t = body["targets"]
    try:
        targets = Targets(
            areas=t["areas"],
            channels=t["channels"],
            device_kinds=t.get("device_kinds", ()),
            groups=t.get("groups", ()),
        )
        pre = body.get("preemption")
        preemption = (
            None if pre is None else Preemption(pre["cut_in"], pre.get("interrupted", "resume"))
        )
        return {
            "title": body["title"],
            "category": body["category"],
            "priority": body.get("priority", "normal"),
            "content": content_from_json(body["content"]),
            "targets": targets,
            "schedule": schedule_from_json(body["schedule"]),
            "preemption": preemption,
        }
    except (TypeError, OverflowError) as exc:
        raise ValidationError("body", str(exc)) from None
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError("body", str(exc)) from None


def broadcast_json(b: Broadcast) -> dict[str, Any]:
    """A Broadcast as JSON."""
    return {
        "id": str(b.id),
        "title": b.title,
        "category": b.category.value,
        "priority": b.priority.value,
        "status": b.status.value,
        "author": b.author,
        "editors": list(b.editors),
        "submitted_by": b.submitted_by,
        "approved_by": b.approved_by,
        "reason": b.decided_reason,
        "scheduled_at": iso(b.scheduled_at),
        "content": content_json(b.content),
        "targets": targets_json(b.targets),
        "schedule": schedule_json(b.schedule),
        "preemption": {
            "cut_in": b.preemption.cut_in.value,
            "interrupted": b.preemption.interrupted.value,
        },
        "version": b.version,
    }


def dispatch_json(d: Dispatch) -> dict[str, Any]:
    """A Dispatch summary."""
    return {
        "id": str(d.id),
        "broadcast_id": str(d.broadcast_id),
        "occurrence": iso(d.occurrence),
        "priority": d.priority.value,
        "devices": len(d.device_ids),
        "counts": d.counts(),
        "completed_at": iso(getattr(d, "completed_at", None)),
    }


# ----------------------------------------------------------------------------------------------
# Handlers
# ----------------------------------------------------------------------------------------------


def _grants_json(ctx: Ctx, username: str) -> tuple[list[dict[str, Any]], list[str]]:
    p = ctx.app.principals.get(username)
    if p is None:
        return [], []
    grants = [{"role": g.role.value, "area": ctx.state.area_ref(g.area_id)} for g in p.grants]
    return grants, sorted(x.value for x in p.permissions)


async def get_session(ctx: Ctx) -> Any:
    grants, perms = _grants_json(ctx, ctx.user)
    via = ctx.request[VIA]
    csrf = ctx.state.creds.csrf_token(ctx.request[SID]) if via == "session" else None
    return {
        "username": ctx.user,
        "grants": grants,
        "permissions": perms,
        "via": via,
        "csrf_token": csrf,
    }


async def create_principal(ctx: Ctx) -> Any:
    b = ctx.body
    # Check the password before anything is recorded: a refused request must store nothing.
    if "password" in b:
        from .auth import check_password_strength

        check_password_strength(b["password"])
    ctx.app.create_principal(
        b["username"],
        grants=[(g["role"], g["area"]) for g in b.get("grants", [])],
        permissions=b.get("permissions", []),
        display_name=b.get("display_name", ""),
        actor=ctx.user,
    )
    if "password" in b:
        ctx.state.creds.set_password(b["username"], b["password"])
    grants, perms = _grants_json(ctx, b["username"])
    return {
        "username": b["username"],
        "grants": grants,
        "permissions": perms,
        "has_password": "password" in b,
    }


async def change_password(ctx: Ctx) -> Any:
    b = ctx.body
    st = ctx.state
    wait = st.login_limiter.take("user:" + ctx.user)  # type: ignore[union-attr]
    if wait > 0:
        raise ApiError(
            429, "rate_limited", "too many attempts", headers={"Retry-After": str(int(wait) + 1)}
        )
    if not st.creds.check_password(ctx.user, b["current_password"]):
        raise ApiError(
            403, "forbidden", "the current password is wrong", "current_password", "does not match"
        )
    from .auth import check_password_strength

    st.creds.set_password(ctx.user, check_password_strength(b["new_password"]))
    log.info("%s changed their password", ctx.user)
    return None


async def set_password(ctx: Ctx) -> Any:
    username = ctx.path["username"]
    p = ctx.app.principals.get(username)
    if p is None:
        raise NotFound(f"no principal {username!r}")
    # Whoever could create this account (admin over all its areas) may reset its password.
    ctx.app.authorise(ctx.user, Role.ADMIN, [g.area_id for g in p.grants] or [None])
    from .auth import check_password_strength

    ctx.state.creds.set_password(username, check_password_strength(ctx.body["password"]))
    log.info("%s set the password of %s", ctx.user, username)
    return None


def _token_json(t: Any) -> dict[str, Any]:
    return {
        "id": t.id,
        "username": t.username,
        "label": t.label,
        "created_at": iso(t.created_at),
        "expires_at": iso(t.expires_at),
        "last_used": iso(t.last_used),
    }


async def create_token(ctx: Ctx) -> Any:
    b = ctx.body
    username = b.get("username", ctx.user)
    if username != ctx.user:
        ctx.app.authorise(ctx.user, Role.ADMIN, [None])  # only a global admin issues for others
        if ctx.app.principals.get(username) is None:
            raise NotFound(f"no principal {username!r}")
    ttl = timedelta(days=b.get("ttl_days", ctx.state.config.token_ttl_days))
    issued = ctx.state.creds.issue_token(username, b["label"], ttl)
    log.info("%s issued token %s for %s", ctx.user, issued.info.id, username)
    return {"token": issued.secret, "info": _token_json(issued.info)}


async def list_tokens(ctx: Ctx) -> Any:
    mine = ctx.state.can(ctx.user, Role.ADMIN, [None])
    return [_token_json(t) for t in ctx.state.creds.tokens(None if mine else ctx.user)]


async def revoke_token(ctx: Ctx) -> Any:
    t = ctx.state.creds.token(ctx.path["token_id"])
    if t is None:
        raise NotFound(f"no token {ctx.path['token_id']}")
    if t.username != ctx.user:
        ctx.app.authorise(ctx.user, Role.ADMIN, [None])
    ctx.state.creds.revoke_token(t.id)
    log.info("%s revoked token %s of %s", ctx.user, t.id, t.username)
    return None


def _at(ctx: Ctx) -> date:
    at = ctx.query.get("at")
    return date.fromisoformat(at) if at else ctx.state.today()


async def list_areas(ctx: Ctx) -> Any:
    day = _at(ctx)
    parent = ctx.query.get("parent")
    pid = None if parent is None else ctx.app.area(parent, day).area_id
    return [ctx.state.area_json(v) for v in ctx.app.areas.children(pid, day)]


async def get_area(ctx: Ctx) -> Any:
    day = _at(ctx)
    v = ctx.app.area(ctx.path["code"], day)
    return {
        "area": ctx.state.area_json(v),
        "ancestors": [ctx.state.area_json(a) for a in ctx.app.areas.ancestors(v.area_id, day)],
        "children": [ctx.state.area_json(a) for a in ctx.app.areas.children(v.area_id, day)],
    }


async def create_area(ctx: Ctx) -> Any:
    b = ctx.body
    eff = date.fromisoformat(b["effective"])
    ctx.app.create_area(
        b["code"], b["name"], b["kind"], parent=b["parent"], effective=eff, actor=ctx.user
    )
    return ctx.state.area_json(ctx.app.area(b["code"], eff))


def _device_json(ctx: Ctx, d: Any) -> dict[str, Any]:
    return {
        "id": str(d.device_id),
        "name": d.name,
        "kind": d.kind.value,
        "area": ctx.state.area_ref(d.area_id),
        "transport": d.transport,
        "address": d.address,
        "channels": [c.value for c in d.channels],
        "groups": list(d.groups),
        "status": d.status.value,
        "active": d.active,
    }


async def list_devices(ctx: Ctx) -> Any:
    areas = ctx.state.visible_areas(ctx.user, ctx.query.get("area"))
    status = ctx.query.get("status")
    out = [
        _device_json(ctx, d)
        for d in ctx.app.devices.all()
        if d.active
        and (areas is None or d.area_id in areas)
        and (status is None or d.status.value == status)
    ]
    out.sort(key=lambda d: ((d["area"] or {}).get("code", ""), d["name"]))
    return out[: ctx.query.get("limit", 1000)]


def _device(ctx: Ctx, role: Role = Role.VIEWER) -> Any:
    d = ctx.app.devices.get(UUID(ctx.path["device_id"]))
    if d is None:
        raise NotFound(f"no device with id {ctx.path['device_id']}")
    ctx.app.authorise(ctx.user, role, [d.area_id])
    return d


async def get_device(ctx: Ctx) -> Any:
    return _device_json(ctx, _device(ctx))


async def register_device(ctx: Ctx) -> Any:
    b = ctx.body
    did = ctx.app.register_device(
        b["name"],
        b["kind"],
        area=b["area"],
        transport=b["transport"],
        address=b["address"],
        channels=b["channels"],
        settings=b.get("settings"),
        groups=b.get("groups", ()),
        actor=ctx.user,
    )
    return _device_json(ctx, ctx.app.devices.get(did))


async def set_device_status(ctx: Ctx) -> Any:
    d = _device(ctx)
    ctx.app.set_device_status(
        d.device_id, ctx.body["status"], ctx.body.get("reason", ""), actor=ctx.user
    )
    return _device_json(ctx, ctx.app.devices.get(d.device_id))


async def decommission_device(ctx: Ctx) -> Any:
    d = _device(ctx)
    ctx.app.decommission_device(d.device_id, ctx.body["reason"], actor=ctx.user)
    return _device_json(ctx, ctx.app.devices.get(d.device_id))


def _station_json(ctx: Ctx, s: Station) -> dict[str, Any]:
    return {
        "id": str(s.id),
        "name": s.name,
        "area": ctx.state.area_ref(s.area_id),
        "kind": s.kind.value,
        "commissioned_year": s.commissioned_year,
        "condition": s.condition.value,
        "reaches_villages": bool(s.reaches_villages),
        "registered_on": iso(s.registered_on),
        "converted_on": iso(getattr(s, "converted_on", None)),
        "closed_on": iso(getattr(s, "closed", None)),
    }


def _listed(ctx: Ctx, ids: dict[UUID, Any]) -> list[UUID]:
    ctx.state.index.refresh(ctx.app)
    areas = ctx.state.visible_areas(ctx.user, ctx.query.get("area"))
    return [i for i, a in ids.items() if areas is None or a in areas]


async def list_stations(ctx: Ctx) -> Any:
    ids = _listed(ctx, ctx.state.index.stations)[: ctx.query.get("limit", 1000)]
    return [_station_json(ctx, ctx.app.station(i)) for i in ids]


def _station(ctx: Ctx) -> Station:
    s = ctx.app.station(UUID(ctx.path["station_id"]))
    ctx.app.authorise(ctx.user, Role.VIEWER, [s.area_id])
    return s  # type: ignore[no-any-return]


async def get_station(ctx: Ctx) -> Any:
    return _station_json(ctx, _station(ctx))


async def register_station(ctx: Ctx) -> Any:
    b = ctx.body
    sid = ctx.app.register_station(
        b["name"],
        area=b["area"],
        kind=b["kind"],
        commissioned_year=b["commissioned_year"],
        condition=b.get("condition", "good"),
        reaches_villages=b.get("reaches_villages", True),
        effective=date.fromisoformat(b["effective"]),
        actor=ctx.user,
    )
    return _station_json(ctx, ctx.app.station(sid))


async def convert_station(ctx: Ctx) -> Any:
    s = _station(ctx)
    ctx.app.convert_station(
        s.id, effective=date.fromisoformat(ctx.body["effective"]), actor=ctx.user
    )
    return _station_json(ctx, ctx.app.station(s.id))


async def assess_station(ctx: Ctx) -> Any:
    s = _station(ctx)
    b = ctx.body
    ctx.app.assess_station(
        s.id,
        b["condition"],
        reaches_villages=b["reaches_villages"],
        effective=date.fromisoformat(b["effective"]),
        actor=ctx.user,
    )
    return _station_json(ctx, ctx.app.station(s.id))


def _facility_json(ctx: Ctx, f: Facility) -> dict[str, Any]:
    return {
        "id": str(f.id),
        "name": f.name,
        "kind": f.kind.value,
        "area": ctx.state.area_ref(f.area_id),
        "established_on": iso(f.established_on),
        "connected_on": iso(getattr(f, "connected_on", None)),
        "closed_on": iso(getattr(f, "closed", None)),
    }


async def list_facilities(ctx: Ctx) -> Any:
    ids = _listed(ctx, ctx.state.index.facilities)[: ctx.query.get("limit", 1000)]
    return [_facility_json(ctx, ctx.app.facility(i)) for i in ids]


def _facility(ctx: Ctx) -> Facility:
    f = ctx.app.facility(UUID(ctx.path["facility_id"]))
    ctx.app.authorise(ctx.user, Role.VIEWER, [f.area_id])
    return f  # type: ignore[no-any-return]


async def get_facility(ctx: Ctx) -> Any:
    return _facility_json(ctx, _facility(ctx))


async def establish_facility(ctx: Ctx) -> Any:
    b = ctx.body
    fid = ctx.app.establish_facility(
        b["name"],
        b["kind"],
        area=b["area"],
        effective=date.fromisoformat(b["effective"]),
        actor=ctx.user,
    )
    return _facility_json(ctx, ctx.app.facility(fid))


async def connect_facility(ctx: Ctx) -> Any:
    f = _facility(ctx)
    ctx.app.connect_facility(
        f.id, effective=date.fromisoformat(ctx.body["effective"]), actor=ctx.user
    )
    return _facility_json(ctx, ctx.app.facility(f.id))


# -- broadcasts --------------------------------------------------------------------------------


def view_any(ctx: Ctx, area_ids: Any) -> None:
    """A broadcast is visible to whoever views at least one of its target areas (a commune
    sees what airs there, including province-wide bulletins); commands check every area."""
    ids = list(area_ids)
    if not ctx.state.reaches(ctx.user, ids):
        ctx.app.authorise(ctx.user, Role.VIEWER, ids[:1])  # raises with the core's message
        raise PermissionDenied(f"{ctx.user} views none of the target areas")


def _broadcast(ctx: Ctx) -> Broadcast:
    b = ctx.app.broadcast(UUID(ctx.path["broadcast_id"]))
    view_any(ctx, b.target_area_ids)
    return b  # type: ignore[no-any-return]


async def list_broadcasts(ctx: Ctx) -> Any:
    st = ctx.state
    st.index.refresh(ctx.app)
    areas = st.visible_areas(ctx.user, ctx.query.get("area"))
    status = ctx.query.get("status")
    limit = ctx.query.get("limit", 100)
    out = []
    for bid in reversed(st.index.broadcasts):
        view = ctx.app.broadcasts.get(bid)
        if view is None or (status is not None and view.status != status):
            continue
        targets = [UUID(str(a)) for a in view.fields["target_area_ids"]]
        if areas is not None and not st.reaches(ctx.user, targets, areas):
            continue
        out.append(broadcast_json(ctx.app.broadcast(bid)))
        if len(out) >= limit:
            break
    return out


async def get_broadcast(ctx: Ctx) -> Any:
    return broadcast_json(_broadcast(ctx))


async def draft_broadcast(ctx: Ctx) -> Any:
    bid = ctx.app.draft_broadcast(**broadcast_args(ctx.body), actor=ctx.user)
    return broadcast_json(ctx.app.broadcast(bid))


async def revise_broadcast(ctx: Ctx) -> Any:
    b = _broadcast(ctx)
    ctx.app.revise_broadcast(b.id, **broadcast_args(ctx.body), actor=ctx.user)
    return broadcast_json(ctx.app.broadcast(b.id))


async def submit_broadcast(ctx: Ctx) -> Any:
    b = _broadcast(ctx)
    ctx.app.submit_broadcast(b.id, actor=ctx.user)
    return broadcast_json(ctx.app.broadcast(b.id))


async def approve_broadcast(ctx: Ctx) -> Any:
    b = _broadcast(ctx)
    ctx.app.approve_broadcast(b.id, actor=ctx.user)
    return broadcast_json(ctx.app.broadcast(b.id))


async def reject_broadcast(ctx: Ctx) -> Any:
    b = _broadcast(ctx)
    ctx.app.reject_broadcast(b.id, ctx.body["reason"], actor=ctx.user)
    return broadcast_json(ctx.app.broadcast(b.id))


async def cancel_broadcast(ctx: Ctx) -> Any:
    b = _broadcast(ctx)
    ctx.app.cancel_broadcast(b.id, ctx.body["reason"], actor=ctx.user)
    return broadcast_json(ctx.app.broadcast(b.id))


async def schedule_broadcast(ctx: Ctx) -> Any:
    b = _broadcast(ctx)
    at = ctx.body.get("at")
    ctx.app.mark_scheduled(b.id, None if at is None else _dt(at), actor=ctx.user)
    return broadcast_json(ctx.app.broadcast(b.id))


async def list_dispatches(ctx: Ctx) -> Any:
    b = _broadcast(ctx)
    ctx.state.index.refresh(ctx.app)
    rows = sorted(ctx.state.index.dispatches.get(b.id, []), reverse=True)
    return [dispatch_json(ctx.app.dispatch(did)) for _, did in rows[: ctx.query.get("limit", 100)]]


async def get_dispatch(ctx: Ctx) -> Any:
    d = ctx.app.dispatch(UUID(ctx.path["dispatch_id"]))
    view_any(ctx, ctx.app.broadcast(d.broadcast_id).target_area_ids)
    out = dispatch_json(d)
    rows = []
    for key in d.device_ids:
        did = UUID(key)
        view = ctx.app.devices.get(did)
        o = d.outcome(did)
        rows.append(
            {
                "device_id": str(did),
                "device": view.name if view else None,
                "status": o.status.value if o else "pending",
                "at": iso(o.at) if o else None,
                "reason": o.reason if o else "",
            }
        )
    out["outcomes"] = rows
    out["unmatched"] = [str(UUID(str(u))) for u in d.unmatched]
    return out


async def schedule_today(ctx: Ctx) -> Any:
    st, app = ctx.state, ctx.app
    st.index.refresh(app)
    day = st.today()
    visible = st.visible_areas(ctx.user, ctx.query.get("area"))
    zone = app.settings.zone
    import pytz  # the core's zone library

    tz = pytz.timezone(zone)
    start = tz.localize(datetime(day.year, day.month, day.day)).astimezone(UTC)
    end = start + timedelta(days=1)
    communes: dict[UUID, list[dict[str, Any]]] = {}
    for bid in st.index.broadcasts:
        view = app.broadcasts.get(bid)
        if view is None or view.status in ("drafted", "rejected", "cancelled"):
            continue
        spec = view.fields["schedule"]
        whens = list(occurrences(spec, start, end))
        if not whens:
            continue
        targets = [UUID(str(a)) for a in view.fields["target_area_ids"]]
        here = {
            v.area_id
            for t in targets
            for v in app.areas.subtree(t, day)
            if v.kind.is_commune_level and (visible is None or v.area_id in visible)
        }
        for at in whens:
            d = app.dispatch_of(bid, at)
            item = {
                "broadcast_id": str(bid),
                "title": view.fields["title"],
                "priority": str(view.fields["priority"]),
                "status": view.status,
                "at": iso(at),
                "dispatch": None if d is None else dispatch_json(d),
            }
            for c in here:
                communes.setdefault(c, []).append(item)
    rows: list[dict[str, Any]] = [
        {"area": st.area_ref(c, day), "items": sorted(items, key=lambda i: i["at"])}
        for c, items in communes.items()
    ]
    rows.sort(key=lambda r: r["area"]["code"] if r["area"] else "")
    return {"date": day.isoformat(), "communes": rows[: ctx.query.get("limit", 500)]}


# -- feedback ----------------------------------------------------------------------------------


def _feedback_json(ctx: Ctx, f: Feedback) -> dict[str, Any]:
    return {
        "id": str(f.id),
        "channel": f.channel.value,
        "area": ctx.state.area_ref(f.area_id),
        "sender_ref": f.sender_ref,
        "text": f.text,
        "received_at": iso(f.received_at),
        "due": iso(f.due),
        "status": f.status.value,
        "assignee": getattr(f, "assignee", None),
        "answer": getattr(f, "answer", None),
    }


async def list_feedback(ctx: Ctx) -> Any:
    ids = _listed(ctx, ctx.state.index.feedback)
    status = ctx.query.get("status")
    out = []
    for i in reversed(ids):
        f = ctx.app.feedback(i)
        if status is None or f.status.value == status:
            out.append(_feedback_json(ctx, f))
        if len(out) >= ctx.query.get("limit", 100):
            break
    return out


def _feedback(ctx: Ctx) -> Feedback:
    f = ctx.app.feedback(UUID(ctx.path["feedback_id"]))
    ctx.app.authorise(ctx.user, Role.VIEWER, [f.area_id])
    return f  # type: ignore[no-any-return]


async def get_feedback(ctx: Ctx) -> Any:
    return _feedback_json(ctx, _feedback(ctx))


async def receive_feedback(ctx: Ctx) -> Any:
    b = ctx.body
    area = b.get("area")
    # The core records who took the item in; the API also requires them to work there.
    ctx.app.authorise(
        ctx.user, Role.OPERATOR, [None if area is None else ctx.app.area(area).area_id]
    )
    received = b.get("received_at")
    fid = ctx.app.receive_feedback(
        b["text"],
        channel=b["channel"],
        sender_ref=b["sender_ref"],
        area=area,
        received_at=None if received is None else _dt(received),
        source_ref=b.get("source_ref"),
        actor=ctx.user,
    )
    return _feedback_json(ctx, ctx.app.feedback(fid))


async def assign_feedback(ctx: Ctx) -> Any:
    f = _feedback(ctx)
    ctx.app.assign_feedback(f.id, ctx.body["assignee"], actor=ctx.user)
    return _feedback_json(ctx, ctx.app.feedback(f.id))


async def answer_feedback(ctx: Ctx) -> Any:
    f = _feedback(ctx)
    ctx.app.answer_feedback(f.id, ctx.body["text"], actor=ctx.user)
    return _feedback_json(ctx, ctx.app.feedback(f.id))


async def close_feedback(ctx: Ctx) -> Any:
    f = _feedback(ctx)
    ctx.app.close_feedback(f.id, actor=ctx.user)
    return _feedback_json(ctx, ctx.app.feedback(f.id))


# -- KPIs --------------------------------------------------------------------------------------


def _plans(ctx: Ctx) -> list[tuple[Any, Any]]:
    """(plan, area version) for each plan file whose area the store knows and the user views."""
    from tcs_core.kpi import PlanError, load_plans

    try:
        plans = load_plans(ctx.state.config.plans_dir)
    except PlanError as exc:
        raise ApiError(422, "bad_plan", str(exc), exc.key, exc.reason) from None
    out = []
    for p in plans:
        try:
            v = ctx.app.area(p.area.code, p.area.on)
        except UnknownArea:
            continue
        try:
            ctx.app.authorise(ctx.user, Role.VIEWER, [v.area_id], at=p.area.on)
        except PermissionDenied:
            continue
        out.append((p, v))
    return out


async def list_plans(ctx: Ctx) -> Any:
    return [
        {
            "id": p.id,
            "title": p.title,
            "area": ctx.state.area_ref(v.area_id, p.area.on),
            "years": list(p.years),
        }
        for p, v in _plans(ctx)
    ]


async def kpi_report(ctx: Ctx) -> Any:
    from tcs_core.kpi import Kpis, build_report, render

    plan = next((p for p, _ in _plans(ctx) if p.id == ctx.query["plan"]), None)
    if plan is None:
        raise NotFound(f"no plan {ctx.query['plan']!r} for an area you can view")
    as_of = date.fromisoformat(ctx.query["as_of"]) if "as_of" in ctx.query else ctx.state.today()
    fmt = ctx.query.get("format", "json")
    lang = ctx.query.get("lang", "vi")
    extras = ctx.state.extras
    lock = extras.setdefault("kpi_lock", asyncio.Lock())

    def build() -> str:
        # The first report reads the whole log into the KPI projection (seconds on a national
        # store): a worker thread keeps the loop, and so the live events, responsive.
        kpis = extras.get("kpis")
        if kpis is None:
            kpis = extras["kpis"] = Kpis(ctx.app)
        return str(render(build_report(kpis, plan, as_of), fmt, lang))

    async with lock:  # one projection, one builder at a time
        text_ = await asyncio.to_thread(build)
    if fmt == "json":
        return json.loads(text_)
    media = {"html": "text/html", "csv": "text/csv"}[fmt]
    resp = web.Response(text=text_, content_type=media, charset="utf-8")
    # The report is shown in the dashboard's origin: it may style itself, nothing more.
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    )
    return resp


async def health(ctx: Ctx) -> Any:
    return {"status": "ok", "position": int(ctx.app.position)}


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------

ID = S.UUID
AREA_Q = Param("area", S.CODE, description="an area code: its whole subtree")
LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 10_000})
AT_Q = Param("at", S.DATE, description="the structure as of this date (default: today)")


def _ops() -> list[Op]:
    b = {"broadcast_id": ID}
    return [
        Op("GET", "/healthz", health, "Liveness", "meta", S.HEALTH, public=True),
        Op(
            "GET",
            "/api/v1/session",
            get_session,
            "Who am I: grants, permissions, CSRF token",
            "auth",
            S.SESSION,
        ),
        Op(
            "POST",
            "/api/v1/principals",
            create_principal,
            "Create an account (admin), optionally with a dashboard password",
            "auth",
            S.PRINCIPAL,
            201,
            body=S.PRINCIPAL_IN,
        ),
        Op(
            "POST",
            "/api/v1/session/password",
            change_password,
            "Change your own dashboard password",
            "auth",
            None,
            204,
            body=S.PASSWORD_CHANGE,
        ),
        Op(
            "POST",
            "/api/v1/principals/{username}/password",
            set_password,
            "Set someone's dashboard password (admin over all their areas)",
            "auth",
            None,
            204,
            body=S.PASSWORD_SET,
            path_schemas={"username": S.USERNAME},
        ),
        Op(
            "POST",
            "/api/v1/tokens",
            create_token,
            "Issue an API token (shown once; stored hashed)",
            "auth",
            S.TOKEN_ISSUED,
            201,
            body=S.TOKEN_IN,
        ),
        Op(
            "GET",
            "/api/v1/tokens",
            list_tokens,
            "Your tokens (a global admin: all)",
            "auth",
            {"type": "array", "items": S.TOKEN},
        ),
        Op(
            "DELETE",
            "/api/v1/tokens/{token_id}",
            revoke_token,
            "Revoke a token",
            "auth",
            None,
            204,
            path_schemas={"token_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"}},
        ),
        Op(
            "GET",
            "/api/v1/areas",
            list_areas,
            "Children of an area (default: the roots)",
            "areas",
            {"type": "array", "items": S.AREA},
            query=(Param("parent", S.CODE), AT_Q),
        ),
        Op(
            "GET",
            "/api/v1/areas/{code}",
            get_area,
            "An area with its ancestors and children",
            "areas",
            S.AREA_DETAIL,
            query=(AT_Q,),
            path_schemas={"code": S.CODE},
        ),
        Op(
            "POST",
            "/api/v1/areas",
            create_area,
            "Create an area (admin over the parent)",
            "areas",
            S.AREA,
            201,
            body=S.AREA_IN,
        ),
        Op(
            "GET",
            "/api/v1/devices",
            list_devices,
            "Devices in the areas you view",
            "devices",
            {"type": "array", "items": S.DEVICE},
            query=(AREA_Q, Param("status", S.DEVICE_STATUS), LIMIT),
        ),
        Op(
            "POST",
            "/api/v1/devices",
            register_device,
            "Register a device (admin)",
            "devices",
            S.DEVICE,
            201,
            body=S.DEVICE_IN,
        ),
        Op(
            "GET",
            "/api/v1/devices/{device_id}",
            get_device,
            "One device",
            "devices",
            S.DEVICE,
            path_schemas={"device_id": ID},
        ),
        Op(
            "POST",
            "/api/v1/devices/{device_id}/status",
            set_device_status,
            "Record a status transition (operator)",
            "devices",
            S.DEVICE,
            body=S.DEVICE_STATUS_IN,
            path_schemas={"device_id": ID},
        ),
        Op(
            "POST",
            "/api/v1/devices/{device_id}/decommission",
            decommission_device,
            "Take a device out of service (admin)",
            "devices",
            S.DEVICE,
            body=S.REASON,
            path_schemas={"device_id": ID},
        ),
        Op(
            "GET",
            "/api/v1/stations",
            list_stations,
            "Commune radio stations",
            "stations",
            {"type": "array", "items": S.STATION},
            query=(AREA_Q, LIMIT),
        ),
        Op(
            "POST",
            "/api/v1/stations",
            register_station,
            "Register a station (admin)",
            "stations",
            S.STATION,
            201,
            body=S.STATION_IN,
        ),
        Op(
            "GET",
            "/api/v1/stations/{station_id}",
            get_station,
            "One station",
            "stations",
            S.STATION,
            path_schemas={"station_id": ID},
        ),
        Op(
            "POST",
            "/api/v1/stations/{station_id}/convert",
            convert_station,
            "Record a conversion to IP (admin)",
            "stations",
            S.STATION,
            body=S.EFFECTIVE_IN,
            path_schemas={"station_id": ID},
        ),
        Op(
            "POST",
            "/api/v1/stations/{station_id}/assess",
            assess_station,
            "Record a station's condition (admin)",
            "stations",
            S.STATION,
            body=S.ASSESS_IN,
            path_schemas={"station_id": ID},
        ),
        Op(
            "GET",
            "/api/v1/facilities",
            list_facilities,
            "Websites, e-boards, district boards",
            "facilities",
            {"type": "array", "items": S.FACILITY},
            query=(AREA_Q, LIMIT),
        ),
        Op(
            "POST",
            "/api/v1/facilities",
            establish_facility,
            "Record a facility (admin)",
            "facilities",
            S.FACILITY,
            201,
            body=S.FACILITY_IN,
        ),
        Op(
            "GET",
            "/api/v1/facilities/{facility_id}",
            get_facility,
            "One facility",
            "facilities",
            S.FACILITY,
            path_schemas={"facility_id": ID},
        ),
        Op(
            "POST",
            "/api/v1/facilities/{facility_id}/connect",
            connect_facility,
            "Record the connection to the provincial source system (admin)",
            "facilities",
            S.FACILITY,
            body=S.EFFECTIVE_IN,
            path_schemas={"facility_id": ID},
        ),
        Op(
            "GET",
            "/api/v1/broadcasts",
            list_broadcasts,
            "Broadcasts, newest first",
            "broadcasts",
            {"type": "array", "items": S.BROADCAST},
            query=(AREA_Q, Param("status", S.BROADCAST_STATUS), LIMIT),
        ),
        Op(
            "POST",
            "/api/v1/broadcasts",
            draft_broadcast,
            "Draft a broadcast (operator over every target area)",
            "broadcasts",
            S.BROADCAST,
            201,
            body=S.BROADCAST_IN,
        ),
        Op(
            "GET",
            "/api/v1/broadcasts/{broadcast_id}",
            get_broadcast,
            "One broadcast",
            "broadcasts",
            S.BROADCAST,
            path_schemas=b,
        ),
        Op(
            "PUT",
            "/api/v1/broadcasts/{broadcast_id}",
            revise_broadcast,
            "Revise a draft or a rejected broadcast",
            "broadcasts",
            S.BROADCAST,
            body=S.BROADCAST_IN,
            path_schemas=b,
        ),
        Op(
            "POST",
            "/api/v1/broadcasts/{broadcast_id}/submit",
            submit_broadcast,
            "Submit for approval (emergency and SMS need their permission)",
            "broadcasts",
            S.BROADCAST,
            body=S.EMPTY,
            path_schemas=b,
        ),
        Op(
            "POST",
            "/api/v1/broadcasts/{broadcast_id}/approve",
            approve_broadcast,
            "Approve (a second person, approver over every target area)",
            "broadcasts",
            S.BROADCAST,
            body=S.EMPTY,
            path_schemas=b,
        ),
        Op(
            "POST",
            "/api/v1/broadcasts/{broadcast_id}/reject",
            reject_broadcast,
            "Send back to the author with a reason",
            "broadcasts",
            S.BROADCAST,
            body=S.REASON,
            path_schemas=b,
        ),
        Op(
            "POST",
            "/api/v1/broadcasts/{broadcast_id}/cancel",
            cancel_broadcast,
            "Withdraw; no further occurrence is dispatched",
            "broadcasts",
            S.BROADCAST,
            body=S.REASON,
            path_schemas=b,
        ),
        Op(
            "POST",
            "/api/v1/broadcasts/{broadcast_id}/schedule",
            schedule_broadcast,
            "Record that the broadcast was taken by a scheduler",
            "broadcasts",
            S.BROADCAST,
            body=S.SCHEDULE_IN,
            path_schemas=b,
        ),
        Op(
            "GET",
            "/api/v1/broadcasts/{broadcast_id}/dispatches",
            list_dispatches,
            "Dispatches (occurrences) of a broadcast, newest first",
            "dispatches",
            {"type": "array", "items": S.DISPATCH},
            query=(LIMIT,),
            path_schemas=b,
        ),
        Op(
            "GET",
            "/api/v1/dispatches/{dispatch_id}",
            get_dispatch,
            "A dispatch with the outcome per device",
            "dispatches",
            S.DISPATCH_DETAIL,
            path_schemas={"dispatch_id": ID},
        ),
        Op(
            "GET",
            "/api/v1/schedule/today",
            schedule_today,
            "Today's occurrences per commune",
            "dispatches",
            S.TODAY,
            query=(AREA_Q, LIMIT),
        ),
        Op(
            "GET",
            "/api/v1/feedback",
            list_feedback,
            "Citizen feedback, newest first",
            "feedback",
            {"type": "array", "items": S.FEEDBACK},
            query=(AREA_Q, Param("status", S.FEEDBACK_STATUS), LIMIT),
        ),
        Op(
            "POST",
            "/api/v1/feedback",
            receive_feedback,
            "Record feedback received (operator over the area)",
            "feedback",
            S.FEEDBACK,
            201,
            body=S.FEEDBACK_IN,
        ),
        Op(
            "GET",
            "/api/v1/feedback/{feedback_id}",
            get_feedback,
            "One feedback item",
            "feedback",
            S.FEEDBACK,
            path_schemas={"feedback_id": ID},
        ),
        Op(
            "POST",
            "/api/v1/feedback/{feedback_id}/assign",
            assign_feedback,
            "Hand to someone",
            "feedback",
            S.FEEDBACK,
            body=S.ASSIGN_IN,
            path_schemas={"feedback_id": ID},
        ),
        Op(
            "POST",
            "/api/v1/feedback/{feedback_id}/answer",
            answer_feedback,
            "Record the answer",
            "feedback",
            S.FEEDBACK,
            body=S.ANSWER_IN,
            path_schemas={"feedback_id": ID},
        ),
        Op(
            "POST",
            "/api/v1/feedback/{feedback_id}/close",
            close_feedback,
            "Close",
            "feedback",
            S.FEEDBACK,
            body=S.EMPTY,
            path_schemas={"feedback_id": ID},
        ),
        Op(
            "GET",
            "/api/v1/kpi/plans",
            list_plans,
            "Plans whose area you view",
            "kpi",
            {"type": "array", "items": S.PLAN},
        ),
        Op(
            "GET",
            "/api/v1/kpi/report",
            kpi_report,
            "A plan's report as of a date (json, html with SVG charts, csv)",
            "kpi",
            {"type": "object"},
            query=(
                Param(
                    "plan", {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}, required=True
                ),
                Param("as_of", S.DATE),
                Param("format", {"enum": ["json", "html", "csv"]}),
                Param("lang", {"enum": ["vi", "en"]}),
            ),
        ),
    ]


OPS: list[Op] = _ops()


# ----------------------------------------------------------------------------------------------
# OpenAPI
# ----------------------------------------------------------------------------------------------

_ERRORS = {
    "400": "malformed request: the field and the reason",
    "401": "not authenticated",
    "403": "not allowed: role, area scope, special permission or CSRF",
    "404": "unknown id, code or path",
    "409": "not allowed in the current state, or already exists",
    "422": "refused by a domain rule: the field and the reason",
    "429": "rate limited; see Retry-After",
}


def openapi(
    extra: Sequence[tuple[str, str, dict[str, Any]]] = (), ops: Sequence[Op] | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``ops`` (default ``OPS``) plus hand-described paths."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPS if ops is None else ops:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": [
                {"name": n, "in": "path", "required": True, "schema": s}
                for n, s in op.path_schemas.items()
            ]
            + [
                {
                    "name": p.name,
                    "in": "query",
                    "required": p.required,
                    "schema": p.schema,
                    **({"description": p.description} if p.description else {}),
                }
                for p in op.query
            ],
            "responses": {},
        }
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": op.body}},
            }
        ok: dict[str, Any] = {"description": "success"}
        if op.response is not None:
            ok["content"] = {op.media: {"schema": op.response}}
            if op.handler is kpi_report:
                ok["content"]["text/html"] = {"schema": {"type": "string"}}
                ok["content"]["text/csv"] = {"schema": {"type": "string"}}
        item["responses"][str(op.status)] = ok
        for code in _ERRORS:
            if op.public and code in ("401", "403", "429"):
                continue
            item["responses"][code] = {"$ref": "#/components/responses/Error" + code}
        if op.public:
            item["security"] = []
        paths.setdefault(op.path, {})[op.method.lower()] = item
    for path, method, item in extra:
        paths.setdefault(path, {})[method] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tcs-core province server",
            "version": "1",
            "description": "Hệ thống thông tin nguồn cấp tỉnh: the province server example.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token from POST /api/v1/tokens",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "tcs_session",
                    "description": "dashboard session; unsafe methods also need the "
                    "X-CSRF-Token header from GET /api/v1/session",
                },
            },
            "schemas": {"Error": S.ERROR},
            "responses": {
                "Error" + code: {
                    "description": text_,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for code, text_ in _ERRORS.items()
            },
        },
    }


def wrap(op: Op) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of an operation: validate, run, turn errors into JSON."""

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        try:
            path, query, body = await op.parse(request)
            ctx = Ctx(request, state, request.get(USER, ""), path, query, body)
            result = await op.handler(ctx)
        except ApiError as err:
            return error_response(request, err)
        except TcsError as exc:
            return error_response(request, from_core(exc))
        if isinstance(result, web.StreamResponse):
            return result
        if op.status == 204:
            return web.Response(status=204)
        return web.json_response(
            result, status=op.status, dumps=lambda o: json.dumps(o, ensure_ascii=False)
        )

    handle.__name__ = op.operation_id
    return handle
