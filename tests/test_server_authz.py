"""Authorisation through the API: every role × (own commune, other commune, parent province)
× action answers as the design says, and a refusal stores nothing.

The expected answer is computed here from the design's rules, not by asking the core:
roles are ordered viewer < operator < approver < admin, each held over an area subtree; an
action needs a minimum role over its target area. A principal granted a role over commune A
therefore acts on A, never on its sibling B nor on the province P above it.
"""

from __future__ import annotations

import itertools
import secrets
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tcs_core import (
    SYSTEM,
    Category,
    Channel,
    ScheduleSpec,
    Settings,
    SmsContent,
    SourceSystem,
    SpeechContent,
    Targets,
)

for _dep in ("jsonschema", "prometheus_client"):  # the server extra's dependencies
    pytest.importorskip(_dep, reason="pip install -e '.[server]' (jsonschema, prometheus-client)")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from province_server import ServerConfig, create_app  # noqa: E402
from province_server.api import STATE  # noqa: E402
from province_server.sample import ROLES, Client, ServerThread, seed  # noqa: E402

RANK = {"viewer": 0, "operator": 1, "approver": 2, "admin": 3}
SCOPES = {"own": "A", "other": "B", "parent": "P"}
# The design's minimum role per action (DESIGN.md, docs/concepts.md).
NEED = {
    "list_devices": "viewer",
    "today_schedule": "viewer",
    "draft_broadcast": "operator",
    "submit_broadcast": "operator",
    "cancel_broadcast": "operator",
    "set_device_status": "operator",
    "receive_feedback": "operator",
    "approve_broadcast": "approver",
    "reject_broadcast": "approver",
    "register_device": "admin",
    "register_station": "admin",
    "create_area": "admin",
}


class World:
    def __init__(self, tmp: Path) -> None:
        self.system = SourceSystem(Settings.in_memory())
        seed(self.system)
        self.device_in = {
            "A": seed_device(self.system, "A"),
            "B": seed_device(self.system, "B"),
            "P": seed_device(self.system, "P"),
        }
        env = {"TCS_SERVER_SESSION_KEY": secrets.token_hex(32)}
        cfg = ServerConfig.from_env(env, auth_db=str(tmp / "auth.sqlite"), token_burst=10_000)
        self.server = ServerThread(lambda: create_app(self.system, config=cfg))
        self.tokens: dict[str, str] = {}
        self.n = itertools.count()

    def client(self, user: str) -> Client:
        if user not in self.tokens:
            creds = self.server.app[STATE].creds  # type: ignore[index]
            self.tokens[user] = creds.issue_token(user, "authz", timedelta(days=1)).secret
        return Client(self.server.url, self.tokens[user])

    def position(self) -> int:
        return int(self.system.recorder.max_notification_id() or 0)

    def broadcast(self, area: str, status: str = "drafted", **kw: Any) -> UUID:
        """A broadcast by operator.p (province operator with both permissions)."""
        app = self.system
        channels = kw.pop("channels", ["audio"])
        content = {Channel.AUDIO: SpeechContent("Thông báo họp dân")}
        if "sms" in channels:
            content = {Channel.SMS: SmsContent("Thông báo họp dân")}
        bid = app.draft_broadcast(
            f"Bản tin {next(self.n)}",
            category=Category.LOCAL_GOVERNMENT,
            content=content,
            targets=Targets(areas=[area], channels=channels),
            schedule=ScheduleSpec.once(datetime.now(UTC) + timedelta(hours=2)),
            actor="operator.p",
            **kw,
        )
        if status in ("submitted", "approved"):
            app.submit_broadcast(bid, actor="operator.p")
        if status == "approved":
            app.approve_broadcast(bid, actor="approver.p")
        return bid


def seed_device(app: SourceSystem, code: str) -> UUID:
    return app.register_device(
        f"Bảng tin {code}",
        "board",
        area=code,
        transport="memory",
        address=f"mem://{code}",
        channels=["board"],
        actor=SYSTEM,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("authz"))
    with w.server:
        yield w


