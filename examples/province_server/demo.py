"""``tcs demo``: a province's day on loopback, with the dashboard.

``tcs`` finds this module by the entry point ``tcs_core.demos: province`` (tcs_core never imports
examples or transports). ``DEMO.run`` opens the store (``tcs-demo.sqlite`` by default), loads the
administrative history if it is not there, creates the demo accounts, starts simulated devices on
127.0.0.1 (SIP speakers, HTTP boards that advertise themselves by zeroconf and are accepted
through the discovery flow, an SMS gateway stub with subscribers), starts the province server,
and runs one day of recurring bulletins on an accelerated clock, with an emergency that cuts in
at midday. It prints where the dashboard is, a KPI summary and the day's dispatch counts, then
keeps serving (on the real clock) until Ctrl-C, unless ``--exit`` is given.

A second run reuses the store: accounts, devices and the recurring bulletins are found again (by
name) and the next day is run. Device ports are fixed by the first run (``--device-ports``), so
the registered addresses stay valid; a port that is taken is a clear error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import io
import logging
import math
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import time
import unicodedata
import wave
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from uuid import UUID

import pytz
from rich.console import Console
from rich.table import Table

from tcs_core import (
    SYSTEM,
    AreaKind,
    AreaVersion,
    BoardContent,
    Category,
    Channel,
    CutIn,
    Interrupted,
    Permission,
    Preemption,
    Priority,
    Role,
    ScheduleSpec,
    Settings,
    SmsContent,
    SourceSystem,
    SpeechContent,
    Targets,
    TcsError,
    UnknownArea,
    ValidationError,
    load_history,
)
from tcs_core.i18n import message

__all__ = ["DEMO", "ProvinceDemo"]

log = logging.getLogger("province_server.demo")

DEFAULT_PROVINCE = "52"  # Tỉnh Gia Lai since 1 July 2025 (the code was Bình Định's before)
PREFERRED_COMMUNES = ("23926", "23887", "23935")  # Ia Pia, Chư Prông, Ia Lâu (Gia Lai)
COMMUNES = 3
SPEAKERS_PER_COMMUNE = 3
SUBSCRIBERS_PER_COMMUNE = 4
DEFAULT_DEVICE_PORTS = 15060  # boards' HTTP server on this port, speakers (SIP/UDP) after it
DEFAULT_SPEED = 1800.0  # simulated seconds per real second: 05:30-21:00 in about 31 s
DAY_START = dtime(5, 30)
DAY_END = dtime(21, 0)
EMERGENCY_AT = dtime(11, 30)  # during the noon bulletin, which it cuts off
EMERGENCY_DRAFTED_AT = dtime(11, 5)
LEGACY_CHECK = date(2023, 12, 31)
ENV_PASSWORD = "TCS_DEMO_PASSWORD"  # noqa: S105 (a variable name)
ENV_BOARD_KEY = "TCS_DEMO_BOARD_KEY"
ENV_SESSION_KEY = "TCS_SERVER_SESSION_KEY"
HOST = "127.0.0.1"

# -- texts ---------------------------------------------------------------------------------------

T: dict[str, dict[str, str]] = {
    "opt.province": {
        "vi": "mã tỉnh, thành phố (cơ cấu 2025; mặc định 52: Gia Lai)",
        "en": "province code (2025 structure; default 52: Gia Lai)",
    },
    "opt.port": {
        "vi": "cổng của trang điều hành (mặc định 8080; nếu bận thì dùng cổng trống khác)",
        "en": "dashboard port (default 8080; a free one if it is taken)",
    },
    "opt.speed": {
        "vi": "số giây mô phỏng mỗi giây thực (1-3000, mặc định 1800)",
        "en": "simulated seconds per real second (1-3000, default 1800)",
    },
    "opt.exit": {
        "vi": "dừng sau bản tổng kết thay vì tiếp tục phục vụ tới khi nhấn Ctrl-C",
        "en": "stop after the summary instead of serving until Ctrl-C",
    },
    "opt.device_ports": {
        "vi": "cổng đầu tiên cho thiết bị mô phỏng (bảng tin HTTP, sau đó là loa SIP); "
        "chỉ dùng ở lần chạy đầu, các lần sau giữ địa chỉ đã đăng ký",
        "en": "first port of the simulated devices (boards' HTTP, then the SIP speakers); "
        "used on the first run, later runs keep the registered addresses",
    },
    "loading": {
        "vi": "Lần chạy đầu: nạp lịch sử địa giới hành chính (khoảng 20 giây)…",
        "en": "First run: loading the administrative history (about 20 seconds)…",
    },
    "not_history": {
        "vi": "cơ sở dữ liệu này có đơn vị hành chính nhưng không có lịch sử trước 2025; "
        "hãy chạy thử trên một cơ sở dữ liệu mới (--db)",
        "en": "this database holds areas but not the pre-2025 history; "
        "run the demo on a fresh database (--db)",
    },
    "not_province": {
        "vi": "{code} không phải mã một tỉnh, thành phố hiện nay ({name})",
        "en": "{code} is not the code of a province today ({name})",
    },
    "no_communes": {
        "vi": "{name} không có xã, phường nào",
        "en": "{name} has no communes",
    },
    "port_taken": {
        "vi": "cổng {port} ({what}) đang bị chiếm: có thể một `tcs demo` khác đang chạy. "
        "Hãy dừng nó, hoặc chạy trên cơ sở dữ liệu mới với --db và --device-ports khác",
        "en": "port {port} ({what}) is taken: perhaps another `tcs demo` is running. "
        "Stop it, or run on a fresh database with --db and another --device-ports",
    },
    "port_fallback": {
        "vi": "Cổng {port} đang bận: trang điều hành dùng cổng {bound}.",
        "en": "Port {port} is taken: the dashboard uses port {bound}.",
    },
    "what.speaker": {"vi": "loa mô phỏng {name}", "en": "simulated speaker {name}"},
    "what.boards": {"vi": "máy chủ bảng tin mô phỏng", "en": "the simulated boards' server"},
    "starting": {
        "vi": "Khởi động thiết bị mô phỏng, cổng SMS và máy chủ tỉnh…",
        "en": "Starting simulated devices, the SMS gateway and the province server…",
    },
    "discovering": {
        "vi": "Tìm bảng tin qua zeroconf (mDNS) trên 127.0.0.1…",
        "en": "Discovering boards by zeroconf (mDNS) on 127.0.0.1…",
    },
    "discovery_fallback": {
        "vi": "Không nghe thấy {n} bảng tin qua mDNS sau {s} giây (mạng chặn multicast?); "
        "ghi nhận chúng từ chính bản quảng bá của chúng.",
        "en": "Did not hear {n} board(s) by mDNS within {s} s (multicast blocked?); "
        "recording them from their own advertisements.",
    },
    "no_espeak": {
        "vi": "Không có espeak-ng: loa phát tiếng chuông thay cho giọng đọc "
        "(apt-get install espeak-ng để nghe đọc tiếng Việt).",
        "en": "espeak-ng is not installed: speakers play a chime instead of speech "
        "(apt-get install espeak-ng for Vietnamese speech).",
    },
    "dashboard": {"vi": "Trang điều hành: {url}", "en": "Dashboard: {url}"},
    "running": {"vi": "Ngày {day}", "en": "Day {day}"},
    "progress.fields": {
        "vi": "{clock} · {dispatches} lượt phát · {delivered} đã tới thiết bị · {failed} lỗi",
        "en": "{clock} · {dispatches} dispatches · {delivered} delivered · {failed} failed",
    },
    "emergency.fired": {
        "vi": "{clock}: bản tin khẩn cấp được duyệt, phát lúc {at} (chen ngang bản tin trưa).",
        "en": "{clock}: emergency bulletin approved, airs at {at} (cuts into the noon bulletin).",
    },
    "summary.title": {
        "vi": "Tổng kết ngày {day} ({province})",
        "en": "Summary of {day} ({province})",
    },
    "field": {"vi": "Mục", "en": "Field"},
    "value": {"vi": "Giá trị", "en": "Value"},
    "s.areas": {"vi": "Đơn vị hành chính (mọi thời kỳ)", "en": "Areas (all periods)"},
    "s.communes_now": {"vi": "Xã, phường của {name} hiện nay", "en": "Communes of {name} now"},
    "s.code_2023": {
        "vi": "Mã {code} ngày 31/12/2023",
        "en": "Code {code} on 2023-12-31",
    },
    "s.code_2023_value": {"vi": "{name}: {n} xã, phường", "en": "{name}: {n} communes"},
    "s.demo_communes": {"vi": "Xã chạy thử", "en": "Demo communes"},
    "s.devices": {
        "vi": "{speakers} loa IP, {boards} bảng tin, {subscribers} thuê bao SMS",
        "en": "{speakers} IP speakers, {boards} boards, {subscribers} SMS subscribers",
    },
    "s.devices_label": {"vi": "Thiết bị", "en": "Devices"},
    "s.bulletins": {"vi": "Bản tin định kỳ hằng ngày", "en": "Daily recurring bulletins"},
    "s.dispatches": {"vi": "Lượt phát trong ngày", "en": "Dispatches of the day"},
    "s.channel": {
        "vi": "đã tới {delivered}/{total}, lỗi {failed}, chờ {pending}",
        "en": "delivered {delivered}/{total}, failed {failed}, pending {pending}",
    },
    "ch.sip": {"vi": "Loa IP (SIP)", "en": "IP speakers (SIP)"},
    "ch.board": {"vi": "Bảng tin (HTTP)", "en": "Boards (HTTP)"},
    "ch.sms": {"vi": "SMS", "en": "SMS"},
    "s.preemptions": {"vi": "Lượt chen ngang (khẩn cấp)", "en": "Cut-ins (emergency)"},
    "s.packets": {"vi": "Gói RTP loa đã nhận", "en": "RTP packets the speakers received"},
    "s.packets_value": {
        "vi": "{packets} gói ({seconds:.1f} giây âm thanh) qua {calls} cuộc gọi",
        "en": "{packets} packets ({seconds:.1f} s of audio) in {calls} calls",
    },
    "s.board_items": {"vi": "Mục bảng tin đã nhận", "en": "Items the boards received"},
    "s.sms": {"vi": "Tin SMS cổng đã nhận / báo đã phát", "en": "SMS accepted / reported"},
    "s.kpi": {"vi": "Chỉ số ngày {day} ({name})", "en": "Indicators for {day} ({name})"},
    "s.kpi_note": {
        "vi": "Đồng hồ chạy nhanh ×{speed}: mỗi mili giây thực của việc gửi tính thành "
        "{speed} mili giây, nên tỷ lệ đúng giờ (trong 60 giây) thấp hơn khi chạy thật.",
        "en": "The clock runs ×{speed}: each real millisecond of sending counts as {speed} ms, "
        "so the on-time rate (within 60 s) is lower than on a real clock.",
    },
    "s.database": {"vi": "Cơ sở dữ liệu", "en": "Database"},
    "s.log": {"vi": "Nhật ký kỹ thuật", "en": "Technical log"},
    "s.elapsed": {"vi": "Thời gian chạy", "en": "Run time"},
    "s.run": {"vi": "Lần chạy", "en": "Run"},
    "s.run_first": {"vi": "lần đầu (tạo mới)", "en": "first (created)"},
    "s.run_again": {
        "vi": "chạy lại: dùng lại tài khoản, thiết bị và bản tin đã có",
        "en": "again: accounts, devices and bulletins reused",
    },
    "logins.title": {"vi": "Đăng nhập trang điều hành", "en": "Dashboard logins"},
    "logins.user": {"vi": "Tài khoản", "en": "Username"},
    "logins.role": {"vi": "Vai trò", "en": "Role"},
    "logins.password": {"vi": "Mật khẩu", "en": "Password"},
    "logins.env": {"vi": "(giá trị của {env})", "en": "(the value of {env})"},
    "logins.kept": {
        "vi": "(đã in ở lần chạy đầu; đặt {env} để đổi)",
        "en": "(printed on the first run; set {env} to change it)",
    },
    "logins.once": {
        "vi": "Mật khẩu mới chỉ in một lần; chỉ lưu bản băm trong {path}.",
        "en": "New passwords are printed once; only their hashes are kept in {path}.",
    },
    "serving": {
        "vi": "Đang phục vụ {url} theo giờ thực (Ctrl-C để dừng)…",
        "en": "Serving {url} on the real clock (Ctrl-C to stop)…",
    },
    "stopped": {"vi": "Đã dừng.", "en": "Stopped."},
    "interrupted": {
        "vi": "Đã dừng giữa chừng; chạy lại `tcs demo` để tiếp tục.",
        "en": "Interrupted; run `tcs demo` again to continue.",
    },
    "role.admin": {"vi": "quản trị", "en": "administrator"},
    "role.operator": {"vi": "biên tập {area}", "en": "operator, {area}"},
    "role.approver": {"vi": "phê duyệt {area}", "en": "approver, {area}"},
    "role.special": {"vi": " (khẩn cấp, SMS)", "en": " (emergency, SMS)"},
    "role.emergency": {"vi": " (khẩn cấp)", "en": " (emergency)"},
}


def _t(lang: str, key: str, **kwargs: Any) -> str:
    return message(T, key, lang, **kwargs)


# -- the day's programme (content is Vietnamese whatever the display language) -------------------


@dataclass(frozen=True)
class Bulletin:
    """One recurring bulletin of the demo's daily programme."""

    key: str
    title: str
    cron: str
    duration_s: int
    category: Category
    speech: str
    board: str
    sms: str = ""


