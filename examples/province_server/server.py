"""The aiohttp application: API routes, authentication, dashboard, live events, metrics."""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from tcs_core import SourceSystem
from tcs_core.scheduler import Scheduler

from . import dashboard
from .api import (
    OPS,
    SID,
    STATE,
    USER,
    VIA,
    ApiError,
    Op,
    error_response,
    lang_of,
    openapi,
    wrap,
)
from .auth import CredentialStore
from .config import ServerConfig
from .live import LiveHub, Metrics
from .state import State

__all__ = ["create_app", "credentials", "openapi_document", "serve"]

log = logging.getLogger("province_server")

STATIC = Path(__file__).resolve().parent / "static"
HUB = web.AppKey("tcs_hub", LiveHub)
METRICS = web.AppKey("tcs_metrics", Metrics)
SCHEDULER_OWNED = web.AppKey("tcs_scheduler_owned", bool)
OPENAPI = web.AppKey("tcs_openapi", dict)
SESSION_COOKIE = "tcs_session"
LOGIN_COOKIE = "tcs_login"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Paths anyone may reach; everything else needs a token or a session.
PUBLIC = ("/healthz", "/openapi.json", "/login", "/static/", "/favicon.ico")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _client(request: web.Request) -> str:
    return request.remote or "?"


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path in ("/metrics", "/openapi.json")


def _route(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    return info.route.resource.canonical if info.route.resource is not None else "unmatched"


@web.middleware
async def metrics_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request; turn HTTP errors on API paths into JSON errors."""
    started = time.perf_counter()
    route = _route(request)
    m = request.app[METRICS]
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        if not resp.prepared:
            resp.headers.setdefault("X-Content-Type-Options", "nosniff")
            resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp
    except web.HTTPException as exc:
        status = exc.status
        if not _is_api(request) or exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(
            request,
            ApiError(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason, headers=headers),
        )
    finally:
        if not request.path.startswith("/static/"):
            m.requests.labels(request.method, route, str(status)).inc()
            m.latency.labels(route).observe(time.perf_counter() - started)


def _refuse(request: web.Request, err: ApiError) -> web.StreamResponse:
    if _is_api(request):
        return error_response(request, err)
    if err.status == 401:
        raise web.HTTPSeeOther("/login")
    return web.Response(status=err.status, text=err.message)


def _limited(request: web.Request, kind: str, wait: float) -> ApiError:
    request.app[METRICS].rate_limited.labels(kind).inc()
    return ApiError(
        429,
        "rate_limited",
        f"too many requests; retry in {math.ceil(wait)} s",
        headers={"Retry-After": str(math.ceil(wait))},
    )


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token or session cookie → username; CSRF on cookie-authenticated writes."""
    if request.match_info.http_exception is not None:
        return await handler(request)  # 404 / 405 answer as they are
    state = request.app[STATE]
    m = request.app[METRICS]
    path = request.path
    public = any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC)
    if path == "/metrics" and state.config.metrics_public:
        public = True
    auth = request.headers.get("Authorization")
    user: str | None = None
    if auth is not None:
        ip = "ip:" + _client(request)
        wait = state.bad_token_limiter.blocked(ip)  # type: ignore[union-attr]
        if wait > 0:
            return _refuse(request, _limited(request, "bad_token", wait))
        scheme, _, token = auth.partition(" ")
        info = state.creds.token_user(token.strip()) if scheme.lower() == "bearer" else None
        if info is None:
            m.auth_failures.labels("token").inc()
            wait = state.bad_token_limiter.take(ip)  # type: ignore[union-attr]
            if wait > 0:
                return _refuse(request, _limited(request, "bad_token", wait))
            return _refuse(
                request,
                ApiError(401, "unauthenticated", "the API token is unknown, revoked or expired"),
            )
        wait = state.token_limiter.take(info.id)  # type: ignore[union-attr]
        if wait > 0:
            return _refuse(request, _limited(request, "token", wait))
        user, request[VIA] = info.username, "token"
    elif SESSION_COOKIE in request.cookies:
        sid = request.cookies[SESSION_COOKIE]
        user = state.creds.session_user(sid)
        if user is not None:
            request[VIA], request[SID] = "session", sid
            # /login and /logout check their own form tokens.
            if request.method in UNSAFE and path not in ("/login", "/logout"):
                sent = request.headers.get("X-CSRF-Token", "")
                if not secrets.compare_digest(sent, state.creds.csrf_token(sid)):
                    m.auth_failures.labels("csrf").inc()
                    return _refuse(
                        request,
                        ApiError(
                            403,
                            "csrf",
                            "missing or wrong X-CSRF-Token header (GET /api/v1/session)",
                            "X-CSRF-Token",
                            "must match the session's token",
                        ),
                    )
    if user is not None:
        p = state.system.principals.get(user)
        if p is None or p.disabled:
            return _refuse(request, ApiError(403, "forbidden", f"principal {user!r} is disabled"))
        request[USER] = user
    elif not public:
        return _refuse(
            request,
            ApiError(401, "unauthenticated", "send Authorization: Bearer <token> or log in"),
        )
    return await handler(request)