def body_for(w: World, action: str, code: str) -> tuple[str, str, Any]:
    """(method, path, body) of ``action`` on the area ``code``; prerequisites made as needed."""
    n = next(w.n)
    if action == "list_devices":
        return "GET", f"/api/v1/devices?area={code}", None
    if action == "today_schedule":
        return "GET", f"/api/v1/schedule/today?area={code}", None
    if action == "draft_broadcast":
        return (
            "POST",
            "/api/v1/broadcasts",
            {
                "title": "Lịch cắt điện",
                "category": "local_government",
                "content": {"board": {"text": "Cắt điện 8:00-11:00"}},
                "targets": {"areas": [code], "channels": ["board"]},
                "schedule": {
                    "kind": "once",
                    "instants": [(datetime.now(UTC) + timedelta(hours=3)).isoformat()],
                },
            },
        )
    if action == "submit_broadcast":
        return "POST", f"/api/v1/broadcasts/{w.broadcast(code)}/submit", {}
    if action == "cancel_broadcast":
        return "POST", f"/api/v1/broadcasts/{w.broadcast(code)}/cancel", {"reason": "hoãn"}
    if action == "approve_broadcast":
        return "POST", f"/api/v1/broadcasts/{w.broadcast(code, 'submitted')}/approve", {}
    if action == "reject_broadcast":
        bid = w.broadcast(code, "submitted")
        return "POST", f"/api/v1/broadcasts/{bid}/reject", {"reason": "sai nội dung"}
    if action == "set_device_status":
        status = ["online", "offline"][n % 2]
        return "POST", f"/api/v1/devices/{w.device_in[code]}/status", {"status": status}
    if action == "receive_feedback":
        return (
            "POST",
            "/api/v1/feedback",
            {
                "text": "Loa hỏng",
                "channel": "hotline",
                "sender_ref": f"tel:09{n:08d}",
                "area": code,
            },
        )
    if action == "register_device":
        return (
            "POST",
            "/api/v1/devices",
            {
                "name": f"Loa {n}",
                "kind": "ip_speaker",
                "area": code,
                "transport": "memory",
                "address": f"mem://{n}",
                "channels": ["audio"],
            },
        )
    if action == "register_station":
        return (
            "POST",
            "/api/v1/stations",
            {
                "name": f"Đài {n}",
                "area": code,
                "kind": "fm",
                "commissioned_year": 2015,
                "effective": "2024-01-01",
            },
        )
    if action == "create_area":
        return (
            "POST",
            "/api/v1/areas",
            {
                "code": f"{code}.{n}",
                "name": f"Thôn {n}",
                "kind": "village",
                "parent": code,
                "effective": "2024-01-01",
            },
        )
    raise AssertionError(action)


CASES = list(itertools.product(ROLES, SCOPES, NEED))


@pytest.mark.parametrize(
    ("role", "scope", "action"), CASES, ids=[f"{r}-{s}-{a}" for r, s, a in CASES]
)
def test_authorisation_matrix(world: World, role: str, scope: str, action: str) -> None:
    """A principal with ``role`` over commune A may do ``action`` on A iff its role is at least
    the action's; never on the other commune B or the parent province P; refusals are 403 and
    store nothing."""
    allowed = RANK[role] >= RANK[NEED[action]] and scope == "own"
    method, path, body = body_for(world, action, SCOPES[scope])
    before = world.position()
    status, data, _ = world.client(f"{role}.a").request(method, path, body)
    if allowed:
        assert 200 <= status < 300, (status, data)
    else:
        assert status == 403, (status, data)
        assert data["error"]["code"] == "forbidden" and data["error"]["message"]
        assert world.position() == before, "a refused request stored events"


@pytest.mark.parametrize("action", sorted(NEED))
def test_a_province_grant_covers_its_communes(world: World, action: str) -> None:
    """A role over the province covers each commune in it (operator.p drafts for A, approver.p
    approves for B)."""
    user = "approver.p" if RANK[NEED[action]] <= RANK["approver"] else "admin"
    method, path, body = body_for(world, action, "A" if action != "approve_broadcast" else "B")
    status, data, _ = world.client(user).request(method, path, body)
    assert 200 <= status < 300, (status, data)