PROGRAMME = (
    Bulletin(
        "morning",
        "Bản tin sáng",
        "0 6 * * *",
        900,
        Category.LOCAL_GOVERNMENT,
        "Bản tin sáng. Hôm nay xã tổ chức tiêm chủng cho trẻ em tại trạm y tế.",
        "BẢN TIN SÁNG\nTiêm chủng cho trẻ em tại Trạm y tế xã, 7 giờ 30.",
    ),
    Bulletin(
        "noon",
        "Bản tin trưa",
        "0 11 * * *",
        3600,
        Category.KNOWLEDGE,
        "Bản tin trưa. Bà con chú ý chăm sóc cà phê mùa khô, tưới nước tiết kiệm.",
        "BẢN TIN TRƯA\nChăm sóc cà phê mùa khô: tưới nước tiết kiệm.",
    ),
    Bulletin(
        "evening",
        "Bản tin tối",
        "30 17 * * *",
        1200,
        Category.POLICY_LAW,
        "Bản tin tối. Ủy ban nhân dân xã thông báo lịch tiếp công dân ngày mai.",
        "BẢN TIN TỐI\nLịch tiếp công dân: sáng mai tại trụ sở UBND xã.",
        "UBND xa thong bao: sang mai tiep cong dan tai tru so UBND xa.",
    ),
)
EMERGENCY_TITLE = "Cảnh báo lũ quét"
EMERGENCY_SPEECH = "Khẩn cấp. Lũ quét trên suối. Bà con di chuyển lên vùng cao ngay."
EMERGENCY_BOARD = "KHẨN CẤP: LŨ QUÉT\nDi chuyển lên vùng cao ngay. Không qua suối, ngầm tràn."


