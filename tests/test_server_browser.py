"""The province server's dashboard in headless Chromium: four eyes from compose to delivery.

An operator logs in, composes and submits a bulletin; an approver logs in and approves it; a
Scheduler (MemoryTransport, real clock) started by the app dispatches it, and the dashboard
shows the delivery through server-sent events. Then the emergency button's confirmation, and
the KPI page with the report's SVG charts in English.

Needs Debian's ``chromium`` (``/usr/bin/chromium``) and the ``playwright`` Python package (its
bundled driver only: no ``playwright install``). Skips with the reason when either is missing;
CI sets ``TCS_REQUIRE_PEERS=1``, which turns that skip into a failure. Screenshots are saved to
the test's tmp dir and to ``artifacts/server-dashboard*.png``.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tcs_core import Settings, SourceSystem
from tcs_core.memory import MemoryTransport
from tcs_core.scheduler import RealClock, Scheduler

for _dep in ("jsonschema", "prometheus_client"):  # the server extra's dependencies
    pytest.importorskip(_dep, reason="pip install -e '.[server]' (jsonschema, prometheus-client)")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from province_server import ServerConfig, create_app  # noqa: E402
from province_server.api import STATE  # noqa: E402
from province_server.sample import ServerThread, seed, write_plan  # noqa: E402

from chromium import ARGS  # noqa: E402
from chromium import chromium as find_chromium  # noqa: E402
from chromium import playwright as find_playwright  # noqa: E402

pytestmark = pytest.mark.browser

PASSWORD = "mật-khẩu-trình-duyệt-" + secrets.token_hex(4)
TITLE = "Lịch tiêm chủng mở rộng tháng 12"
ARTIFACTS = ROOT / "artifacts"
VN = timezone(timedelta(hours=7))


async def login(page: Any, base: str, user: str) -> None:
    await page.goto(f"{base}/login", wait_until="domcontentloaded")
    await page.fill("#username", user)
    await page.fill("#password", PASSWORD)
    await page.click("#login-button")
    await page.wait_for_url(f"{base}/dashboard")


def test_compose_submit_approve_and_see_it_delivered(tmp_path: Path) -> None:
    """Operator composes and submits, a second user approves, the scheduler delivers to the
    commune's three devices, and the dashboard shows "Đã phát 3/3" without a reload."""
    chromium = find_chromium()
    async_playwright = find_playwright()
    system = SourceSystem(Settings.in_memory())
    seed(system)
    write_plan(tmp_path / "plans")
    transport = MemoryTransport("memory")
    cfg = ServerConfig.from_env(
        {"TCS_SERVER_SESSION_KEY": secrets.token_hex(32)},
        auth_db=str(tmp_path / "auth.sqlite"),
        plans_dir=str(tmp_path / "plans"),
        live_poll_s=0.2,
    )

    def factory() -> Any:
        scheduler = Scheduler(system, [transport], RealClock())
        return create_app(system, config=cfg, scheduler=scheduler, start_scheduler=True)

    async def go(base: str) -> None:
        profile = tempfile.mkdtemp(prefix="tcs-chromium-")
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch_persistent_context(
                    profile,
                    executable_path=chromium,
                    headless=True,
                    args=ARGS,
                    viewport={"width": 1280, "height": 900},
                    locale="vi-VN",
                )
                try:
                    await scenario(browser, base)
                finally:
                    await browser.close()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    async def scenario(browser: Any, base: str) -> None:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # 1. The operator: devices with status colours, in Vietnamese.
        await login(page, base, "operator.a")
        assert await page.inner_text("#nav-devices") == "Thiết bị"
        row = page.locator("tr.status-online", has_text="Loa thôn 1 An Phú")
        await row.wait_for(timeout=10_000)
        colour = await row.locator(".dot").evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(30, 158, 58)"
        # 2. Compose and submit; no emergency button without the permission.
        await page.click("#nav-broadcasts")
        await page.wait_for_selector("#compose-title")
        assert await page.locator("#emergency-button").count() == 0
        when = (datetime.now(UTC) + timedelta(seconds=6)).astimezone(VN)
        await page.fill("#compose-title", TITLE)
        await page.select_option("#compose-category", "health")
        await page.fill("#compose-text", "Trạm y tế xã tiêm chủng cho trẻ em sáng thứ Hai.")
        await page.fill("#compose-when", when.strftime("%Y-%m-%dT%H:%M:%S"))
        await page.fill("#compose-duration", "2")
        await page.click("#draft-submit")
        mine = page.locator("#broadcasts tr", has_text=TITLE)
        await mine.locator(".bstatus", has_text="Chờ duyệt").wait_for(timeout=10_000)
        assert await mine.locator("button.approve").count() == 0  # four eyes, in the UI too
        await page.click("#logout")
        await page.wait_for_url(f"{base}/login")
        # 3. The approver approves; the live stream shows the delivery.
        await login(page, base, "approver.p")
        await page.click("#nav-broadcasts")
        row = page.locator("#broadcasts tr", has_text=TITLE)
        await row.locator("button.approve").click()
        await row.locator(".dispatch", has_text="Đã phát 3/3").wait_for(timeout=20_000)
        shot = tmp_path / "server-dashboard.png"
        await page.screenshot(path=str(shot), full_page=True)
        # 4. Today's schedule lists it for the commune.
        await page.click("#nav-schedule")
        item = page.locator("#schedule tr", has_text=TITLE)
        await item.locator(".dispatch", has_text="Đã phát 3/3").wait_for(timeout=10_000)
        # 5. The emergency button asks for confirmation before it submits.
        await page.click("#nav-broadcasts")
        await page.click("#emergency-button")
        assert await page.is_disabled("#emergency-send")
        await page.fill("#emergency-form-text", "Lũ quét trên suối, bà con lên vùng cao ngay!")
        await page.check("#emergency-confirm")
        await page.click("#emergency-send")
        emergency = page.locator("#broadcasts tr.prio-emergency")
        await emergency.locator(".bstatus", has_text="Chờ duyệt").wait_for(timeout=10_000)
        # 6. KPI page in English: the report's charts, from the same server, offline.
        await page.goto(f"{base}/dashboard/kpi?lang=en", wait_until="domcontentloaded")
        assert await page.inner_text("#nav-kpi") == "Indicators"
        frame = page.frame_locator("#kpi-report")
        await frame.locator("svg.kpi-chart").first.wait_for(timeout=20_000)
        assert await frame.locator("svg.kpi-chart").count() == 2
        await page.screenshot(path=str(tmp_path / "server-dashboard-kpi.png"), full_page=True)
        assert not errors, errors

    server = ServerThread(factory)
    with server:
        creds = server.app[STATE].creds  # type: ignore[index]
        for user in ("operator.a", "approver.p"):
            creds.set_password(user, PASSWORD)
        asyncio.run(go(server.url))
    played = [p for plays in transport.played.values() for p in plays]
    assert len(played) == 3  # two speakers and the board of Xã An Phú, once each
    assert {type(p.content).__name__ for p in played} == {"SpeechContent", "BoardContent"}
    ARTIFACTS.mkdir(exist_ok=True)
    for name in ("server-dashboard.png", "server-dashboard-kpi.png"):
        shot = tmp_path / name
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        shutil.copyfile(shot, ARTIFACTS / name)