def test_commune_operator_limits(world: World) -> None:
    """A commune operator cannot target another commune, approve their own broadcast, send
    SMS or trigger an emergency; each refusal is 403 and stores nothing."""
    op = world.client("operator.a")

    def refused(method: str, path: str, body: Any) -> str:
        before = world.position()
        status, data, _ = op.request(method, path, body)
        assert status == 403, (status, data)
        assert world.position() == before
        return str(data["error"]["message"])

    def bulletin(areas: list[str], channels: list[str], priority: str = "normal") -> Any:
        content: dict[str, Any] = {}
        if "audio" in channels:
            content["audio"] = {"type": "speech", "text": "Bão số 3 đổ bộ"}
        if "sms" in channels:
            content["sms"] = {"text": "Bao so 3 do bo"}
        return {
            "title": "Cảnh báo",
            "category": "disaster",
            "priority": priority,
            "content": content,
            "targets": {"areas": areas, "channels": channels},
            "schedule": {
                "kind": "once",
                "instants": [(datetime.now(UTC) + timedelta(hours=1)).isoformat()],
            },
        }

    # Another commune, alone or next to its own.
    assert "over area B" in refused("POST", "/api/v1/broadcasts", bulletin(["B"], ["audio"]))
    refused("POST", "/api/v1/broadcasts", bulletin(["A", "B"], ["audio"]))
    # Its own broadcast: an operator is no approver, and four eyes would refuse anyway.
    status, b, _ = op.post("/api/v1/broadcasts", bulletin(["A"], ["audio"]))
    assert status == 201
    assert op.post(f"/api/v1/broadcasts/{b['id']}/submit")[0] == 200
    assert "approver" in refused("POST", f"/api/v1/broadcasts/{b['id']}/approve", {})
    # SMS: the draft may be written, but submitting it needs the sms_sender permission.
    status, sms, _ = op.post("/api/v1/broadcasts", bulletin(["A"], ["sms"]))
    assert status == 201
    assert "sms_sender" in refused("POST", f"/api/v1/broadcasts/{sms['id']}/submit", {})
    # Emergency: same, with the emergency permission.
    status, em, _ = op.post("/api/v1/broadcasts", bulletin(["A"], ["audio"], "emergency"))
    assert status == 201
    assert "emergency" in refused("POST", f"/api/v1/broadcasts/{em['id']}/submit", {})
    # And a commune approver cannot approve what they wrote themselves (four eyes).
    ap = world.client("approver.a")
    status, own, _ = ap.post("/api/v1/broadcasts", bulletin(["A"], ["audio"]))
    ap.post(f"/api/v1/broadcasts/{own['id']}/submit")
    before = world.position()
    status, data, _ = ap.post(f"/api/v1/broadcasts/{own['id']}/approve")
    assert status == 403 and world.position() == before, data
    # Control: the province operator and approver, holding both permissions, may.
    bid = world.broadcast("A", "submitted", channels=["sms"])
    assert world.client("approver.p").post(f"/api/v1/broadcasts/{bid}/approve")[0] == 200


def test_reads_are_filtered_to_the_callers_areas(world: World) -> None:
    """Without an area filter a commune viewer sees only its commune's devices and broadcasts;
    another commune's dispatch detail and device are refused."""
    _, devices, _ = world.client("viewer.b").get("/api/v1/devices")
    assert {d["area"]["code"] for d in devices} == {"B"}
    bid = world.broadcast("A", "approved")
    _, listed, _ = world.client("viewer.b").get("/api/v1/broadcasts?limit=1000")
    assert str(bid) not in {b["id"] for b in listed}
    assert world.client("viewer.b").get(f"/api/v1/broadcasts/{bid}")[0] == 403
    assert world.client("viewer.b").get(f"/api/v1/devices/{world.device_in['A']}")[0] == 403
    # A province-wide bulletin is visible in each commune it reaches.
    wide = world.broadcast("P", "approved")
    assert world.client("viewer.b").get(f"/api/v1/broadcasts/{wide}")[0] == 200