# -- small helpers -------------------------------------------------------------------------------


def _slug(name: str) -> str:
    """``Xã Ia Pia`` → ``iapia``: a username part from an area name."""
    for prefix in ("Thành phố ", "Tỉnh ", "Phường ", "Xã ", "Đặc khu ", "Thị trấn "):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    plain = unicodedata.normalize("NFD", name.replace("đ", "d").replace("Đ", "D"))
    return re.sub(
        r"[^a-z0-9]", "", "".join(c for c in plain if not unicodedata.combining(c)).lower()
    )


def _port_of(address: str) -> int | None:
    """The port of a registered device address (``sip:x@h:p`` or ``http://h:p/...``)."""
    if address.startswith("sip:"):
        m = re.search(r":(\d+)$", address)
        return int(m.group(1)) if m else None
    return urlparse(address).port


def _free(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _chime_wav(seconds: float = 2.5) -> bytes:
    """A two-tone chime, 8 kHz mono 16-bit: what speakers play when espeak-ng is missing."""
    rate = 8000
    frames = bytearray()
    for i in range(int(rate * seconds)):
        t = i / rate
        tone = 660.0 if (t % 1.0) < 0.5 else 880.0
        envelope = min(1.0, (t % 0.5) * 20) * max(0.0, 1.0 - (t % 0.5) * 1.6)
        frames += struct.pack("<h", int(9000 * envelope * math.sin(2 * math.pi * tone * t)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


class ChimeRenderer:
    """A ``TtsRenderer`` that answers a chime for any text (no text-to-speech installed)."""

    name = "demo-chime"

    async def render(self, text: str, voice: str) -> bytes:
        return _chime_wav()


@dataclass
class Login:
    """A demo account as the summary prints it."""

    username: str
    role: str
    password: str | None = None  # set only when it was created or changed in this run
    from_env: bool = False


@dataclass
class Plan:
    """What the synchronous setup found or created, for the asynchronous part."""

    province: AreaVersion
    communes: list[AreaVersion]
    admin: str
    province_ops: tuple[str, str]
    commune_ops: tuple[str, str]
    logins: list[Login]
    bulletins: dict[str, UUID]
    reused: bool
    day: date
    speaker_ports: dict[str, int]  # device name -> SIP port
    board_port: int
    zone: str


@dataclass
class DayResult:
    """What the day produced, for the summary."""

    dispatch_ids: list[UUID] = field(default_factory=list)
    by_channel: dict[str, Counter[str]] = field(default_factory=dict)
    sms_receipts: Counter[str] = field(default_factory=Counter)
    preemptions: int = 0
    packets: int = 0
    calls: int = 0
    board_items: int = 0
    sms_accepted: int = 0
    kpis: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False


# -- the demo ------------------------------------------------------------------------------------


class ProvinceDemo:
    """The province demo that ``tcs demo`` runs (see the module docstring)."""

    def add_arguments(self, parser: argparse.ArgumentParser, lang: str) -> None:
        """Add the demo's options to the ``tcs demo`` parser, help texts in ``lang``."""
        parser.add_argument(
            "--province", default=DEFAULT_PROVINCE, metavar="CODE", help=_t(lang, "opt.province")
        )
        parser.add_argument(
            "--port", type=_port_type, default=8080, metavar="PORT", help=_t(lang, "opt.port")
        )
        parser.add_argument(
            "--speed",
            type=_speed_type,
            default=DEFAULT_SPEED,
            metavar="X",
            help=_t(lang, "opt.speed"),
        )
        parser.add_argument("--exit", action="store_true", help=_t(lang, "opt.exit"))
        parser.add_argument(
            "--device-ports",
            type=_port_type,
            default=DEFAULT_DEVICE_PORTS,
            metavar="PORT",
            help=_t(lang, "opt.device_ports"),
        )

    def run(
        self,
        args: argparse.Namespace,
        *,
        settings: Settings,
        lang: str,
        console: Console,
    ) -> int:
        """Run the demo on ``settings``' store; the exit code."""
        started = time.perf_counter()
        # The console is for people: library and server logs go to a file beside the store.
        handler = logging.FileHandler(_log_path(settings), encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with SourceSystem(settings) as app:
                plan = self._prepare(app, args, settings, lang, console)
                return asyncio.run(
                    _Run(self, app, args, settings, plan, lang, console, started).main()
                )
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
            handler.close()

    # -- synchronous setup: areas, accounts, bulletins -----------------------------------------

    def _prepare(
        self,
        app: SourceSystem,
        args: argparse.Namespace,
        settings: Settings,
        lang: str,
        console: Console,
    ) -> Plan:
        _ensure_history(app, lang, console)
        today = app.areas.day(datetime.now(UTC))
        try:
            province = app.area(args.province, today)
        except UnknownArea:
            raise UnknownArea(f"province {args.province!r}: no such area today") from None
        if province.kind is not AreaKind.PROVINCE:
            raise ValidationError(
                "province", _t(lang, "not_province", code=args.province, name=province.name)
            )
        communes = _pick_communes(app, province, today)
        if not communes:
            raise ValidationError("province", _t(lang, "no_communes", name=province.name))
        reused = app.principals.get("admin") is not None and len(app.devices) > 0
        if len(app.principals) == 0:
            app.bootstrap_admin("admin", "Quản trị viên tỉnh")
        admin = "admin" if app.principals.get("admin") is not None else SYSTEM
        pslug, cslug = _slug(province.name) or province.code, _slug(communes[0].name)
        province_ops = (f"op.{pslug}", f"duyet.{pslug}")
        commune_ops = (f"op.{cslug or communes[0].code}", f"duyet.{cslug or communes[0].code}")
        special = [Permission.EMERGENCY, Permission.SMS_SENDER]
        accounts = (
            (province_ops[0], Role.OPERATOR, province, special, "Biên tập viên Sở VHTTDL"),
            (province_ops[1], Role.APPROVER, province, special, "Lãnh đạo Sở VHTTDL"),
            (
                commune_ops[0],
                Role.OPERATOR,
                communes[0],
                [Permission.EMERGENCY],
                f"Cán bộ văn hóa - xã hội {communes[0].name}",
            ),
            (
                commune_ops[1],
                Role.APPROVER,
                communes[0],
                [Permission.EMERGENCY],
                f"Phó Chủ tịch UBND {communes[0].name}",
            ),
        )
        for username, role, area, perms, display in accounts:
            if app.principals.get(username) is None:
                app.create_principal(
                    username,
                    grants=[(role, area.code)],
                    permissions=perms,
                    display_name=display,
                    actor=admin,
                )
        logins = [Login("admin", _t(lang, "role.admin"))] if admin == "admin" else []
        for username, role, area, perms, _ in accounts:
            key = "role.operator" if role is Role.OPERATOR else "role.approver"
            extra = "role.special" if len(perms) == 2 else "role.emergency"
            logins.append(Login(username, _t(lang, key, area=area.name) + _t(lang, extra)))
        zone = settings.zone
        bulletins = _ensure_bulletins(app, province_ops, communes, zone)
        day = _next_day(app, bulletins, today, zone)
        speaker_ports, board_port = _device_ports(app, communes, args.device_ports)
        return Plan(
            province,
            communes,
            str(admin),
            province_ops,
            commune_ops,
            logins,
            bulletins,
            reused,
            day,
            speaker_ports,
            board_port,
            zone,
        )


def _log_path(settings: Settings) -> str:
    if settings.persistence == "sqlite":
        p = Path(settings.sqlite_path)
        return str(p.with_name(p.stem + ".log"))
    return str(Path("tcs-demo.log").resolve())


def _port_type(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: give 0-65535")
    return n


def _speed_type(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = 0.0
    # The speakers play real audio in real time (about 5 s a bulletin): above 3,000 a bulletin
    # would still be playing when the next one is due, hours later on the simulated clock.
    if not 1.0 <= x <= 3000.0 or math.isnan(x):
        raise argparse.ArgumentTypeError(f"invalid speed {text!r}: give 1-3000")
    return x


def _ensure_history(app: SourceSystem, lang: str, console: Console) -> None:
    """Load the areas' history; refuse a store holding only the 2025 structure.

    On a loaded store the loader only checks and skips (under a second), which also completes
    a first load that was interrupted."""
    if len(app.areas) == 0:
        with console.status(_t(lang, "loading")):
            load_history(app, SYSTEM)
        return
    if not any(v.kind is AreaKind.DISTRICT for v in app.areas.all_at(LEGACY_CHECK)):
        # Loading the history over a 2025-only store would give codes two holders at once.
        raise ValidationError("db", _t(lang, "not_history"))
    load_history(app, SYSTEM)


def _pick_communes(app: SourceSystem, province: AreaVersion, day: date) -> list[AreaVersion]:
    """The demo's communes: Ia Pia and its neighbours in Gia Lai, else the first rural ones."""
    all_ = sorted(app.communes(province.code, day), key=lambda v: v.code)
    by_code = {v.code: v for v in all_}
    picked = [by_code[c] for c in PREFERRED_COMMUNES if c in by_code]
    rural = [v for v in all_ if v.kind is AreaKind.COMMUNE and v not in picked]
    rest = [v for v in all_ if v not in picked and v not in rural]
    return (picked + rural + rest)[:COMMUNES]


def _ensure_bulletins(
    app: SourceSystem, ops: tuple[str, str], communes: Sequence[AreaVersion], zone: str
) -> dict[str, UUID]:
    """The daily programme's recurring bulletins: found again by title, or drafted, submitted
    and approved (by two people)."""
    operator, approver = ops
    codes = [c.code for c in communes]
    found: dict[str, UUID] = {}
    for view in app.broadcasts.live():
        title = view.fields.get("title")
        targets = view.fields.get("targets")
        if view.author != operator or targets is None or sorted(targets.areas) != sorted(codes):
            continue
        for b in PROGRAMME:
            if title == b.title:
                found.setdefault(b.key, view.broadcast_id)
    for b in PROGRAMME:
        if b.key in found:
            continue
        content: dict[Channel, Any] = {
            Channel.AUDIO: SpeechContent(b.speech),
            Channel.BOARD: BoardContent(b.board),
        }
        channels = [Channel.AUDIO, Channel.BOARD]
        if b.sms:
            content[Channel.SMS] = SmsContent(b.sms)
            channels.append(Channel.SMS)
        # The noon bulletin is long: an emergency cuts it off, and it is not played again.
        preemption = Preemption(CutIn.AFTER_CURRENT, Interrupted.DROP)
        bid = app.draft_broadcast(
            b.title,
            category=b.category,
            priority=Priority.NORMAL,
            content=content,
            targets=Targets(areas=codes, channels=channels),
            schedule=ScheduleSpec.recurring(b.cron, zone, duration_s=b.duration_s, coalesce=False),
            preemption=preemption,
            actor=operator,
        )
        app.submit_broadcast(bid, actor=operator)
        app.approve_broadcast(bid, actor=approver)
        found[b.key] = bid
    return found


def _next_day(app: SourceSystem, bulletins: dict[str, UUID], today: date, zone: str) -> date:
    """Today on a fresh store; after a run, the day after the last one that was run."""
    tz = pytz.timezone(zone)
    last = [app.dispatches.last_occurrence.get(b) for b in bulletins.values()]
    days = [o.astimezone(tz).date() for o in last if o is not None]
    return max([today] + [d + timedelta(days=1) for d in days])


def _speaker_name(commune: AreaVersion, i: int) -> str:
    return f"Loa IP thôn {i} - {commune.name}"


def _board_name(commune: AreaVersion) -> str:
    return f"Bảng tin UBND {commune.name}"


def _device_ports(
    app: SourceSystem, communes: Sequence[AreaVersion], base: int
) -> tuple[dict[str, int], int]:
    """SIP port per speaker name, and the boards' HTTP port: from the registered addresses,
    else from ``base`` (boards on ``base``, speakers after it)."""
    registered = {
        d.name: d.address for d in app.devices.in_areas([c.area_id for c in communes]) if d.active
    }
    if not registered:
        # Another province's demo devices may hold the ports already: start after them.
        used = [
            p
            for d in app.devices.all()
            if d.active and d.transport in ("sip", "board")
            for p in [_port_of(d.address)]
            if p is not None and urlparse(d.address.replace("sip:", "sip://")).hostname == HOST
        ]
        if used and max(used) >= base:
            base = max(used) + 1
    board_port: int | None = None
    for c in communes:
        address = registered.get(_board_name(c))
        if address is not None:
            board_port = _port_of(address)
            break
    if board_port is None:
        board_port = base
    ports: dict[str, int] = {}
    n = 0
    for c in communes:
        for i in range(1, SPEAKERS_PER_COMMUNE + 1):
            n += 1
            name = _speaker_name(c, i)
            address = registered.get(name)
            port = _port_of(address) if address is not None else None
            ports[name] = port if port is not None else base + n
    return ports, board_port


class _Run:
    """One run's asynchronous part: devices, server, the day, the summary, serving."""

    def __init__(
        self,
        demo: ProvinceDemo,
        app: SourceSystem,
        args: argparse.Namespace,
        settings: Settings,
        plan: Plan,
        lang: str,
        console: Console,
        started: float,
    ) -> None:
        self.demo = demo
        self.app = app
        self.args = args
        self.settings = settings
        self.plan = plan
        self.lang = lang
        self.console = console
        self.started = started
        self.tz = pytz.timezone(plan.zone)
        self.stop = asyncio.Event()
        self.cleanups: list[Callable[[], Any]] = []
        self.speakers: list[Any] = []
        self.speaker_homes: list[tuple[str, AreaVersion]] = []  # device name, commune
        self.boards: list[Any] = []
        self.stub: Any = None
        self.board_key = os.environ.get(ENV_BOARD_KEY) or secrets.token_hex(32)
        self.environ = {**os.environ, ENV_BOARD_KEY: self.board_key}
        self._renderer: Any = None
        self._sms: Any = None
        self._generated_key: str | None = None

    def t(self, key: str, **kwargs: Any) -> str:
        return _t(self.lang, key, **kwargs)

    def local(self, day: date, at: dtime) -> datetime:
        return self.tz.localize(datetime.combine(day, at)).astimezone(UTC)

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)
        try:
            return await self._main()
        finally:
            for cleanup in reversed(self.cleanups):
                with contextlib.suppress(Exception):
                    result = cleanup()
                    if asyncio.iscoroutine(result):
                        await asyncio.wait_for(result, 10)
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    async def _main(self) -> int:
        from province_server import CredentialStore, ServerConfig, create_app, serve
        from tcs_core.scheduler import AcceleratedClock, Scheduler

        plan = self.plan
        start = self.local(plan.day, DAY_START)
        with self.console.status(self.t("starting")):
            creds = CredentialStore(self._auth_db(), self._session_key())
            self.cleanups.append(creds.close)
            self._passwords(creds)
            await self._start_speakers()
            await self._register_speakers()
            sip, board = self._media_transports()
            await self._start_sms()
            transports = [sip, board, self._sms]
        await self._start_boards()
        with self.console.status(self.t("starting")):
            await self._warm_audio(sip)
            await self._probe(transports, start)
            clock = AcceleratedClock(start, time.time(), self.args.speed)
            scheduler = Scheduler(self.app, transports, clock)
            config = ServerConfig(
                session_key=self._session_key(),
                auth_db=self._auth_db(),
                default_lang="en" if self.lang == "en" else "vi",
            )
            web_app = create_app(self.app, config=config, scheduler=scheduler, credentials=creds)
            port = self.args.port
            taken = bool(port) and not _free(port)
            runner, bound = await serve(web_app, HOST, 0 if taken else port)
            self.cleanups.append(runner.cleanup)
            if taken:
                self.console.print(self.t("port_fallback", port=port, bound=bound))
            url = f"http://{HOST}:{bound}/"
        self.console.print(self.t("dashboard", url=url))
        position = self.app.recorder.max_notification_id() or 0
        result = await self._run_day(scheduler, clock, start)
        if not result.interrupted:
            await self._collect(result, position)
        self._summary(result, url)
        if result.interrupted or self.args.exit or self.stop.is_set():
            if result.interrupted:
                self.console.print(self.t("interrupted"))
            return 0
        await self._serve(url)
        return 0

    # -- settings and secrets -----------------------------------------------------------------

    def _beside(self, what: str) -> str:
        """A file beside the store (``tcs-demo-auth.sqlite``...), or in memory for a memory store."""
        if self.settings.persistence == "popo":
            return ":memory:"
        if self.settings.persistence == "sqlite":
            p = Path(self.settings.sqlite_path)
            return str(p.with_name(f"{p.stem}-{what}.sqlite"))
        return str(Path(f"tcs-demo-{what}.sqlite").resolve())

    def _auth_db(self) -> str:
        return self._beside("auth")

    def _session_key(self) -> str:
        key = os.environ.get(ENV_SESSION_KEY)
        if not key:
            key = self._generated_key or secrets.token_hex(32)
            self._generated_key = key  # sessions of this run only; a restart logs people out
        return key

    def _passwords(self, creds: Any) -> None:
        given = os.environ.get(ENV_PASSWORD)
        if given is not None and len(given) < 12:
            raise ValidationError(ENV_PASSWORD, "use at least 12 characters")
        for login in self.plan.logins:
            if given:
                creds.set_password(login.username, given)
                login.from_env = True
            elif not creds.has_password(login.username):
                login.password = secrets.token_urlsafe(12)
                creds.set_password(login.username, login.password)

    # -- devices ------------------------------------------------------------------------------

    async def _start_speakers(self) -> None:
        from simulated_speaker import Speaker, stop_speakers

        self.cleanups.append(lambda: stop_speakers(self.speakers))
        n = 0
        for c in self.plan.communes:
            for i in range(1, SPEAKERS_PER_COMMUNE + 1):
                n += 1
                name = _speaker_name(c, i)
                port = self.plan.speaker_ports[name]
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    sock.bind((HOST, port))
                except OSError as exc:
                    sock.close()
                    if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                        what = self.t("what.speaker", name=name)
                        raise TcsError(self.t("port_taken", port=port, what=what)) from None
                    raise
                sip_user = f"loa{n}"
                speaker = Speaker(sip_user, host=HOST, keep_packets=False)
                await speaker.start(sip_socket=sock)
                self.speakers.append(speaker)
                self.speaker_homes.append((name, c))

    async def _register_speakers(self) -> None:
        def register() -> None:
            for c in self.plan.communes:
                existing = {d.name for d in self.app.devices.in_areas([c.area_id]) if d.active}
                for s, (name, home) in zip(self.speakers, self.speaker_homes, strict=True):
                    if home is c and name not in existing:
                        self.app.register_device(
                            name,
                            "ip_speaker",
                            area=c.code,
                            transport="sip",
                            address=s.address,
                            channels=["audio"],
                            actor=self.plan.admin,
                        )

        await asyncio.to_thread(register)

    def _media_transports(self) -> tuple[Any, Any]:
        from transports.board import BoardTransport
        from transports.sip import EspeakRenderer, SipTransport

        if self._renderer is None:
            if shutil.which("espeak-ng") is None:
                self.console.print(self.t("no_espeak"), style="yellow")
                self._renderer = ChimeRenderer()
            else:
                self._renderer = EspeakRenderer()
        sip = SipTransport(local_host=HOST, renderer=self._renderer)
        board = BoardTransport(environ=self.environ, play_wait_s=0)
        return sip, board

    async def _start_sms(self) -> None:
        from aiohttp import web
        from sms_gateway_stub import StubGateway

        from transports.sms import SmsTransport, receiver_app, subscriber_specs

        # Reports a moment after acceptance, as a real gateway's would be.
        self.stub = StubGateway(dlr_delay_s=1.0)
        stub_url = await self.stub.start(HOST, 0)
        self.cleanups.append(self.stub.stop)
        # The receiver (delivery reports, inbound messages) on its own loopback port: the
        # gateway posts to it without the dashboard's login.
        probe_sock = socket.socket()
        probe_sock.bind((HOST, 0))
        receiver_port = probe_sock.getsockname()[1]
        probe_sock.close()
        receiver_url = f"http://{HOST}:{receiver_port}"
        sms = SmsTransport(
            gateways=[{"kind": "json", "name": "stub", "url": f"{stub_url}/send"}],
            journal=self._beside("sms-journal"),
            receiver_url=receiver_url,
        )
        self._sms = sms
        runner = web.AppRunner(receiver_app(sms, self.app), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, receiver_port).start()
        self.cleanups.append(runner.cleanup)

        def register() -> None:
            n = 0
            for ci, c in enumerate(self.plan.communes):
                have = {
                    d.address
                    for d in self.app.devices.in_areas([c.area_id])
                    if d.active and d.transport == "sms"
                }
                rows = []
                for i in range(SUBSCRIBERS_PER_COMMUNE):
                    n += 1
                    number = f"+8491{ci + 1}{i + 1:06d}"
                    if number not in have:
                        rows.append({"number": number, "name": f"Thuê bao {i + 1} - {c.name}"})
                if rows:
                    self.app.register_devices(
                        subscriber_specs(rows, area=c.code), actor=self.plan.admin
                    )

        await asyncio.to_thread(register)

    async def _start_boards(self) -> None:
        from simulated_board import BOARD_SERVICE_TYPE, Board, advertise_board, serve

        from tcs_core.discovery import Browser
        from transports.board import BoardTransport

        key = self.board_key.encode()
        self.boards = [Board(n, key, _board_name(c)) for n, c in enumerate(self.plan.communes)]
        port = self.plan.board_port
        if not _free(port):
            what = self.t("what.boards")
            raise TcsError(self.t("port_taken", port=port, what=what))
        runner, _ = await serve(self.boards, HOST, port)
        self.cleanups.append(runner.cleanup)
        stack = contextlib.AsyncExitStack()
        self.cleanups.append(stack.aclose)
        wanted = {f"{b.name}.{BOARD_SERVICE_TYPE}": b for b in self.boards}
        found: dict[str, Any] = {}
        waited = 8.0
        with self.console.status(self.t("discovering")):
            try:
                for b in self.boards:
                    await stack.enter_async_context(advertise_board(b, port, HOST))
                async with Browser([BoardTransport], interfaces=[HOST]) as browser:
                    await browser.wait_for(
                        lambda br: all(name in br.found for name in wanted), timeout_s=waited
                    )
                    found = {n: browser.found[n] for n in wanted if n in browser.found}
            except Exception:  # no multicast here, or the name is taken on this machine
                log.warning("zeroconf discovery of the boards failed", exc_info=True)
            missing = [name for name in wanted if name not in found]
            if missing:
                self.console.print(
                    self.t("discovery_fallback", n=len(missing), s=int(waited)), style="yellow"
                )
                for name in missing:
                    found[name] = _advertised(wanted[name], port)

            def record_and_accept() -> None:
                for name, svc in found.items():
                    commune = self.plan.communes[wanted[name].n]
                    rec = self.app.record_discovered(svc, actor=self.plan.admin)
                    if rec.discovered_id is None:
                        continue  # a device already registered at that address
                    entry = self.app.discovered_device(rec.discovered_id)
                    if entry.device_id is not None:
                        continue  # accepted on an earlier run
                    self.app.accept_discovered(
                        rec.discovered_id,
                        area=commune.code,
                        settings={"key": f"env:{ENV_BOARD_KEY}", "mode": "push"},
                        actor=self.plan.admin,
                    )

            await asyncio.to_thread(record_and_accept)

    async def _warm_audio(self, sip: Any) -> None:
        """Render every text once before the clock starts: the first call then is on time."""
        texts = [b.speech for b in PROGRAMME] + [EMERGENCY_SPEECH]
        await asyncio.gather(*(sip.cache.pcm(SpeechContent(t)) for t in texts))

    async def _probe(self, transports: Sequence[Any], at: datetime) -> None:
        """Ask each device (not the SMS subscribers) whether it is there; record online."""
        from tcs_core.transport import DeviceTarget

        by_name = {t.name: t for t in transports}
        devices = [
            d
            for d in self.app.devices.in_areas([c.area_id for c in self.plan.communes])
            if d.active and d.transport in ("sip", "board")
        ]
        for t in transports:
            await t.open()
        try:
            healths = await asyncio.gather(
                *(
                    by_name[d.transport].probe(
                        DeviceTarget(
                            d.device_id, d.name, d.kind, d.address, dict(d.settings), d.channels
                        )
                    )
                    for d in devices
                )
            )
        finally:
            for t in transports:
                await t.close()

        def record() -> None:
            for d, h in zip(devices, healths, strict=True):
                self.app.set_device_status(
                    d.device_id,
                    "online" if h.ok else "offline",
                    h.detail[:200],
                    at=at,
                    actor=self.plan.admin,
                )

        await asyncio.to_thread(record)

    # -- the day --------------------------------------------------------------------------------

    async def _run_day(self, scheduler: Any, clock: Any, start: datetime) -> DayResult:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        result = DayResult()
        plan = self.plan
        end = self.local(plan.day, DAY_END)
        trigger = self.local(plan.day, EMERGENCY_DRAFTED_AT)
        total = (end - start).total_seconds()
        emergency: asyncio.Task[datetime] | None = None
        announced = False
        await scheduler.start()
        self.cleanups.append(scheduler.stop)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
        )
        label = self.t("running", day=plan.day.strftime("%d/%m/%Y"))
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task(label, total=total, detail="")
            while True:
                now = clock.now()
                if now >= end or self.stop.is_set():
                    break
                if emergency is None and now >= trigger:
                    emergency = asyncio.create_task(asyncio.to_thread(self._emergency))
                elif emergency is not None and emergency.done() and not announced:
                    announced = True
                    at = emergency.result()  # a refusal is an error of the demo: let it show
                    progress.console.print(
                        self.t(
                            "emergency.fired",
                            clock=now.astimezone(self.tz).strftime("%H:%M"),
                            at=at.astimezone(self.tz).strftime("%H:%M"),
                        )
                    )
                s = scheduler.stats
                detail = self.t(
                    "progress.fields",
                    clock=now.astimezone(self.tz).strftime("%H:%M"),
                    dispatches=s.dispatches,
                    delivered=s.delivered,
                    failed=s.failed,
                )
                progress.update(task, completed=(now - start).total_seconds(), detail=detail)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), 0.1)
            if not self.stop.is_set():
                progress.update(task, completed=total)
        if emergency is not None:
            await emergency  # a refusal is an error of the demo itself: let it show
        result.interrupted = self.stop.is_set()
        self.cleanups.remove(scheduler.stop)
        await scheduler.stop()
        result.preemptions = scheduler.stats.preemptions
        return result

    def _emergency(self) -> datetime:
        """The commune's operator drafts a flash-flood warning; its approver approves it."""
        operator, approver = self.plan.commune_ops
        commune = self.plan.communes[0]
        at = self.local(self.plan.day, EMERGENCY_AT)
        bid = self.app.draft_broadcast(
            f"{EMERGENCY_TITLE} - {commune.name} ({self.plan.day:%d/%m/%Y})",
            category=Category.DISASTER,
            priority=Priority.EMERGENCY,
            content={
                Channel.AUDIO: SpeechContent(EMERGENCY_SPEECH),
                Channel.BOARD: BoardContent(EMERGENCY_BOARD),
            },
            targets=Targets(areas=[commune.code], channels=[Channel.AUDIO, Channel.BOARD]),
            # A generous grace: on an accelerated clock the approval itself takes "minutes".
            schedule=ScheduleSpec.once(at, duration_s=600, misfire_grace_s=3 * 3600),
            actor=operator,
        )
        self.app.submit_broadcast(bid, actor=operator)
        self.app.approve_broadcast(bid, actor=approver)
        return at

    # -- the summary ------------------------------------------------------------------------------

    async def _collect(self, result: DayResult, position: int) -> None:
        # Let the SMS gateway's last delivery reports arrive and be recorded.
        for _ in range(20):
            if self.stub is None or self.stub.reports_sent >= self.stub.submissions:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        result.packets = sum(s.received.packets for s in self.speakers)
        result.calls = sum(len(s.received.answered) for s in self.speakers)
        result.board_items = sum(len(b.seen_ids) for b in self.boards)
        result.sms_accepted = self.stub.submissions if self.stub is not None else 0
        await asyncio.to_thread(self._collect_store, result, position)

    def _collect_store(self, result: DayResult, position: int) -> None:
        from tcs_core.kpi import Kpis, Period

        app = self.app
        app.refresh()
        start = position + 1
        while True:
            batch = app.recorder.select_notifications(
                start=start, limit=1000, topics=("tcs.dispatch.started",)
            )
            if not batch:
                break
            result.dispatch_ids += [UUID(str(n.originator_id)) for n in batch]
            start = batch[-1].id + 1
        for did in result.dispatch_ids:
            d = app.dispatch(did)
            for key in d.device_ids:
                device_id = UUID(str(key))  # stored as hex strings
                view = app.devices.get(device_id)
                transport = view.transport if view is not None else "?"
                outcome = d.outcome(device_id)
                status = "pending" if outcome is None else outcome.status.value
                result.by_channel.setdefault(transport, Counter())[status] += 1
                if transport == "sms":
                    receipt = d.receipt(device_id)
                    if receipt is not None:
                        result.sms_receipts[receipt.status] += 1
        kpis = Kpis(app)
        day = self.plan.day
        values = kpis.as_of(
            self.plan.province.code,
            day,
            period=Period(day, day),
            indicators=[
                "bulletins_aired",
                "airtime_per_commune",
                "on_time_delivery",
                "device_availability",
            ],
        )
        for iv in values:
            result.kpis.append((iv.indicator.name(self.lang), _kpi_text(iv)))

    def _summary(self, result: DayResult, url: str) -> None:
        plan, app = self.plan, self.app
        t = self.t
        rows: list[tuple[str, str]] = []
        rows.append((t("s.run"), t("s.run_again") if plan.reused else t("s.run_first")))
        areas = f"{len(app.areas):,}"
        rows.append((t("s.areas"), areas.replace(",", ".") if self.lang != "en" else areas))
        rows.append(
            (
                t("s.communes_now", name=plan.province.name),
                str(len(app.communes(plan.province.code))),
            )
        )
        with contextlib.suppress(UnknownArea):
            then = app.area(plan.province.code, LEGACY_CHECK)
            n = len(app.communes(plan.province.code, LEGACY_CHECK))
            rows.append(
                (
                    t("s.code_2023", code=plan.province.code),
                    t("s.code_2023_value", name=then.name, n=n),
                )
            )
        rows.append(
            (t("s.demo_communes"), ", ".join(f"{c.name} ({c.code})" for c in plan.communes))
        )
        devices = [d for d in app.devices.in_areas([c.area_id for c in plan.communes]) if d.active]
        kinds = Counter(d.transport for d in devices)
        rows.append(
            (
                t("s.devices_label"),
                t(
                    "s.devices",
                    speakers=kinds["sip"],
                    boards=kinds["board"],
                    subscribers=kinds["sms"],
                ),
            )
        )
        programme = []
        for b in PROGRAMME:
            hh, mm = b.cron.split()[1], b.cron.split()[0]
            programme.append(f"{b.title} {int(hh):02d}:{int(mm):02d}")
        rows.append((t("s.bulletins"), ", ".join(programme)))
        if not result.interrupted:
            rows.append((t("s.dispatches"), str(len(result.dispatch_ids))))
            for transport in ("sip", "board", "sms"):
                c = result.by_channel.get(transport, Counter())
                total = sum(c.values())
                rows.append(
                    (
                        "  " + t(f"ch.{transport}"),
                        t(
                            "s.channel",
                            delivered=c["delivered"],
                            total=total,
                            failed=c["failed"],
                            pending=c["pending"] + c["retryable"],
                        ),
                    )
                )
            rows.append((t("s.preemptions"), str(result.preemptions)))
            rows.append(
                (
                    t("s.packets"),
                    t(
                        "s.packets_value",
                        packets=result.packets,
                        seconds=result.packets * 0.02,
                        calls=result.calls,
                    ),
                )
            )
            rows.append((t("s.board_items"), str(result.board_items)))
            receipts = ", ".join(f"{k} {v}" for k, v in sorted(result.sms_receipts.items()))
            rows.append((t("s.sms"), f"{result.sms_accepted} / {receipts or 0}"))
        where = (
            self.settings.sqlite_path
            if self.settings.persistence == "sqlite"
            else self.settings.persistence
        )
        rows.append((t("s.database"), where))
        rows.append((t("s.log"), _log_path(self.settings)))
        rows.append((t("s.elapsed"), f"{time.perf_counter() - self.started:.1f} s"))
        title = t("summary.title", day=plan.day.strftime("%d/%m/%Y"), province=plan.province.name)
        table = Table(title=title)
        table.add_column(t("field"), style="bold")
        table.add_column(t("value"), overflow="fold")
        for k, v in rows:
            table.add_row(k, v)
        self.console.print(table)
        if result.kpis:
            kt = Table(title=t("s.kpi", day=plan.day.strftime("%d/%m/%Y"), name=plan.province.name))
            kt.add_column(t("field"), style="bold")
            kt.add_column(t("value"))
            for k, v in result.kpis:
                kt.add_row(k, v)
            self.console.print(kt)
            self.console.print(t("s.kpi_note", speed=f"{self.args.speed:g}"), style="dim")
        lt = Table(title=t("logins.title"))
        lt.add_column(t("logins.user"), style="bold")
        lt.add_column(t("logins.role"))
        lt.add_column(t("logins.password"))
        fresh = False
        for login in plan.logins:
            if login.from_env:
                pw = t("logins.env", env=ENV_PASSWORD)
            elif login.password is not None:
                pw, fresh = login.password, True
            else:
                pw = t("logins.kept", env=ENV_PASSWORD)
            lt.add_row(login.username, login.role, pw)
        self.console.print(lt)
        if fresh:
            self.console.print(t("logins.once", path=self._auth_db()), style="dim")
        self.console.print(t("dashboard", url=url), style="bold")

    # -- serving on the real clock ------------------------------------------------------------

    async def _serve(self, url: str) -> None:
        """Keep serving; a real-clock scheduler dispatches what the dashboard approves."""
        from tcs_core.scheduler import RealClock, Scheduler

        sip, board = self._media_transports()
        scheduler = Scheduler(self.app, [sip, board, self._sms], RealClock())
        await scheduler.start()
        self.cleanups.append(scheduler.stop)
        self.console.print(self.t("serving", url=url))
        await self.stop.wait()
        self.console.print(self.t("stopped"))


def _advertised(board: Any, port: int) -> Any:
    """What a browser would have found of a board's advertisement (when mDNS cannot be used):
    the same service name and TXT records as ``simulated_board.advertise_board`` announces."""
    from simulated_board import BOARD_SERVICE_TYPE

    from tcs_core.domain import DiscoveredService

    return DiscoveredService.from_txt(
        service_name=f"{board.name}.{BOARD_SERVICE_TYPE}",
        service_type=BOARD_SERVICE_TYPE,
        host=HOST,
        port=port,
        txt={
            "kind": "board",
            "channel": "board",
            "transport": "board",
            "address": f"http://{{host}}:{{port}}/b/{board.n}",
            "model": "TCS-SIM-BOARD",
            "name": board.name,
        },
        transport="board",
    )


def _kpi_text(iv: Any) -> str:
    value = iv.value
    kind = str(iv.indicator.kind.value)
    if value is None:
        shown = "—"
    elif kind == "ratio":
        shown = f"{value:.1f} %"
    elif kind == "count":
        shown = f"{int(value)}"
    else:
        shown = f"{value:.3f}"
    num, den = float(iv.numerator), float(iv.denominator)
    if num.is_integer() and den.is_integer():
        return f"{shown} ({int(num)}/{int(den)})"
    return f"{shown} ({num:.2f}/{den:.2f})"


DEMO = ProvinceDemo()
