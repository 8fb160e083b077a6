"""The province server's REST API over real HTTP on 127.0.0.1: endpoints, validation, auth.

The server is ``examples/province_server`` (aiohttp) in a background thread with an in-memory
store; clients use the standard library. Every refused request is checked to store nothing: the
store's newest notification id is the same before and after.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tcs_core import Settings, SourceSystem, ValidationError
from tcs_core.memory import MemoryTransport
from tcs_core.scheduler import RealClock, Scheduler

for _dep in ("jsonschema", "prometheus_client"):  # the server extra's dependencies
    pytest.importorskip(_dep, reason="pip install -e '.[server]' (jsonschema, prometheus-client)")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from province_server import Ctx, Op, ServerConfig, create_app  # noqa: E402
from province_server.api import OPS, STATE  # noqa: E402
from province_server.sample import Client, ServerThread, seed, write_plan  # noqa: E402

PASSWORD = "mật-khẩu-thử-nghiệm-" + "x" * 4


def config(tmp: Path, **overrides: Any) -> ServerConfig:
    env = {"TCS_SERVER_SESSION_KEY": secrets.token_hex(32), "TCS_ADMIN_PASSWORD": PASSWORD}
    values: dict[str, Any] = {
        "auth_db": str(tmp / "auth.sqlite"),
        "plans_dir": str(tmp / "plans"),
        "live_poll_s": 0.1,
    }
    values.update(overrides)
    return ServerConfig.from_env(env, **values)


class Env:
    """A running server, its store and a token per principal."""

    def __init__(
        self, tmp: Path, scheduler: bool = False, store: str = "memory", **overrides: Any
    ) -> None:
        settings = (
            Settings.sqlite(str(tmp / "tcs.sqlite")) if store == "sqlite" else Settings.in_memory()
        )
        self.system = SourceSystem(settings)
        self.devices = seed(self.system)
        write_plan(tmp / "plans")
        self.transport = MemoryTransport("memory")
        cfg = config(tmp, **overrides)

        def factory() -> Any:
            sched = Scheduler(self.system, [self.transport], RealClock()) if scheduler else None
            return create_app(self.system, config=cfg, scheduler=sched, start_scheduler=scheduler)

        self.server = ServerThread(factory)
        self.tokens: dict[str, str] = {}

    def __enter__(self) -> Env:
        self.server.__enter__()
        state = self.state
        for name in (
            "admin",
            "operator.a",
            "approver.a",
            "viewer.a",
            "viewer.b",
            "operator.p",
            "approver.p",
            "admin.a",
        ):
            self.tokens[name] = state.creds.issue_token(name, "test", timedelta(days=1)).secret
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def state(self) -> Any:
        assert self.server.app is not None
        return self.server.app[STATE]

    def client(self, user: str | None = None) -> Client:
        return Client(self.server.url, self.tokens[user] if user else None)

    def position(self) -> int:
        return int(self.system.recorder.max_notification_id() or 0)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with Env(tmp_path_factory.mktemp("server")) as e:
        yield e


def soon(minutes: int = 30) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0).isoformat()


def bulletin(area: str = "A", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Lịch tiêm chủng mở rộng",
        "category": "health",
        "priority": "normal",
        "content": {
            "audio": {"type": "speech", "text": "Trạm y tế xã tiêm chủng sáng thứ Hai."},
            "board": {"text": "TIÊM CHỦNG MỞ RỘNG"},
        },
        "targets": {"areas": [area], "channels": ["audio", "board"]},
        "schedule": {"kind": "once", "instants": [soon()], "zone": "Asia/Ho_Chi_Minh"},
    }
    body.update(overrides)
    return body


def refused(
    env: Env, client: Client, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """Send a request that must be refused; assert it stored nothing; return status, error."""
    before = env.position()
    status, data, _ = client.request(method, path, body, raw=raw)
    assert status >= 400, (status, data)
    assert env.position() == before, f"{method} {path} was refused ({status}) but stored events"
    assert set(data["error"]) >= {"status", "code", "title", "message", "field", "reason"}
    return status, data["error"]


# ----------------------------------------------------------------------------------------------


def test_openapi_document_is_built_from_the_validators_schemas(env: Env) -> None:
    """/openapi.json lists every operation, and each request body schema in it is exactly the
    schema the handler validates with (one object, so the two cannot drift)."""
    status, doc, _ = env.client().get("/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    for op in OPS:
        item = doc["paths"][op.path][op.method.lower()]
        assert item["operationId"] == op.operation_id
        if op.body is not None:
            assert item["requestBody"]["content"]["application/json"]["schema"] == op.body
            assert op.validators["body"].schema is op.body
    assert "/api/v1/events" in doc["paths"] and "/metrics" in doc["paths"]
    assert len(OPS) >= 40


def test_broadcast_lifecycle_through_the_api(env: Env) -> None:
    """Draft, revise, submit, reject, revise, submit, approve, schedule, cancel: each answer is
    the broadcast as it now is; four eyes hold (the approver is not the author)."""
    op, ap = env.client("operator.a"), env.client("approver.p")
    status, b, _ = op.post("/api/v1/broadcasts", bulletin())
    assert status == 201 and b["status"] == "drafted" and b["author"] == "operator.a"
    bid = b["id"]
    status, b, _ = op.request(
        "PUT", f"/api/v1/broadcasts/{bid}", bulletin(title="Lịch tiêm chủng (sửa)")
    )
    assert status == 200 and b["title"] == "Lịch tiêm chủng (sửa)"
    assert op.post(f"/api/v1/broadcasts/{bid}/submit")[1]["status"] == "submitted"
    status, b, _ = ap.post(f"/api/v1/broadcasts/{bid}/reject", {"reason": "Thiếu địa điểm"})
    assert status == 200 and b["status"] == "rejected" and b["reason"] == "Thiếu địa điểm"
    assert op.request("PUT", f"/api/v1/broadcasts/{bid}", bulletin())[0] == 200
    assert op.post(f"/api/v1/broadcasts/{bid}/submit")[0] == 200
    status, b, _ = ap.post(f"/api/v1/broadcasts/{bid}/approve")
    assert status == 200 and b["status"] == "approved" and b["approved_by"] == "approver.p"
    status, b, _ = op.post(f"/api/v1/broadcasts/{bid}/schedule", {"at": None})
    assert status == 200 and b["status"] == "scheduled"
    status, b, _ = op.post(f"/api/v1/broadcasts/{bid}/cancel", {"reason": "Hoãn"})
    assert status == 200 and b["status"] == "cancelled"
    listed = env.client("viewer.a").get("/api/v1/broadcasts?status=cancelled")[1]
    assert bid in [x["id"] for x in listed]
    assert env.client("viewer.b").get(f"/api/v1/broadcasts/{bid}")[0] == 403
    assert env.client("viewer.a").get(f"/api/v1/broadcasts/{bid}/dispatches")[1] == []


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"title": None}, 400, "body.title"),
        ({"extra": 1}, 400, "body.extra"),
        ({"category": "gossip"}, 400, "body.category"),
        ({"priority": "urgent"}, 400, "body.priority"),
        (
            {"schedule": {"kind": "once", "instants": ["2026-01-01T07:00:00"]}},
            400,
            "body.schedule.instants.0",
        ),
        ({"schedule": {"kind": "cron", "cron": "61 * * * *"}}, 422, "schedule.cron"),
        ({"schedule": {"kind": "once", "instants": [soon(), soon(60)]}}, 422, "schedule.instants"),
        ({"schedule": {"kind": "once", "instants": [soon()], "zone": "Mars/Olympus"}}, 422, "zone"),
        ({"content": {"audio": {"type": "speech", "text": "x"}}}, 422, "content"),
        ({"targets": {"areas": ["ZZZ"], "channels": ["audio", "board"]}}, 404, None),
        ({"title": "   "}, 422, "title"),
    ],
)
def test_bad_broadcasts_get_a_field_and_a_reason_and_store_nothing(
    env: Env, change: dict[str, Any], status: int, field: str | None
) -> None:
    """Schema errors are 400, domain rules 422, unknown areas 404; each names the field at
    fault and the reason, and nothing is recorded."""
    body = bulletin()
    for k, v in change.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = v
    got, err = refused(env, env.client("operator.a"), "POST", "/api/v1/broadcasts", body)
    assert got == status, err
    assert err["field"] == field, err
    assert err["message"]
    if field:
        assert err["reason"]


def test_malformed_requests_are_refused_cleanly(env: Env) -> None:
    """Non-JSON bodies, NaN, a bad uuid in the path and a bad query value are 400s; an unknown
    id is 404; a command in the wrong state is 409; an unknown method is 405."""
    c = env.client("admin")
    assert refused(env, c, "POST", "/api/v1/broadcasts", raw=b"{not json")[1]["field"] == "body"
    assert refused(env, c, "POST", "/api/v1/areas", raw=b'{"code": NaN}')[0] == 400
    assert refused(env, c, "POST", "/api/v1/broadcasts/not-a-uuid/submit", {})[1]["field"] == (
        "path.broadcast_id"
    )
    assert refused(env, c, "GET", "/api/v1/devices?limit=abc")[1]["field"] == "query.limit"
    assert refused(env, c, "GET", "/api/v1/devices?status=asleep")[1]["field"] == "query.status"
    missing = "00000000-0000-4000-8000-000000000000"
    assert refused(env, c, "POST", f"/api/v1/broadcasts/{missing}/approve", {})[0] == 404
    _, b, _ = env.client("operator.a").post("/api/v1/broadcasts", bulletin())
    assert (
        refused(env, env.client("approver.p"), "POST", f"/api/v1/broadcasts/{b['id']}/approve", {})[
            0
        ]
        == 409
    )
    status, _, headers = c.request("PATCH", "/api/v1/devices")
    assert status == 405 and "GET" in headers["Allow"]
    assert refused(env, Client(env.server.url), "GET", "/api/v1/devices")[0] == 401


def test_areas_devices_stations_facilities_feedback(env: Env) -> None:
    """Read and write the rest of the model: areas through time, devices with status, stations,
    facilities and feedback, each scoped to the areas the caller views."""
    admin, op = env.client("admin"), env.client("operator.a")
    _, tree, _ = admin.get("/api/v1/areas/P")
    assert [a["code"] for a in tree["children"]] == ["A", "B"]
    assert admin.get("/api/v1/areas?parent=P&at=2019-06-01")[0] == 404  # P did not exist yet
    status, area, _ = admin.post(
        "/api/v1/areas",
        {
            "code": "A1",
            "name": "Thôn 1",
            "kind": "village",
            "parent": "A",
            "effective": "2024-01-01",
        },
    )
    assert status == 201 and area["parent"]["code"] == "A"
    _, devices, _ = env.client("viewer.a").get("/api/v1/devices")
    assert {d["area"]["code"] for d in devices} == {"A"} and len(devices) == 3
    assert env.client("viewer.a").get("/api/v1/devices?area=B")[0] == 403
    did = str(env.devices["A"][2])
    status, d, _ = op.post(
        f"/api/v1/devices/{did}/status", {"status": "fault", "reason": "mất điện"}
    )
    assert status == 200 and d["status"] == "fault"
    status, s, _ = admin.post(
        "/api/v1/stations",
        {
            "name": "Đài truyền thanh xã An Phú",
            "area": "A",
            "kind": "wired",
            "commissioned_year": 2010,
            "condition": "degraded",
            "effective": "2024-01-01",
        },
    )
    assert status == 201 and s["kind"] == "wired"
    status, s, _ = admin.post(f"/api/v1/stations/{s['id']}/convert", {"effective": "2025-03-01"})
    assert status == 200 and s["kind"] == "ip" and s["converted_on"] == "2025-03-01"
    assert [x["id"] for x in env.client("viewer.a").get("/api/v1/stations")[1]] == [s["id"]]
    assert env.client("viewer.b").get("/api/v1/stations")[1] == []
    status, f, _ = admin.post(
        "/api/v1/facilities",
        {"name": "Cổng TTĐT xã An Phú", "kind": "website", "area": "A", "effective": "2024-02-01"},
    )
    assert status == 201
    status, f, _ = admin.post(f"/api/v1/facilities/{f['id']}/connect", {"effective": "2024-03-01"})
    assert status == 200 and f["connected_on"] == "2024-03-01"
    status, fb, _ = op.post(
        "/api/v1/feedback",
        {"text": "Loa thôn 2 nhỏ quá", "channel": "hotline", "sender_ref": "tel:0912", "area": "A"},
    )
    assert status == 201 and fb["status"] == "received"
    assert op.post(f"/api/v1/feedback/{fb['id']}/assign", {"assignee": "operator.a"})[0] == 200
    status, fb, _ = op.post(f"/api/v1/feedback/{fb['id']}/answer", {"text": "Đã chỉnh âm lượng"})
    assert status == 200 and fb["answer"] == "Đã chỉnh âm lượng"
    assert op.post(f"/api/v1/feedback/{fb['id']}/close")[1]["status"] == "closed"
    assert (
        refused(
            env,
            env.client("operator.a"),
            "POST",
            "/api/v1/feedback",
            {"text": "x", "channel": "sms", "sender_ref": "tel:1", "area": "B"},
        )[0]
        == 403
    )


def test_kpi_report_as_json_and_html_with_charts(env: Env) -> None:
    """A plan over the province is listed to its viewers; its report comes as JSON and as the
    KPI module's HTML with one inline SVG chart per target."""
    _, plans, _ = env.client("viewer.a").get("/api/v1/kpi/plans")
    assert plans == []  # a commune viewer does not view the province's plan
    c = env.client("approver.p")
    _, plans, _ = c.get("/api/v1/kpi/plans")
    assert [p["id"] for p in plans] == ["thu-nghiem"]
    status, report, _ = c.get("/api/v1/kpi/report?plan=thu-nghiem&as_of=2025-06-01")
    assert status == 200 and isinstance(report, dict)
    status, html, headers = c.get("/api/v1/kpi/report?plan=thu-nghiem&format=html&lang=en")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert html.count('class="kpi-chart"') == 2
    assert c.get("/api/v1/kpi/report?plan=nope")[0] == 404


