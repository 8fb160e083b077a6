"""`tcs demo` end to end: the README's command in a fresh directory, as a subprocess.

The demo starts real sockets on 127.0.0.1 (simulated SIP speakers, HTTP boards found by zeroconf,
an SMS gateway stub and its receiver, the province server); no external peer is needed. One
fresh run (history load included) is served, checked over HTTP and stopped with Ctrl-C; a second
run with ``--exit`` reuses its database.
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tcs_core import Settings, SourceSystem

pytestmark = pytest.mark.slow

TCS = Path(sys.executable).with_name("tcs")
SERVING = re.compile(r"Serving (http://127\.0\.0\.1:\d+/) on the real clock")


def _env() -> dict[str, str]:
    """The caller's environment without TCS_* (no store, password or key chosen for us)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TCS_")}


def _ports_free(base: int, n: int) -> bool:
    for port in range(base, base + n):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    return False
    return True


def _device_ports() -> int:
    """A base port with the ten ports the demo's devices need free (boards, nine speakers)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 30_000, 10)
        if _ports_free(base, 10):
            return base
    raise RuntimeError("no ten free ports between 20000 and 30000")


def row(output: str, label: str) -> str:
    """The value cell of the summary row whose first cell is ``label``."""
    match = re.search(rf"│ {re.escape(label)}\s*│\s*(.*?)\s*│", output)
    assert match, f"no row {label!r} in:\n{output}"
    return match.group(1)


def delivered(output: str, label: str) -> tuple[int, int, int, int]:
    """(delivered, total, failed, pending) of a channel row of the summary."""
    m = re.fullmatch(r"delivered (\d+)/(\d+), failed (\d+), pending (\d+)", row(output, label))
    assert m, row(output, label)
    d, total, failed, pending = (int(x) for x in m.groups())
    return d, total, failed, pending


def password(output: str, username: str) -> str:
    """The generated password the logins table printed for ``username``."""
    found = re.search(rf"│ {re.escape(username)}\s*│[^│]*│\s*(\S+)\s*│", output)
    assert found, output
    return found.group(1)


def _compose_and_approve(base: str, output: str) -> dict[str, int]:
    """The commune's operator drafts and submits a bulletin for a few seconds from now, its
    approver approves it; the counts of its dispatch once the real-clock scheduler sent it."""
    from province_server.sample import Client

    operator, approver = Client(base), Client(base)
    assert operator.login("op.iapia", password(output, "op.iapia")) == 200
    assert approver.login("duyet.iapia", password(output, "duyet.iapia")) == 200
    at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0).isoformat()
    body = {
        "title": "Thông báo họp thôn",
        "category": "local_government",
        "priority": "normal",
        "content": {
            "audio": {"type": "speech", "text": "Mời bà con họp thôn tối nay."},
            "board": {"text": "HỌP THÔN TỐI NAY"},
        },
        "targets": {"areas": ["23926"], "channels": ["audio", "board"]},
        "schedule": {"kind": "once", "instants": [at], "zone": "Asia/Ho_Chi_Minh"},
    }
    status, drafted, _ = operator.post("/api/v1/broadcasts", body)
    assert status == 201, drafted
    bid = drafted["id"]
    assert operator.post(f"/api/v1/broadcasts/{bid}/submit")[0] == 200
    assert approver.post(f"/api/v1/broadcasts/{bid}/approve")[0] == 200
    counts: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dispatches = operator.get(f"/api/v1/broadcasts/{bid}/dispatches")[1]
        if dispatches:
            counts = dispatches[0]["counts"]
            if counts["pending"] == 0:
                break
        time.sleep(0.5)
    return counts


@dataclass
class FirstRun:
    """What the first (fresh, served, interrupted) run showed."""

    directory: Path
    output: str
    stderr: str
    returncode: int
    login_page: int
    health: str
    admin_login: int
    dispatched: dict[str, int]  # counts of the bulletin composed through the API while serving


def _reader(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put(None)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """`tcs demo` in an empty directory: runs its day, serves, answers HTTP, stops on SIGINT."""
    from province_server.sample import Client

    directory = tmp_path_factory.mktemp("demo")
    argv = [str(TCS), "--lang", "en", "demo", "--port", "0"]
    argv += ["--device-ports", str(_device_ports())]
    proc = subprocess.Popen(
        argv,
        cwd=directory,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    url = None
    deadline = time.monotonic() + 300
    try:
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            found = SERVING.search(line)
            if found:
                url = found.group(1)
        assert url is not None, "".join(seen) + (proc.stderr.read() if proc.poll() else "")
        output = "".join(seen)
        with urllib.request.urlopen(url + "login", timeout=10) as r:
            login_page = r.status
        with urllib.request.urlopen(url + "healthz", timeout=10) as r:
            health = r.read().decode()
        base = url.rstrip("/")
        admin_login = Client(base).login("admin", password(output, "admin"))
        dispatched = _compose_and_approve(base, output)
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(timeout=60)
        while (line := lines.get(timeout=10)) is not None:
            seen.append(line)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return FirstRun(
        directory, "".join(seen), stderr, returncode, login_page, health, admin_login, dispatched
    )


def test_fresh_demo_runs_its_day_and_prints_the_summary(first_run: FirstRun) -> None:
    """A fresh run loads the areas, runs a day and prints dispatch counts > 0 per channel."""
    out = first_run.output
    assert row(out, "Run") == "first (created)"
    assert row(out, "Communes of Tỉnh Gia Lai now") == "135"
    assert row(out, "Code 52 on 2023-12-31").startswith("Tỉnh Bình Định:")  # a reused code
    assert row(out, "Devices") == "9 IP speakers, 3 boards, 12 SMS subscribers"
    assert row(out, "Dispatches of the day") == "4"  # morning, noon, emergency, evening
    speakers = delivered(out, "  IP speakers (SIP)")
    boards = delivered(out, "  Boards (HTTP)")
    sms = delivered(out, "  SMS")
    assert speakers == (30, 30, 0, 0)  # 3 bulletins x 9 speakers + the emergency's 3
    assert boards == (10, 10, 0, 0)  # 3 x 3 boards + the emergency's overlay
    assert sms == (12, 12, 0, 0)  # the evening bulletin to 12 subscribers
    assert int(row(out, "Cut-ins (emergency)")) >= 1
    packets = re.match(r"(\d+) packets", row(out, "RTP packets the speakers received"))
    assert packets and int(packets.group(1)) > 0
    assert row(out, "Items the boards received") == "10"
    assert row(out, "SMS accepted / reported") == "12 / delivered 12"
    assert "Indicators for" in out and "Dashboard logins" in out
    assert (first_run.directory / "tcs-demo.sqlite").exists()


def test_dashboard_answers_while_serving_and_ctrl_c_stops_cleanly(first_run: FirstRun) -> None:
    """While serving, the dashboard answers, the printed passwords log in, a bulletin composed
    and approved through the API is dispatched; SIGINT stops everything with exit code 0 and
    no traceback."""
    assert first_run.login_page == 200
    assert '"status": "ok"' in first_run.health
    assert first_run.admin_login == 200
    # 3 speakers and a board in Xã Ia Pia, delivered by the scheduler on the real clock
    assert first_run.dispatched == {"delivered": 4, "failed": 0, "retryable": 0, "pending": 0}
    assert first_run.returncode == 0, first_run.stderr
    assert "Stopped." in first_run.output
    assert "Traceback" not in first_run.output + first_run.stderr
    log = (first_run.directory / "tcs-demo.log").read_text(encoding="utf-8")
    assert " ERROR " not in log and "Traceback" not in log, log


def test_second_run_reuses_the_database(first_run: FirstRun) -> None:
    """Run again (--exit): the same accounts, devices and recurring bulletins, the next day,
    one more emergency; the registered device addresses still answer."""
    db = first_run.directory / "tcs-demo.sqlite"
    with SourceSystem(Settings.sqlite(db)) as app:
        devices = {(d.name, d.address) for d in app.devices.all()}
        principals = len(app.principals)
        broadcasts = len(app.broadcasts)
        areas = len(app.areas)
    day = re.search(r"Summary of (\d\d)/(\d\d)/(\d{4})", first_run.output)
    assert day
    first_day = date(int(day.group(3)), int(day.group(2)), int(day.group(1)))
    proc = subprocess.run(
        [str(TCS), "--lang", "en", "demo", "--exit", "--port", "0"],
        cwd=first_run.directory,
        env=_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in out + proc.stderr
    assert row(out, "Run") == "again: accounts, devices and bulletins reused"
    nxt = first_day + timedelta(days=1)
    assert f"Summary of {nxt:%d/%m/%Y}" in out
    assert delivered(out, "  IP speakers (SIP)") == (30, 30, 0, 0)
    assert delivered(out, "  Boards (HTTP)") == (10, 10, 0, 0)
    assert delivered(out, "  SMS") == (12, 12, 0, 0)
    assert re.search(r"│ admin\s*│[^│]*│\s*\(printed on the first run", out), out
    with SourceSystem(Settings.sqlite(db)) as app:
        assert {(d.name, d.address) for d in app.devices.all()} == devices
        assert len(app.principals) == principals
        assert len(app.broadcasts) == broadcasts + 1  # the day's emergency, nothing else
        assert len(app.areas) == areas
        titles = sorted(v.fields["title"] for v in app.broadcasts.live())
        assert titles == ["Bản tin sáng", "Bản tin trưa", "Bản tin tối"]