# -- pages ------------------------------------------------------------------------------------


def _lang(request: web.Request) -> str:
    return (
        lang_of(request)
        if "lang" in request.query or "tcs_lang" in request.cookies
        else (request.app[STATE].config.default_lang)
    )


def _html(request: web.Request, text: str, status: int = 200) -> web.Response:
    resp = web.Response(text=text, content_type="text/html", charset="utf-8", status=status)
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'self'; form-action 'self'"
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    if "lang" in request.query and request.query["lang"] in ("vi", "en"):
        resp.set_cookie(
            "tcs_lang", request.query["lang"], max_age=365 * 86400, samesite="Strict", path="/"
        )
    return resp


async def login_form(
    request: web.Request, error: str = "", status: int = 200, username: str = ""
) -> web.Response:
    state = request.app[STATE]
    nonce = secrets.token_urlsafe(16)
    resp = _html(
        request,
        dashboard.login_page(_lang(request), state.creds.login_csrf(nonce), error, username),
        status,
    )
    resp.set_cookie(
        LOGIN_COOKIE,
        nonce,
        httponly=True,
        samesite="Strict",
        path="/login",
        secure=state.config.cookie_secure,
    )
    return resp


async def login_get(request: web.Request) -> web.StreamResponse:
    if USER in request:
        raise web.HTTPSeeOther("/dashboard")
    return await login_form(request)