def test_tokens_are_shown_once_stored_hashed_and_revocable(env: Env) -> None:
    """POST /tokens returns the secret once; listings never show it; the database holds only
    its SHA-256; a revoked token is refused; only a global admin issues tokens for others."""
    op = env.client("operator.a")
    status, issued, _ = op.post("/api/v1/tokens", {"label": "máy trạm"})
    assert status == 201 and issued["token"].startswith("tcs_")
    secret = issued["token"]
    listed = op.get("/api/v1/tokens")[1]
    assert issued["info"]["id"] in [t["id"] for t in listed]
    assert secret not in json.dumps(listed)
    db = sqlite3.connect(env.state.config.auth_db)
    dump = "\n".join(db.iterdump())
    assert secret not in dump and secret.split("_")[2] not in dump
    mine = Client(env.server.url, secret)
    assert mine.get("/api/v1/session")[1]["username"] == "operator.a"
    assert op.request("DELETE", f"/api/v1/tokens/{issued['info']['id']}")[0] == 204
    assert mine.get("/api/v1/session")[0] == 401
    assert op.post("/api/v1/tokens", {"label": "x", "username": "admin"})[0] == 403
    assert (
        env.client("admin").post("/api/v1/tokens", {"label": "x", "username": "viewer.b"})[0] == 201
    )


