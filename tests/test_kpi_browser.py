"""The HTML report in a real browser: headless Chromium loads it offline and shows the charts.

Needs Debian's ``chromium`` (skipped with the reason when it is missing). The screenshot is kept
as ``artifacts/kpi-report.png``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from tcs_core import Settings, load_history
from tcs_core.kpi import Kpis, build_report, generate_history, load_plan, render
from tcs_core.testing.fixtures import make_source_system

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = ROOT / "artifacts" / "kpi-report.png"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    pytest.skip("headless Chromium is not installed (Debian package 'chromium')")


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.browser
@pytest.mark.slow
def test_html_report_renders_its_charts_in_chromium(tmp_path: Path) -> None:
    """Chromium loads the Chư Prông report from a file: one SVG chart per target in the DOM,
    no network needed; a screenshot is saved to artifacts/kpi-report.png."""
    chromium = _chromium()
    app = make_source_system(Settings.in_memory())
    load_history(app)
    generate_history(app, "632", seed=11, on=date(2023, 8, 1), end=date(2024, 12, 14))
    plan = load_plan(ROOT / "examples" / "plans" / "chu-prong-2023.toml")
    report = build_report(Kpis(app), plan, date(2024, 12, 14))
    page = tmp_path / "kpi-report.html"
    page.write_text(render(report, "html"), encoding="utf-8")

    dom = _run(chromium, tmp_path / "p1", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    charts = re.findall(r'<svg[^>]*class="kpi-chart"[^>]*data-indicator="([a-z_]+)"', dom.stdout)
    assert charts == [t.indicator.id for t in plan.targets]
    assert dom.stdout.count('class="kpi-bar"') >= len(plan.targets)
    assert "Báo cáo chỉ tiêu thông tin cơ sở" in dom.stdout

    shot = tmp_path / "kpi-report.png"
    result = _run(
        chromium, tmp_path / "p2", f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()
    )
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    ARTIFACT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)
