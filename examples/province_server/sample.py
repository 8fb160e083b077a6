"""A small sample province and a server running in a background thread (for tests and trials).

``seed(system)`` creates Tỉnh Thử Nghiệm (code ``P``) with two communes (``A``, ``B``), one
principal per role over commune ``A`` (``viewer.a`` … ``admin.a``), a province operator and
approver with both special permissions (``operator.p``, ``approver.p``) and a few devices.
``ServerThread`` serves an app on 127.0.0.1 (a free port) from its own event loop, so that
synchronous clients (urllib, schemathesis, a browser) can talk to it.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

from aiohttp import web

from tcs_core import SourceSystem

from .server import serve

__all__ = ["PLAN_TOML", "ROLES", "Client", "ServerThread", "seed", "write_plan"]

ROLES = ("viewer", "operator", "approver", "admin")
SINCE = date(2020, 1, 1)

PLAN_TOML = """
[plan]
id = "thu-nghiem"
title = "Kế hoạch thông tin cơ sở tỉnh Thử Nghiệm"
issuer = "Ủy ban nhân dân tỉnh Thử Nghiệm"
issued = 2024-01-15
years = [2024, 2025, 2026]
baseline = 2023-12-15

[area]
code = "P"
on = 2024-01-15
name = "Tỉnh Thử Nghiệm"

[window]
start = "12-15"
end = "12-14"

[report]
name = "Báo cáo kết quả thông tin cơ sở"
content = "Các chỉ tiêu của Kế hoạch"
reporter = "Ủy ban nhân dân các xã"
recipient = "Sở Văn hóa, Thể thao và Du lịch"
frequency = "annual"
due_before = "12-05"
method = "Văn bản"
template = "Phụ lục"

[[target]]
indicator = "radio_coverage"
ref = "I.1"
wording = "Xã có hệ thống truyền thanh hoạt động đến thôn"
by_year = { 2024 = "50%", 2025 = "100%", 2026 = "100%" }

[[target]]
indicator = "website_rural"
ref = "I.2"
wording = "Xã có trang thông tin điện tử"
by_year = { 2024 = "50%", 2025 = "100%", 2026 = "100%" }
"""


def write_plan(directory: Path) -> Path:
    """Write the sample province's plan into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "thu-nghiem.toml"
    path.write_text(PLAN_TOML, encoding="utf-8")
    return path


def seed(system: SourceSystem, admin: str = "admin", transport: str = "memory") -> dict[str, Any]:
    """The sample province; returns the device ids by commune code."""
    if not len(system.principals):
        system.bootstrap_admin(admin)
    system.create_area(
        "P", "Tỉnh Thử Nghiệm", "province", parent=None, effective=SINCE, actor=admin
    )
    system.create_area("A", "Xã An Phú", "commune", parent="P", effective=SINCE, actor=admin)
    system.create_area("B", "Xã Bình Minh", "commune", parent="P", effective=SINCE, actor=admin)
    for role in ROLES:
        system.create_principal(f"{role}.a", grants=[(role, "A")], actor=admin)
        system.create_principal(f"{role}.b", grants=[(role, "B")], actor=admin)
    special = ["emergency", "sms_sender"]
    system.create_principal(
        "operator.p", grants=[("operator", "P")], permissions=special, actor=admin
    )
    system.create_principal(
        "approver.p", grants=[("approver", "P")], permissions=special, actor=admin
    )
    devices: dict[str, list[UUID]] = {"A": [], "B": []}
    for code, name, kind, channels in (
        ("A", "Loa thôn 1 An Phú", "ip_speaker", ["audio"]),
        ("A", "Loa thôn 2 An Phú", "ip_speaker", ["audio"]),
        ("A", "Bảng tin UBND xã An Phú", "board", ["board"]),
        ("B", "Loa thôn 1 Bình Minh", "ip_speaker", ["audio"]),
    ):
        devices[code].append(
            system.register_device(
                name,
                kind,
                area=code,
                transport=transport,
                address=f"mem://{code}/{name}",
                channels=channels,
                actor=admin,
            )
        )
    for did in devices["A"][:2]:
        system.set_device_status(did, "online", actor=admin)
    return devices


class ServerThread:
    """Serve an app built by ``factory`` (called inside the server's loop) in a thread."""

    def __init__(self, factory: Callable[[], web.Application]) -> None:
        self.factory = factory
        self.loop = asyncio.new_event_loop()
        self.app: web.Application | None = None
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="province-server", daemon=True)

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        try:
            self._stop = asyncio.Event()
            self.app = self.factory()
            runner, self.port = await serve(self.app)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the server's loop thread and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.loop.close()


class Client:
    """A small synchronous HTTP client (standard library): a token, or a cookie session."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base, self.token = base, token
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf: str | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, parsed JSON or text, headers)."""
        h = {"Accept": "application/json", **(headers or {})}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if self.csrf and method not in ("GET", "HEAD"):
            h.setdefault("X-CSRF-Token", self.csrf)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, headers=h, method=method)  # noqa: S310 (http base URL only)
        try:
            with self.opener.open(req, timeout=30) as r:
                status, text, hdrs = r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            status, text, hdrs = e.code, e.read().decode(), dict(e.headers)
        ctype = hdrs.get("Content-Type", "")
        value: Any = json.loads(text) if "json" in ctype and text else text
        return status, value, hdrs

    def get(self, path: str) -> tuple[int, Any, dict[str, str]]:
        """GET."""
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
        """POST a JSON body."""
        return self.request("POST", path, {} if body is None else body)

    def login(self, username: str, password: str) -> int:
        """Log in through the form as a browser would; the status of the final page."""
        status, page, _ = self.request("GET", "/login", headers={"Accept": "text/html"})
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        token = found.group(1) if found else ""
        form = urllib.parse.urlencode(
            {"username": username, "password": password, "csrf": token}
        ).encode()
        status, page, _ = self.request(
            "POST",
            "/login",
            raw=form,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"},
        )
        meta = re.search(r'name="csrf-token" content="([^"]+)"', page) if status == 200 else None
        self.csrf = meta.group(1) if meta else None
        return status