async def login_post(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    t = dashboard.T[_lang(request)]
    form = await request.post()
    username = str(form.get("username", ""))[:64].strip().lower()
    password = str(form.get("password", ""))[:256]
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not secrets.compare_digest(
        str(form.get("csrf", "")), state.creds.login_csrf(nonce)
    ):
        request.app[METRICS].auth_failures.labels("login_csrf").inc()
        return await login_form(request, t["login.csrf"], 403, username)
    for key in ("ip:" + _client(request), "user:" + username):
        wait = state.login_limiter.take(key)  # type: ignore[union-attr]
        if wait > 0:
            request.app[METRICS].rate_limited.labels("login").inc()
            resp = await login_form(
                request, t["login.limited"].format(s=math.ceil(wait)), 429, username
            )
            resp.headers["Retry-After"] = str(math.ceil(wait))
            return resp
    p = state.system.principals.get(username)
    if not state.creds.check_password(username, password) or p is None or p.disabled:
        request.app[METRICS].auth_failures.labels("login").inc()
        log.info("failed login for %r from %s", username, _client(request))
        return await login_form(request, t["login.failed"], 401, username)
    log.info("%s logged in from %s", username, _client(request))
    sid = state.creds.start_session(username, state.config.session_ttl_s)
    resp = web.HTTPSeeOther("/dashboard")
    resp.set_cookie(
        SESSION_COOKIE,
        sid,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=state.config.cookie_secure,
        max_age=int(state.config.session_ttl_s),
    )
    resp.del_cookie(LOGIN_COOKIE, path="/login")
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    sid = request.get(SID)
    form = await request.post()
    if sid is not None and secrets.compare_digest(
        str(form.get("csrf", "")), state.creds.csrf_token(sid)
    ):
        state.creds.end_session(sid)
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(SESSION_COOKIE, path="/")
    raise resp


def _dashboard(section: str) -> Handler:
    async def show(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        if request.get(VIA) != "session":
            raise web.HTTPSeeOther("/login")
        p = state.system.principals.get(request[USER])
        assert p is not None
        session = {
            "username": request[USER],
            "grants": [{"role": g.role.value, "area": state.area_ref(g.area_id)} for g in p.grants],
            "permissions": sorted(x.value for x in p.permissions),
        }
        csrf = state.creds.csrf_token(request[SID])
        return _html(request, dashboard.page(section, _lang(request), session, csrf))

    show.__name__ = f"dashboard_{section}"
    return show


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/dashboard" if USER in request else "/login")


# -- events, metrics, OpenAPI -----------------------------------------------------------------


EVENTS_DOC: dict[str, Any] = {
    "operationId": "events",
    "summary": "Live device status, broadcast and dispatch progress (server-sent events)",
    "tags": ["live"],
    "parameters": [
        {
            "name": "area",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,32}$"},
        }
    ],
    "responses": {
        "200": {
            "description": "event: device | broadcast | dispatch; data: JSON",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        "401": {"$ref": "#/components/responses/Error401"},
        "403": {"$ref": "#/components/responses/Error403"},
        "404": {"$ref": "#/components/responses/Error404"},
        "429": {"$ref": "#/components/responses/Error429"},
    },
}
METRICS_DOC: dict[str, Any] = {
    "operationId": "metrics",
    "summary": "Prometheus metrics (text exposition format)",
    "tags": ["meta"],
    "security": [],
    "responses": {
        "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
    },
}


async def events(request: web.Request) -> web.StreamResponse:
    from tcs_core import TcsError

    from .api import from_core

    state = request.app[STATE]
    code = request.query.get("area")
    try:
        if code is not None and not (0 < len(code) <= 32):
            raise ApiError(
                400,
                "invalid_request",
                "query.area: give an area code",
                "query.area",
                "give an area code",
            )
        visible = state.visible_areas(request[USER], code)
    except ApiError as err:
        return error_response(request, err)
    except TcsError as exc:
        return error_response(request, from_core(exc))
    return await request.app[HUB].stream(request, request[USER], visible)


async def metrics(request: web.Request) -> web.StreamResponse:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.StreamResponse:
    doc = request.app[OPENAPI]
    return web.json_response(doc, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def openapi_document(ops: Iterable[Op] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 document the app serves at /openapi.json (with ``ops`` added)."""
    return openapi(
        [("/api/v1/events", "get", EVENTS_DOC), ("/metrics", "get", METRICS_DOC)],
        [*OPS, *ops],
    )


# -- the factory ------------------------------------------------------------------------------


def _bootstrap(system: SourceSystem, config: ServerConfig, creds: CredentialStore) -> None:
    """First start: create the administrator (password from the environment / config file)."""
    if config.admin_password is None:
        return
    if not len(system.principals):
        system.bootstrap_admin(config.admin_username)
        log.info("created the first administrator %s", config.admin_username)
    if system.principals.get(config.admin_username) is None:
        log.warning("no principal %s: the admin password was not set", config.admin_username)
        return
    if not creds.has_password(config.admin_username):
        creds.set_password(config.admin_username, config.admin_password)


def create_app(
    system: SourceSystem,
    *,
    config: ServerConfig,
    scheduler: Scheduler | None = None,
    registry: CollectorRegistry | None = None,
    credentials: CredentialStore | None = None,
    start_scheduler: bool = False,
    ops: Iterable[Op] = (),
) -> web.Application:
    """The province server for ``system``.

    ``scheduler``: shown in /healthz and /metrics; started and stopped with the app if
    ``start_scheduler``. ``registry``: the Prometheus registry to add the server's metrics to
    (default: a new one). ``credentials``: the credential store (default: ``config.auth_db``).
    ``ops``: more operations (e.g. a deployment's own endpoints): routed, validated,
    authenticated and documented exactly like the built-in ones.
    """
    ops = list(ops)
    creds = credentials or CredentialStore(config.auth_db, config.session_key)
    _bootstrap(system, config, creds)
    state = State(system, config, creds, scheduler)
    app = web.Application(
        middlewares=[metrics_and_errors, authenticate], client_max_size=256 * 1024
    )
    app[STATE] = state
    m = Metrics(state, registry)
    app[METRICS] = m
    app[HUB] = LiveHub(state, m)
    app[SCHEDULER_OWNED] = bool(scheduler is not None and start_scheduler)
    if scheduler is not None:
        _scheduler_metrics(m, scheduler)
    for op in [*OPS, *ops]:
        app.router.add_route(op.method, op.path, wrap(op), name=op.operation_id)
    app.router.add_get("/api/v1/events", events, name="events")
    app.router.add_get("/metrics", metrics, name="metrics")
    app.router.add_get("/openapi.json", openapi_json, name="openapi")
    app[OPENAPI] = openapi_document(ops)
    app.router.add_get("/", root)
    app.router.add_get("/login", login_get)
    app.router.add_post("/login", login_post)
    app.router.add_post("/logout", logout)
    for section in dashboard.SECTIONS:
        path = "/dashboard" if section == "devices" else f"/dashboard/{section}"
        app.router.add_get(path, _dashboard(section))
    app.router.add_static("/static/", STATIC, name="static")

    async def on_startup(app: web.Application) -> None:
        if app[SCHEDULER_OWNED] and scheduler is not None:
            await scheduler.start()
        await app[HUB].start()

    async def on_cleanup(app: web.Application) -> None:
        await app[HUB].stop()
        if app[SCHEDULER_OWNED] and scheduler is not None:
            await scheduler.stop()
        if credentials is None:
            creds.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def _scheduler_metrics(m: Metrics, scheduler: Scheduler) -> None:
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.registry import Collector

    class SchedulerCollector(Collector):
        def collect(self) -> Any:
            s = scheduler.stats
            for name in (
                "dispatches",
                "deliveries",
                "delivered",
                "failed",
                "retries",
                "preemptions",
                "misfires",
            ):
                c = CounterMetricFamily(f"tcs_scheduler_{name}", f"Scheduler {name}")
                c.add_metric([], float(getattr(s, name)))
                yield c

    m.registry.register(SchedulerCollector())


def credentials(app: web.Application) -> CredentialStore:
    """The app's credential store: set passwords, issue tokens (e.g. for a demo's accounts)."""
    return app[STATE].creds


async def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Start serving ``app``; returns the runner (``await runner.cleanup()`` stops) and the port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = [a for a in runner.addresses if isinstance(a, tuple)]
    return runner, int(bound[0][1]) if bound else port