def test_dashboard_session_needs_the_csrf_token_for_writes(env: Env) -> None:
    """A logged-in browser session reads freely, but a write without the session's
    X-CSRF-Token header is refused (403) and stores nothing; with it, it goes through."""
    env.state.creds.set_password("operator.a", PASSWORD)
    c = Client(env.server.url)
    assert c.login("operator.a", PASSWORD) == 200 and c.csrf
    assert c.get("/api/v1/session")[1]["via"] == "session"
    csrf, c.csrf = c.csrf, None
    status, err = refused(env, c, "POST", "/api/v1/broadcasts", bulletin())
    assert status == 403 and err["code"] == "csrf"
    c.csrf = "0" * 64
    assert refused(env, c, "POST", "/api/v1/broadcasts", bulletin())[0] == 403
    c.csrf = csrf
    assert c.post("/api/v1/broadcasts", bulletin())[0] == 201
    assert Client(env.server.url).login("operator.a", "wrong-password-123") == 401


def test_login_and_token_use_are_rate_limited(tmp_path: Path) -> None:
    """Login attempts per address and user, and requests per token, are limited with 429 and
    Retry-After; guessing tokens is limited per address too."""
    with Env(
        tmp_path,
        login_burst=3,
        token_burst=5,
        token_rate=0.01,
        bad_token_burst=2,
        bad_token_rate=0.01,
    ) as e:
        c = Client(e.server.url)
        assert [c.login("admin", "sai-mat-khau-123") for _ in range(3)] == [401, 401, 401]
        assert c.login("admin", PASSWORD) == 429  # even the right password, once limited
        t = e.client("viewer.a")
        statuses = [t.get("/api/v1/session")[0] for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        status, _, headers = t.get("/api/v1/session")
        assert status == 429 and int(headers["Retry-After"]) >= 1
        guess = Client(e.server.url, "tcs_0000000000000000_guess")
        assert [guess.get("/api/v1/session")[0] for _ in range(3)] == [401, 401, 429]
        _, text, _ = Client(e.server.url).get("/metrics")
        assert 'tcs_rate_limited_total{kind="token"}' in text


def open_stream(env: Env, user: str) -> http.client.HTTPResponse:
    """An open /api/v1/events stream, its greeting read."""
    conn = http.client.HTTPConnection("127.0.0.1", env.server.port, timeout=10)
    conn.request("GET", "/api/v1/events", headers={"Authorization": f"Bearer {env.tokens[user]}"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream")
    assert r.readline().startswith(b"retry:")
    while r.readline().strip():  # the rest of the greeting, up to its blank line
        pass
    return r


def next_event(
    stream: http.client.HTTPResponse, kind: str, match: Any, timeout: float = 15.0
) -> dict[str, Any]:
    """The first ``kind`` event whose data satisfies ``match``."""
    deadline = time.monotonic() + timeout
    event = ""
    while time.monotonic() < deadline:
        line = stream.readline().decode().strip()
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == kind:
            data = json.loads(line.split(":", 1)[1])
            if match(data):
                return data  # type: ignore[no-any-return]
    raise AssertionError(f"no matching {kind} event within {timeout} s")


def test_live_events_stream_device_status_within_scope(env: Env) -> None:
    """/api/v1/events streams a device's status change to a viewer of its commune, and not to a
    viewer of another commune."""

    a, b = open_stream(env, "viewer.a"), open_stream(env, "viewer.b")
    time.sleep(0.3)
    did = str(env.devices["A"][0])
    assert (
        env.client("operator.a").post(f"/api/v1/devices/{did}/status", {"status": "maintenance"})[0]
        == 200
    )
    got = next_event(a, "device", lambda d: d["id"] == did)
    assert got["status"] == "maintenance"
    # B's stream stays quiet (a keep-alive would come only after 15 s): nothing within 1 s.
    b.fp.raw._sock.settimeout(1.0)  # type: ignore[union-attr]
    with pytest.raises(TimeoutError):
        b.read(1)


def test_metrics_in_prometheus_text_format(env: Env) -> None:
    """/metrics exposes request counts by route and status, and devices by status."""
    env.client("viewer.a").get("/api/v1/devices")
    status, text, headers = Client(env.server.url).get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'tcs_http_requests_total{method="GET",route="/api/v1/devices",status="200"}' in text
    assert 'tcs_devices{status="online"}' in text
    assert "tcs_store_position" in text


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_scheduler_dispatches_and_the_api_shows_the_outcomes(tmp_path: Path, store: str) -> None:
    """With a Scheduler (MemoryTransport) started by the app, an approved bulletin is dispatched
    at its instant; the dispatch, its per-device outcomes, today's schedule and the live stream
    show it (in memory, and on SQLite where the scheduler's writer thread records)."""
    with Env(tmp_path, scheduler=True, store=store) as e:
        op, ap = e.client("operator.a"), e.client("approver.p")
        at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
        body = bulletin(schedule={"kind": "once", "instants": [at], "duration_s": 1})
        bid = op.post("/api/v1/broadcasts", body)[1]["id"]
        op.post(f"/api/v1/broadcasts/{bid}/submit")
        stream = open_stream(e, "viewer.a")
        assert ap.post(f"/api/v1/broadcasts/{bid}/approve")[0] == 200
        progress = next_event(
            stream,
            "dispatch",
            lambda d: d["broadcast_id"] == bid and d["counts"]["delivered"] == 3,
        )
        assert progress["devices"] == 3 and progress["counts"]["pending"] == 0
        deadline = time.monotonic() + 15
        ds: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            ds = op.get(f"/api/v1/broadcasts/{bid}/dispatches")[1]
            if ds and ds[0]["counts"]["delivered"] == 3:
                break
            time.sleep(0.2)
        assert ds and ds[0]["counts"]["delivered"] == 3, ds
        _, detail, _ = op.get(f"/api/v1/dispatches/{ds[0]['id']}")
        assert {o["status"] for o in detail["outcomes"]} == {"delivered"}
        assert {o["device"] for o in detail["outcomes"]} >= {"Loa thôn 1 An Phú"}
        _, today, _ = op.get("/api/v1/schedule/today")
        items = [i for c in today["communes"] for i in c["items"] if i["broadcast_id"] == bid]
        assert len(items) == 1 and items[0]["dispatch"]["counts"]["delivered"] == 3
        assert len(e.transport.played) == 3


def test_config_takes_secrets_from_environment_or_file_never_literals(tmp_path: Path) -> None:
    """No session key → a clear error; a config file may name secrets as env:NAME or
    file:PATH, but a literal secret in the file is refused."""
    with pytest.raises(ValidationError, match="TCS_SERVER_SESSION_KEY"):
        ServerConfig.from_env({})
    key = secrets.token_hex(32)
    (tmp_path / "key").write_text(key)
    cfg_file = tmp_path / "server.toml"
    cfg_file.write_text(
        f'[server]\nsession_key = "file:{tmp_path / "key"}"\n'
        'admin_password = "env:ADMIN_PW"\nport = 9000\n'
    )
    cfg = ServerConfig.from_file(cfg_file, {"ADMIN_PW": PASSWORD})
    assert cfg.session_key == key and cfg.admin_password == PASSWORD and cfg.port == 9000
    assert key not in repr(cfg) and PASSWORD not in repr(cfg)
    cfg_file.write_text(f'[server]\nsession_key = "{key}"\n')
    with pytest.raises(ValidationError, match="env:NAME or file:PATH"):
        ServerConfig.from_file(cfg_file, {})


def test_command_line_serves_and_stops_cleanly(tmp_path: Path) -> None:
    """`python -m province_server` creates the admin from the environment, serves on the port
    it prints, and exits 0 on SIGTERM; without a session key it exits 2 with the reason."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "examples"),
        "TCS_SERVER_SESSION_KEY": secrets.token_hex(32),
        "TCS_ADMIN_PASSWORD": PASSWORD,
        "TCS_SERVER_AUTH_DB": str(tmp_path / "auth.sqlite"),
    }
    cmd = [
        sys.executable,
        "-m",
        "province_server",
        "--db",
        str(tmp_path / "tcs.sqlite"),
        "--port",
        "0",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.stderr else "")
        url = line.split()[3].rstrip("/")
        with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
            assert json.loads(r.read())["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with SourceSystem(Settings.sqlite(str(tmp_path / "tcs.sqlite"))) as store:
        assert store.principals.get("admin") is not None
    del env["TCS_SERVER_SESSION_KEY"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "TCS_SERVER_SESSION_KEY" in done.stderr


def test_passwords_change_with_the_old_one_or_by_an_admin_over_the_account(env: Env) -> None:
    """Users change their own dashboard password with the current one; an admin over all the
    account's areas may set it; a commune admin cannot set a province account's password."""
    creds = env.state.creds
    creds.set_password("viewer.a", PASSWORD)
    me = env.client("viewer.a")
    new = "mật-khẩu-mới-rất-dài"
    wrong = me.post("/api/v1/session/password", {"current_password": "x", "new_password": new})
    assert wrong[0] == 403 and wrong[1]["error"]["field"] == "current_password"
    short = me.post(
        "/api/v1/session/password", {"current_password": PASSWORD, "new_password": "ngắn"}
    )
    assert short[0] == 400 and short[1]["error"]["field"] == "body.new_password"
    ok = me.post("/api/v1/session/password", {"current_password": PASSWORD, "new_password": new})
    assert ok[0] == 204 and creds.check_password("viewer.a", new)
    admin_a = env.client("admin.a")
    assert admin_a.post("/api/v1/principals/viewer.a/password", {"password": PASSWORD})[0] == 204
    assert creds.check_password("viewer.a", PASSWORD)
    refused_ = admin_a.post("/api/v1/principals/operator.p/password", {"password": PASSWORD})
    assert refused_[0] == 403
    assert admin_a.post("/api/v1/principals/nobody/password", {"password": PASSWORD})[0] == 404


def test_a_deployment_adds_its_own_operations(tmp_path: Path) -> None:
    """``create_app(..., ops=[Op(...)])`` routes, validates, authenticates and documents an
    extra operation exactly like the built-in ones."""
    from tcs_core import Role

    async def greet(ctx: Ctx) -> Any:
        ctx.app.authorise(ctx.user, Role.OPERATOR, [ctx.app.area(ctx.body["area"]).area_id])
        return {"greeting": f"Xin chào {ctx.body['area']}", "by": ctx.user}

    body = {
        "type": "object",
        "properties": {"area": {"type": "string", "maxLength": 32}},
        "required": ["area"],
        "additionalProperties": False,
    }
    answer = {
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"],
    }
    op = Op(
        "POST", "/api/v1/greetings", greet, "Say hello to a commune", "extra", answer, body=body
    )
    system = SourceSystem(Settings.in_memory())
    seed(system)
    cfg = config(tmp_path)
    with ServerThread(lambda: create_app(system, config=cfg, ops=[op])) as server:
        token = server.app[STATE].creds.issue_token("operator.a", "t", timedelta(days=1))  # type: ignore[index]
        c = Client(server.url, token.secret)
        assert c.post("/api/v1/greetings", {"area": "A"})[1]["by"] == "operator.a"
        assert c.post("/api/v1/greetings", {"area": "B"})[0] == 403
        assert c.post("/api/v1/greetings", {"area": 7})[1]["error"]["field"] == "body.area"
        assert Client(server.url).post("/api/v1/greetings", {"area": "A"})[0] == 401
        doc = c.get("/openapi.json")[1]
        assert (
            doc["paths"]["/api/v1/greetings"]["post"]["requestBody"]["content"]["application/json"][
                "schema"
            ]
            == body
        )
