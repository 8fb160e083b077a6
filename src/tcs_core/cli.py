"""The ``tcs`` command: load areas, look them up at any date, tail the event log, run the demo.

User-facing text is Vietnamese by default (``--lang en`` for English) and comes from the small
message catalogue ``MESSAGES`` below. Error messages raised by the library itself are English.

Exit codes: 0 success; 2 a usage or validation error (bad option, bad date, unknown area code,
invalid setting); 1 any other failure (permission, state, storage). Expected errors print one red
line with the reason, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NoReturn, TextIO, cast
from uuid import UUID

import attrs
import pytz
from eventsourcing.persistence import Notification, PersistenceError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tcs_core import __version__
from tcs_core.app import SYSTEM, Actor, SourceSystem
from tcs_core.config import Settings
from tcs_core.domain.broadcast import Broadcast
from tcs_core.domain.values import (
    AreaKind,
    BoardContent,
    BroadcastStatus,
    Category,
    Channel,
    DeviceKind,
    Permission,
    Priority,
    Role,
    ScheduleSpec,
    SpeechContent,
    Targets,
)
from tcs_core.errors import TcsError, UnknownArea, ValidationError
from tcs_core.loaders import LoadReport, load_2025, load_history, load_legacy
from tcs_core.memory import MemoryTransport
from tcs_core.projections import AreaVersion
from tcs_core.scheduler import Scheduler, VirtualClock

__all__ = ["MESSAGES", "main"]

Lang = Literal["vi", "en"]
LANGS: tuple[Lang, ...] = ("vi", "en")

# ------------------------------------------------------------------------------------------------
# Message catalogue: every user-facing string, in Vietnamese and English.
# ------------------------------------------------------------------------------------------------

MESSAGES: dict[str, dict[Lang, str]] = {
    # help texts
    "prog.description": {
        "vi": "tcs-core: hệ thống thông tin nguồn cho thông tin cơ sở.",
        "en": "tcs-core: the source information system of Vietnam's grassroots information.",
    },
    "opt.config": {
        "vi": "tệp cấu hình tcs.toml (mặc định: biến môi trường TCS_*)",
        "en": "tcs.toml configuration file (default: TCS_* environment variables)",
    },
    "opt.db": {"vi": "đường dẫn tệp SQLite", "en": "path of the SQLite file"},
    "opt.lang": {"vi": "ngôn ngữ hiển thị (vi, en)", "en": "display language (vi, en)"},
    "cmd.areas": {"vi": "đơn vị hành chính", "en": "administrative areas"},
    "cmd.areas.load": {
        "vi": "nạp dữ liệu đơn vị hành chính (2025, trước 2025, hoặc cả lịch sử)",
        "en": "load administrative areas (2025, pre-2025, or the whole history)",
    },
    "opt.dataset": {
        "vi": "2025: cơ cấu 2025; legacy: cơ cấu trước 2025; history: cả hai và cuộc sắp xếp",
        "en": "2025: the 2025 structure; legacy: before 2025; history: both and the reform",
    },
    "cmd.areas.show": {
        "vi": "xem đơn vị giữ mã CODE vào một ngày",
        "en": "show the area holding CODE on a date",
    },
    "opt.code": {"vi": "mã đơn vị (ví dụ 52, 632, 23926)", "en": "area code (e.g. 52, 632, 23926)"},
    "opt.at": {
        "vi": "ngày tra cứu YYYY-MM-DD (mặc định: hôm nay)",
        "en": "date YYYY-MM-DD (default: today)",
    },
    "opt.children": {"vi": "liệt kê các đơn vị trực thuộc", "en": "list the direct children"},
    "opt.json": {"vi": "in kết quả dạng JSON", "en": "print JSON"},
    "cmd.events": {"vi": "nhật ký sự kiện", "en": "the event log"},
    "cmd.events.tail": {"vi": "xem các sự kiện mới nhất", "en": "show the latest events"},
    "opt.n": {"vi": "số sự kiện (mặc định 20)", "en": "number of events (default 20)"},
    "opt.follow": {
        "vi": "tiếp tục theo dõi mỗi giây cho tới khi nhấn Ctrl-C",
        "en": "keep polling every second until Ctrl-C",
    },
    "cmd.demo": {
        "vi": "chạy thử: một tỉnh thật, loa, bảng tin và SMS mô phỏng, một ngày phát tin "
        "trên đồng hồ tăng tốc, trang điều hành",
        "en": "demo: a real province, simulated speakers, boards and SMS, a day of bulletins "
        "on an accelerated clock, the dashboard",
    },
    # errors
    "error": {"vi": "Lỗi", "en": "Error"},
    "bad_date": {
        "vi": "ngày không hợp lệ {value!r}: dùng dạng YYYY-MM-DD, ví dụ 2023-12-31",
        "en": "invalid date {value!r}: use YYYY-MM-DD, e.g. 2023-12-31",
    },
    "bad_count": {
        "vi": "số không hợp lệ {value!r}: cần một số nguyên dương",
        "en": "invalid number {value!r}: give a positive integer",
    },
    "storage_error": {
        "vi": "không mở hoặc ghi được kho sự kiện: {reason}",
        "en": "cannot open or write the event store: {reason}",
    },
    "interrupted": {"vi": "Đã dừng.", "en": "Stopped."},
    # areas load
    "loading": {"vi": "Đang nạp {dataset}…", "en": "Loading {dataset}…"},
    "dataset.2025": {"vi": "cơ cấu hành chính 2025", "en": "the 2025 structure"},
    "dataset.legacy": {"vi": "cơ cấu hành chính trước 2025", "en": "the pre-2025 structure"},
    "dataset.history": {
        "vi": "lịch sử địa giới (trước 2025 và sắp xếp 2025)",
        "en": "the area history (pre-2025 and the 2025 reform)",
    },
    "load.title": {"vi": "Đã nạp {dataset}", "en": "Loaded {dataset}"},
    "load.created": {"vi": "Tạo mới", "en": "Created"},
    "load.skipped": {"vi": "Đã có (bỏ qua)", "en": "Already there (skipped)"},
    "load.changed": {"vi": "Thay đổi (sắp xếp)", "en": "Changed (reform)"},
    "load.elapsed": {"vi": "Thời gian", "en": "Elapsed"},
    "load.provinces_now": {"vi": "Tỉnh, thành phố hiện nay", "en": "Provinces now"},
    "load.communes_now": {"vi": "Xã, phường, đặc khu hiện nay", "en": "Communes now"},
    # areas show
    "field": {"vi": "Mục", "en": "Field"},
    "value": {"vi": "Giá trị", "en": "Value"},
    "show.title": {"vi": "{name} (mã {code}) ngày {at}", "en": "{name} (code {code}) on {at}"},
    "show.code": {"vi": "Mã", "en": "Code"},
    "show.name": {"vi": "Tên", "en": "Name"},
    "show.kind": {"vi": "Cấp", "en": "Kind"},
    "show.ancestors": {"vi": "Trực thuộc", "en": "Within"},
    "show.children": {"vi": "Đơn vị trực thuộc", "en": "Direct children"},
    "show.communes": {"vi": "Số xã, phường trong địa bàn", "en": "Communes in its subtree"},
    "show.valid": {"vi": "Hiệu lực", "en": "Valid"},
    "show.valid_span": {"vi": "từ {start} đến {end}", "en": "from {start} to {end}"},
    "show.valid_open": {"vi": "từ {start} đến nay", "en": "from {start} until now"},
    "show.successors": {"vi": "Kế thừa (hiện nay)", "en": "Successors (now)"},
    "show.continues": {
        "vi": "vẫn tồn tại: {name} (mã {code})",
        "en": "continues as {name} (code {code})",
    },
    "show.dissolved": {"vi": "giải thể, không có đơn vị kế thừa", "en": "dissolved, no successor"},
    "show.root": {"vi": "(cấp cao nhất)", "en": "(top level)"},
    "children.title": {"vi": "Đơn vị trực thuộc ngày {at}", "en": "Direct children on {at}"},
    "col.code": {"vi": "Mã", "en": "Code"},
    "col.name": {"vi": "Tên", "en": "Name"},
    "col.kind": {"vi": "Cấp", "en": "Kind"},
    "col.communes": {"vi": "Số xã", "en": "Communes"},
    # events tail
    "events.title": {"vi": "{n} sự kiện mới nhất", "en": "Latest {n} events"},
    "events.empty": {"vi": "Chưa có sự kiện nào.", "en": "No events yet."},
    "events.following": {
        "vi": "Đang theo dõi sự kiện mới (Ctrl-C để dừng)…",
        "en": "Following new events (Ctrl-C to stop)…",
    },
    # checkpoint
    "cmd.checkpoint": {
        "vi": "ghi ngay điểm lưu chỉ mục và chỉ tiêu (lần mở sau chỉ đọc phần nhật ký mới)",
        "en": "write the indexes' and the indicators' checkpoints now (the next start reads only "
        "the newer log)",
    },
    "checkpoint.off": {
        "vi": "kho này không dùng điểm lưu: đặt checkpoint_dir (TCS_CHECKPOINT_DIR) và "
        "checkpoint_after_events > 0",
        "en": "checkpoints are off for this store: set checkpoint_dir (TCS_CHECKPOINT_DIR) and "
        "checkpoint_after_events > 0",
    },
    "checkpoint.memory": {
        "vi": "không dùng điểm lưu: kho trong bộ nhớ không còn gì để mở lại",
        "en": "checkpoints are off: an in-memory store leaves nothing to reopen",
    },
    "checkpoint.written": {
        "vi": "Đã ghi điểm lưu {name} tại sự kiện {position:,} ({size:,} byte): {path}",
        "en": "Wrote checkpoint {name} at event {position:,} ({size:,} bytes): {path}",
    },
    "col.id": {"vi": "Số", "en": "Id"},
    "col.topic": {"vi": "Loại sự kiện", "en": "Topic"},
    "col.originator": {"vi": "Đối tượng", "en": "Originator"},
    "col.actor": {"vi": "Người thực hiện", "en": "Actor"},
    "col.summary": {"vi": "Tóm tắt", "en": "Summary"},
    # demo
    "demo.fallback": {
        "vi": "Không nạp được bản chạy thử tỉnh ({reason}); chạy bản chạy thử tối giản.",
        "en": "The province demo could not be loaded ({reason}); running the minimal demo.",
    },
    "demo.loading": {
        "vi": "Lần chạy đầu: nạp lịch sử địa giới (khoảng 10 giây)…",
        "en": "First run: loading the area history (about 10 seconds)…",
    },
    "cmd.simulate": {
        "vi": "chạy mô phỏng một khối lượng công việc thực tế trên đồng hồ ảo",
        "en": "run a realistic workload on a virtual clock",
    },
    "opt.workload": {
        "vi": "national-day: 3.321 xã, 10 loa và 2 bảng tin mỗi xã, 10.000 lịch phát, 24 giờ",
        "en": "national-day: 3,321 communes, 10 speakers and 2 boards each, 10,000 schedules, 24 h",
    },
    "opt.memory": {"vi": "lưu sự kiện trong bộ nhớ", "en": "keep events in memory"},
    "opt.schedules": {"vi": "số lịch phát (mặc định 10.000)", "en": "schedules (default 10,000)"},
    "opt.hours": {"vi": "số giờ mô phỏng (mặc định 24)", "en": "virtual hours (default 24)"},
    "opt.seed": {"vi": "hạt giống ngẫu nhiên", "en": "random seed"},
    "sim.fresh": {
        "vi": "Mô phỏng cần một kho dữ liệu trống: {path} đã có dữ liệu",
        "en": "The simulation needs an empty store: {path} holds data",
    },
    "sim.seeding": {"vi": "Đang tạo dữ liệu mô phỏng…", "en": "Seeding the workload…"},
    "sim.running": {"vi": "Đang mô phỏng", "en": "Simulating"},
    "sim.title": {"vi": "Kết quả mô phỏng {name}", "en": "Simulation {name}"},
    "sim.seed_s": {"vi": "Tạo dữ liệu (giây)", "en": "Seeding (s)"},
    "sim.broadcasts": {"vi": "Bản tin / thiết bị / xã", "en": "Broadcasts / devices / communes"},
    "sim.dispatches": {"vi": "Lượt phát", "en": "Dispatches"},
    "sim.deliveries": {"vi": "Lượt chuyển tới thiết bị", "en": "Deliveries"},
    "sim.delivered": {"vi": "Thành công / thất bại", "en": "Delivered / failed"},
    "sim.preemptions": {"vi": "Lượt chen ngang (khẩn cấp)", "en": "Preemptions"},
    "sim.misfires": {"vi": "Lượt lỡ giờ", "en": "Misfires"},
    "sim.events": {"vi": "Sự kiện đã ghi / giao dịch", "en": "Events written / transactions"},
    "sim.wall": {"vi": "Thời gian chạy (giây)", "en": "Wall time (s)"},
    "demo.title": {"vi": "Chạy thử tcs-core", "en": "tcs-core demo"},
    "demo.areas": {"vi": "Đơn vị hành chính (mọi thời kỳ)", "en": "Areas (all periods)"},
    "demo.gialai_now": {
        "vi": "Xã, phường của tỉnh Gia Lai hiện nay",
        "en": "Communes of Gia Lai province now",
    },
    "demo.chuprong_2023": {
        "vi": "Xã, thị trấn của huyện Chư Prông ngày 31/12/2023",
        "en": "Communes of Chư Prông district on 2023-12-31",
    },
    "demo.devices": {"vi": "Thiết bị tại {commune}", "en": "Devices in {commune}"},
    "demo.broadcast": {"vi": "Bản tin", "en": "Broadcast"},
    "demo.status": {"vi": "Trạng thái bản tin", "en": "Broadcast status"},
    "demo.dispatch": {"vi": "Lượt phát", "en": "Dispatch"},
    "demo.dispatch_counts": {
        "vi": "đã phát {delivered}/{total}, lỗi {failed}, chờ {pending}",
        "en": "delivered {delivered}/{total}, failed {failed}, pending {pending}",
    },
    "demo.broadcasts_total": {"vi": "Số bản tin đã soạn", "en": "Broadcasts drafted so far"},
    "demo.dispatches_total": {"vi": "Số lượt phát", "en": "Dispatches so far"},
    "demo.database": {"vi": "Cơ sở dữ liệu", "en": "Database"},
    "demo.in_memory": {"vi": "(trong bộ nhớ)", "en": "(in memory)"},
    "demo.elapsed": {"vi": "Thời gian chạy", "en": "Run time"},
    "demo.again": {
        "vi": "Chạy lại `tcs demo` để soạn và phát thêm một bản tin trên cùng cơ sở dữ liệu.",
        "en": "Run `tcs demo` again to draft and dispatch one more bulletin on the same database.",
    },
    "demo.not_history": {
        "vi": "cơ sở dữ liệu này có đơn vị hành chính nhưng không có lịch sử trước 2025; "
        "hãy chạy thử trên một cơ sở dữ liệu mới (--db)",
        "en": "this database holds areas but not the pre-2025 history; "
        "run the demo on a fresh database (--db)",
    },
    "demo.no_commune": {
        "vi": "không tìm thấy xã {code} thuộc tỉnh Gia Lai trong cơ sở dữ liệu này",
        "en": "commune {code} of Gia Lai is not in this database",
    },
}

STATUS_LABELS: dict[BroadcastStatus, dict[Lang, str]] = {
    BroadcastStatus.DRAFTED: {"vi": "đã soạn", "en": "drafted"},
    BroadcastStatus.SUBMITTED: {"vi": "chờ duyệt", "en": "submitted"},
    BroadcastStatus.APPROVED: {"vi": "đã duyệt", "en": "approved"},
    BroadcastStatus.REJECTED: {"vi": "bị từ chối", "en": "rejected"},
    BroadcastStatus.SCHEDULED: {"vi": "đã duyệt, đã lên lịch phát", "en": "approved, scheduled"},
    BroadcastStatus.CANCELLED: {"vi": "đã hủy", "en": "cancelled"},
    BroadcastStatus.EXPIRED: {"vi": "hết hiệu lực", "en": "expired"},
}

KIND_LABELS: dict[AreaKind, dict[Lang, str]] = {
    AreaKind.COUNTRY: {"vi": "quốc gia", "en": "country"},
    AreaKind.PROVINCE: {"vi": "tỉnh, thành phố", "en": "province"},
    AreaKind.DISTRICT: {"vi": "huyện, quận, thị xã", "en": "district"},
    AreaKind.WARD: {"vi": "phường", "en": "ward"},
    AreaKind.TOWNSHIP: {"vi": "thị trấn", "en": "township"},
    AreaKind.COMMUNE: {"vi": "xã", "en": "commune"},
    AreaKind.SPECIAL_ZONE: {"vi": "đặc khu", "en": "special zone"},
    AreaKind.VILLAGE: {"vi": "thôn, bản, tổ dân phố", "en": "village"},
}


class _UsageError(Exception):
    """A command-line usage error (argparse's complaint), reported with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are reported by ``main`` like every other error."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} ({self.prog} --help)")


@attrs.frozen
class _Out:
    """Where output goes, in which language."""

    lang: Lang
    console: Console
    err: Console

    def t(self, key: str, **kwargs: Any) -> str:
        """The catalogue text for ``key`` in the chosen language, formatted with ``kwargs``."""
        text = MESSAGES[key][self.lang]
        return text.format(**kwargs) if kwargs else text

    def kind(self, kind: AreaKind) -> str:
        """The label of an area kind."""
        return KIND_LABELS[kind][self.lang]

    def fail(self, reason: str) -> None:
        """Print one red line: the reason of a failure."""
        self.err.print(Text(f"{self.t('error')}: {reason}", style="bold red"), soft_wrap=True)


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Off a terminal rich would wrap at 80 columns; keep lines whole for logs and pipes.
    width = None if stream.isatty() else 160
    # No markup: names, titles and event data may contain "[...]", which is not a style.
    return Console(stderr=stderr, width=width, highlight=False, markup=False)


# ------------------------------------------------------------------------------------------------
# Argument parsing
# ------------------------------------------------------------------------------------------------


def _date_type(out: _Out) -> Callable[[str], date]:
    def parse(text: str) -> date:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(out.t("bad_date", value=text)) from None

    return parse


def _count_type(out: _Out) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n <= 0:
            raise argparse.ArgumentTypeError(out.t("bad_count", value=text))
        return n

    return parse


def build_parser(out: _Out, *, demo_options: bool = True) -> argparse.ArgumentParser:
    """The ``tcs`` argument parser, with help texts in ``out``'s language.

    ``demo_options``: add the province demo's options to ``tcs demo`` (loads its entry point)."""
    t = out.t
    p = _Parser(prog="tcs", description=t("prog.description"))
    p.add_argument("--version", action="version", version=f"tcs (tcs-core) {__version__}")

    def global_options(parser: argparse.ArgumentParser, defaults: Sequence[str | None]) -> None:
        config, db, lang = defaults
        parser.add_argument("--config", metavar="PATH", default=config, help=t("opt.config"))
        parser.add_argument("--db", metavar="PATH", default=db, help=t("opt.db"))
        parser.add_argument("--lang", choices=LANGS, default=lang, help=t("opt.lang"))

    global_options(p, (None, None, "vi"))
    # The same options after the command (`tcs areas show 52 --db x.sqlite`); SUPPRESS keeps
    # the value given before the command when they are not repeated.
    common = _Parser(add_help=False)
    global_options(common, (argparse.SUPPRESS,) * 3)
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    areas = commands.add_parser("areas", help=t("cmd.areas"), description=t("cmd.areas"))
    areas_cmds = areas.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    load = areas_cmds.add_parser(
        "load", help=t("cmd.areas.load"), description=t("cmd.areas.load"), parents=[common]
    )
    load.add_argument("dataset", choices=("2025", "legacy", "history"), help=t("opt.dataset"))
    load.set_defaults(func=_cmd_areas_load)
    show = areas_cmds.add_parser(
        "show", help=t("cmd.areas.show"), description=t("cmd.areas.show"), parents=[common]
    )
    show.add_argument("code", metavar="CODE", help=t("opt.code"))
    show.add_argument("--at", type=_date_type(out), metavar="YYYY-MM-DD", help=t("opt.at"))
    show.add_argument("--children", action="store_true", help=t("opt.children"))
    show.add_argument("--json", action="store_true", help=t("opt.json"))
    show.set_defaults(func=_cmd_areas_show)

    events = commands.add_parser("events", help=t("cmd.events"), description=t("cmd.events"))
    events_cmds = events.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    tail = events_cmds.add_parser(
        "tail", help=t("cmd.events.tail"), description=t("cmd.events.tail"), parents=[common]
    )
    tail.add_argument("-n", type=_count_type(out), default=20, metavar="N", help=t("opt.n"))
    tail.add_argument("--follow", "-f", action="store_true", help=t("opt.follow"))
    tail.set_defaults(func=_cmd_events_tail)

    ckpt = commands.add_parser(
        "checkpoint", help=t("cmd.checkpoint"), description=t("cmd.checkpoint"), parents=[common]
    )
    ckpt.set_defaults(func=_cmd_checkpoint)

    demo = commands.add_parser(
        "demo", help=t("cmd.demo"), description=t("cmd.demo"), parents=[common]
    )
    # The province demo (examples/) adds its own options; only loaded when `demo` is asked for,
    # since it imports the server and the transports.
    entry = _demo_entry_point() if demo_options else None
    if entry is not None:
        entry.add_arguments(demo, out.lang)
    demo.set_defaults(func=_cmd_demo)

    sim = commands.add_parser(
        "simulate", help=t("cmd.simulate"), description=t("cmd.simulate"), parents=[common]
    )
    sim.add_argument("workload", choices=("national-day",), help=t("opt.workload"))
    sim.add_argument("--memory", action="store_true", help=t("opt.memory"))
    sim.add_argument(
        "--schedules", type=_count_type(out), default=10_000, metavar="N", help=t("opt.schedules")
    )
    sim.add_argument("--hours", type=_count_type(out), default=24, metavar="H", help=t("opt.hours"))
    sim.add_argument("--seed", type=int, default=0, help=t("opt.seed"))
    sim.set_defaults(func=_cmd_simulate)

    from tcs_core.kpi.cli import add_kpi_commands  # the KPI reports (issue 7)

    add_kpi_commands(commands, parents=[common], lang=out.lang, func=_cmd_kpi)

    from tcs_core.cluster.cli import add_cluster_commands  # cluster mode (issue 9)

    add_cluster_commands(commands, parents=[common], lang=out.lang, func=_cmd_cluster)

    from tcs_core.discovery_cli import add_discovery_commands  # zeroconf discovery (issue 8)

    add_discovery_commands(commands, parents=[common], lang=out.lang, func=_cmd_devices)
    return p


def _pre_lang(argv: Sequence[str]) -> Lang:
    """The ``--lang`` given on the command line (to write help texts in it), else Vietnamese."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--lang")
    known, _ = pre.parse_known_args(list(argv))
    lang = known.lang
    return cast(Lang, lang) if lang in LANGS else "vi"


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tcs`` command with ``argv`` (default: the process's arguments); the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    out = _Out(_pre_lang(args_list), _console(), _console(stderr=True))
    try:
        args = build_parser(out, demo_options="demo" in args_list).parse_args(args_list)
        func = cast(Callable[[_Out, argparse.Namespace], int], args.func)
        return func(out, args)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except (_UsageError, ValidationError, UnknownArea) as exc:
        out.fail(str(exc))
        return 2
    except TcsError as exc:
        out.fail(str(exc))
        return 1
    except (PersistenceError, sqlite3.Error, OSError) as exc:
        out.fail(out.t("storage_error", reason=str(exc) or type(exc).__name__))
        return 1
    except KeyboardInterrupt:
        out.fail(out.t("interrupted"))
        return 130


def _settings(args: argparse.Namespace, default_db: str | None = None) -> Settings:
    """``--config`` file, else ``default_db`` (the demo's), else the environment; ``--db`` wins."""
    if args.config:
        settings = Settings.from_toml(args.config)
    elif default_db is not None:
        settings = Settings.sqlite(default_db)
    else:
        settings = Settings.from_env()
    if args.db:
        settings = attrs.evolve(settings, persistence="sqlite", sqlite_path=args.db)
    if settings.persistence == "sqlite":
        path = Path(settings.sqlite_path)
        if not path.parent.is_dir():
            raise ValidationError("db", f"folder {str(path.parent)!r} does not exist")
    return settings


def _today(app: SourceSystem) -> date:
    return app.areas.day(datetime.now(UTC))


def _count_now(app: SourceSystem, day: date) -> tuple[int, int]:
    """Provinces and commune-level units that exist on ``day``."""
    provinces = communes = 0
    for v in app.areas.all_at(day):
        if v.kind is AreaKind.PROVINCE:
            provinces += 1
        elif v.kind.is_commune_level:
            communes += 1
    return provinces, communes


# ------------------------------------------------------------------------------------------------
# tcs areas load
# ------------------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[[SourceSystem, Actor], LoadReport]] = {
    "2025": load_2025,
    "legacy": load_legacy,
    "history": load_history,
}


def _cmd_areas_load(out: _Out, args: argparse.Namespace) -> int:
    dataset = out.t(f"dataset.{args.dataset}")
    with SourceSystem(_settings(args)) as app:
        started = time.perf_counter()
        with out.console.status(out.t("loading", dataset=dataset)):
            report = _LOADERS[args.dataset](app, SYSTEM)
        elapsed = time.perf_counter() - started
        provinces, communes = _count_now(app, _today(app))
    table = Table(title=out.t("load.title", dataset=dataset))
    table.add_column(out.t("field"))
    table.add_column(out.t("value"), justify="right")
    table.add_row(out.t("load.created"), str(report.created))
    table.add_row(out.t("load.skipped"), str(report.skipped))
    table.add_row(out.t("load.changed"), str(report.changed))
    table.add_row(out.t("load.elapsed"), f"{elapsed:.1f} s")
    table.add_row(out.t("load.provinces_now"), str(provinces))
    table.add_row(out.t("load.communes_now"), str(communes))
    out.console.print(table)
    return 0


# ------------------------------------------------------------------------------------------------
# tcs areas show
# ------------------------------------------------------------------------------------------------


def _area_json(out: _Out, v: AreaVersion) -> dict[str, Any]:
    return {
        "code": v.code,
        "name": v.name,
        "kind": v.kind.value,
        "kind_label": out.kind(v.kind),
        "area_id": str(v.area_id),
        "valid_from": v.valid_from.isoformat(),
        "valid_to": v.valid_to.isoformat() if v.valid_to else None,
    }


def _commune_count(app: SourceSystem, v: AreaVersion, day: date) -> int:
    return sum(1 for x in app.areas.subtree(v.area_id, day) if x.kind.is_commune_level)


def _cmd_areas_show(out: _Out, args: argparse.Namespace) -> int:
    with SourceSystem(_settings(args)) as app:
        day: date = args.at if args.at is not None else _today(app)
        v = app.area(args.code, day)
        ancestors = list(reversed(app.areas.ancestors(v.area_id, day)))
        children = app.areas.children(v.area_id, day)
        communes = _commune_count(app, v, day)
        # Successors: where the territory is now, when this version of the area has ended.
        successors = app.areas.successors(v.area_id) if v.valid_to is not None else None
        child_rows = [(c, _commune_count(app, c, day)) for c in children] if args.children else []
    if args.json:
        data = {
            **_area_json(out, v),
            "at": day.isoformat(),
            "ancestors": [_area_json(out, a) for a in ancestors],
            "children": len(children),
            "communes": communes,
            "successors": (
                None if successors is None else [_area_json(out, s) for s in successors]
            ),
        }
        if args.children:
            data["children_list"] = [{**_area_json(out, c), "communes": n} for c, n in child_rows]
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return 0

    table = Table(title=out.t("show.title", name=v.name, code=v.code, at=day.isoformat()))
    table.add_column(out.t("field"), style="bold")
    table.add_column(out.t("value"))
    table.add_row(out.t("show.code"), v.code)
    table.add_row(out.t("show.name"), v.name)
    table.add_row(out.t("show.kind"), out.kind(v.kind))
    within = " › ".join(f"{a.name} ({a.code})" for a in ancestors) or out.t("show.root")
    table.add_row(out.t("show.ancestors"), within)
    table.add_row(out.t("show.children"), str(len(children)))
    table.add_row(out.t("show.communes"), str(communes))
    start = v.valid_from.isoformat()
    span = (
        out.t("show.valid_open", start=start)
        if v.valid_to is None
        else out.t("show.valid_span", start=start, end=v.valid_to.isoformat())
    )
    table.add_row(out.t("show.valid"), span)
    if successors is not None:
        if not successors:
            text = out.t("show.dissolved")
        elif [s.area_id for s in successors] == [v.area_id]:
            text = out.t("show.continues", name=successors[0].name, code=successors[0].code)
        else:
            text = ", ".join(f"{s.name} ({s.code})" for s in successors)
        table.add_row(out.t("show.successors"), text)
    out.console.print(table)
    if args.children:
        ct = Table(title=out.t("children.title", at=day.isoformat()))
        ct.add_column(out.t("col.code"))
        ct.add_column(out.t("col.name"))
        ct.add_column(out.t("col.kind"))
        ct.add_column(out.t("col.communes"), justify="right")
        for c, n in child_rows:
            ct.add_row(c.code, c.name, out.kind(c.kind), str(n))
        out.console.print(ct)
    return 0


# ------------------------------------------------------------------------------------------------
# tcs events tail
# ------------------------------------------------------------------------------------------------

_ENVELOPE = frozenset(
    {"timestamp", "originator_topic", "originator_id", "originator_version", "actor"}
)


def _short(value: Any) -> str:
    if isinstance(value, UUID):
        return value.hex[:8]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        if len(value) > 3:
            return f"[{len(value)}]"
        return "[" + ", ".join(_short(x) for x in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(str(k) for k in value) + "}"
    if attrs.has(type(value)):  # a value type: its name and first field
        first = attrs.fields(type(value))[0].name
        return f"{type(value).__name__}({_short(getattr(value, first))})"
    text = str(getattr(value, "value", value))
    return text if len(text) <= 40 else text[:39] + "…"


def _describe(app: SourceSystem, n: Notification) -> tuple[str, str]:
    """The actor (if any) and a short summary of the event's state."""
    try:
        event = app.mapper.to_domain_event(n)
    except Exception:  # an event this version cannot decode: show its size
        return "", f"({len(n.state)} bytes)"
    state = vars(event)
    actor = str(state.get("actor", "") or "")
    parts = [f"{k}={_short(v)}" for k, v in state.items() if k not in _ENVELOPE]
    summary = " ".join(parts)
    return actor, summary if len(summary) <= 100 else summary[:99] + "…"


def _event_row(app: SourceSystem, n: Notification) -> tuple[str, str, str, str, str]:
    actor, summary = _describe(app, n)
    return str(n.id), n.topic, str(n.originator_id)[:8], actor, summary


_sleep: Callable[[float], None] = time.sleep  # replaced in tests


def _cmd_events_tail(out: _Out, args: argparse.Namespace) -> int:
    with SourceSystem(_settings(args)) as app:
        last = app.recorder.max_notification_id() or 0
        batch = app.recorder.select_notifications(start=max(1, last - args.n + 1), limit=args.n)
        if batch:
            table = Table(title=out.t("events.title", n=len(batch)))
            for key in ("col.id", "col.topic", "col.originator", "col.actor", "col.summary"):
                table.add_column(out.t(key), overflow="fold")
            for n in batch:
                table.add_row(*_event_row(app, n))
            out.console.print(table)
        else:
            out.console.print(out.t("events.empty"))
        if not args.follow:
            return 0
        position = batch[-1].id if batch else last
        out.console.print(out.t("events.following"), style="dim")
        try:
            while True:
                _sleep(1.0)
                new = app.recorder.select_notifications(start=position + 1, limit=1000)
                for n in new:
                    out.console.print("  ".join(_event_row(app, n)), soft_wrap=True)
                if new:
                    position = new[-1].id
        except KeyboardInterrupt:
            return 0


def _cmd_checkpoint(out: _Out, args: argparse.Namespace) -> int:
    from tcs_core.kpi import Kpis

    with SourceSystem(_settings(args)) as app:
        if app.checkpoints is None:
            memory = app.settings.persistence == "popo"
            raise _UsageError(out.t("checkpoint.memory" if memory else "checkpoint.off"))
        for info in (app.checkpoint(), Kpis(app).checkpoint()):
            if info is not None:
                out.console.print(
                    out.t(
                        "checkpoint.written",
                        name=info.name,
                        position=info.position,
                        size=info.size,
                        path=str(info.path),
                    ),
                    soft_wrap=True,
                )
    return 0


# ------------------------------------------------------------------------------------------------
# tcs demo
# ------------------------------------------------------------------------------------------------

DEMO_DB = "tcs-demo.sqlite"
DEMO_PROVINCE = "52"  # Tỉnh Gia Lai since 2025-07-01 (Tỉnh Bình Định before)
DEMO_COMMUNE = "23926"  # Xã Ia Pia, Gia Lai (2025)
DEMO_DISTRICT_2023 = ("632", date(2023, 12, 31))  # Huyện Chư Prông, 20 communes then
DEMO_ADMIN = "admin"
DEMO_OPERATOR = "op.iapia"
DEMO_APPROVER = "duyet.iapia"
DEMO_DEVICES: tuple[tuple[str, DeviceKind, Channel], ...] = (
    ("Loa IP thôn Phố Yên", DeviceKind.IP_SPEAKER, Channel.AUDIO),
    ("Loa IP làng Bang", DeviceKind.IP_SPEAKER, Channel.AUDIO),
    ("Loa IP làng Bò Ngoại", DeviceKind.IP_SPEAKER, Channel.AUDIO),
    ("Bảng tin điện tử UBND xã", DeviceKind.BOARD, Channel.BOARD),
)
DEMO_SPEECH = (
    "Thông báo khẩn: bão số 5 đang tiến vào đất liền. Bà con xã Ia Pia chằng chống nhà cửa, "
    "không ra đồng, không đi qua suối và ngầm tràn; theo dõi tin trên loa truyền thanh."
)
DEMO_BOARD = (
    "CẢNH BÁO BÃO SỐ 5\nChằng chống nhà cửa. Không đi qua suối, ngầm tràn.\n"
    "Đường dây nóng Ban chỉ huy phòng chống thiên tai xã."
)


def _ensure_history(app: SourceSystem, out: _Out) -> None:
    """Load the history unless it is there; refuse a store that holds only the 2025 structure."""

    def holds(code: str, day: date) -> bool:
        try:
            app.area(code, day)
        except UnknownArea:
            return False
        return True

    district, end_2023 = DEMO_DISTRICT_2023
    legacy = holds(district, end_2023)
    reformed = not holds(district, _today(app))  # districts were abolished by the reform
    if legacy and reformed:
        return
    if len(app.areas) and not legacy:
        # Loading the history over a 2025-only store would give codes two holders at once.
        raise ValidationError("db", out.t("demo.not_history"))
    with out.console.status(out.t("demo.loading")):
        load_history(app, SYSTEM)


def _demo_admin(app: SourceSystem) -> Actor:
    """The demo's administrator, or SYSTEM in a store whose accounts someone else created."""
    return DEMO_ADMIN if app.principals.get(DEMO_ADMIN) is not None else SYSTEM


def _ensure_principals(app: SourceSystem) -> None:
    if len(app.principals) == 0:
        app.bootstrap_admin(DEMO_ADMIN, "Quản trị viên")
    admin = _demo_admin(app)
    emergency = [Permission.EMERGENCY]
    if app.principals.get(DEMO_OPERATOR) is None:
        app.create_principal(
            DEMO_OPERATOR,
            grants=[(Role.OPERATOR, DEMO_COMMUNE)],
            permissions=emergency,
            display_name="Cán bộ văn hóa - xã hội xã Ia Pia",
            actor=admin,
        )
    if app.principals.get(DEMO_APPROVER) is None:
        app.create_principal(
            DEMO_APPROVER,
            grants=[(Role.APPROVER, DEMO_COMMUNE)],
            permissions=emergency,
            display_name="Phó Chủ tịch UBND xã Ia Pia",
            actor=admin,
        )


def _ensure_devices(app: SourceSystem, commune: AreaVersion) -> None:
    existing = {d.name for d in app.devices.in_areas([commune.area_id])}
    admin = _demo_admin(app)
    for i, (name, kind, channel) in enumerate(DEMO_DEVICES, start=1):
        if name in existing:
            continue
        app.register_device(
            name,
            kind,
            area=DEMO_COMMUNE,
            transport="simulated",
            address=f"sim://iapia/{kind.value}-{i}",
            channels=[channel],
            actor=admin,
        )


def _run_broadcast(app: SourceSystem) -> tuple[Broadcast, dict[str, int], int]:
    """Draft, submit, approve, dispatch and deliver one bulletin; its counts and device total."""
    occurrence = datetime.now(UTC).replace(microsecond=0)
    local = occurrence.astimezone(pytz.timezone(app.settings.zone))
    bid = app.draft_broadcast(
        f"Cảnh báo bão số 5 - xã Ia Pia ({local:%H:%M %d/%m/%Y})",
        category=Category.DISASTER,
        priority=Priority.EMERGENCY,
        content={
            Channel.AUDIO: SpeechContent(DEMO_SPEECH),
            Channel.BOARD: BoardContent(DEMO_BOARD),
        },
        targets=Targets(areas=[DEMO_COMMUNE], channels=[Channel.AUDIO, Channel.BOARD]),
        schedule=ScheduleSpec.once(occurrence),
        actor=DEMO_OPERATOR,
    )
    app.submit_broadcast(bid, actor=DEMO_OPERATOR)
    app.approve_broadcast(bid, actor=DEMO_APPROVER)
    # The scheduler takes it, fires the occurrence and delivers through the simulated devices'
    # transport, on a virtual clock that runs through the item's airtime in an instant.
    transport = MemoryTransport("simulated")
    clock = VirtualClock(occurrence)
    scheduler = Scheduler(app, [transport], clock)

    async def air() -> None:
        await scheduler.start()
        await scheduler.run_until(occurrence + timedelta(minutes=10))
        await scheduler.stop()

    asyncio.run(air())
    dispatch = app.dispatch_of(bid, occurrence)
    if dispatch is None:
        raise TcsError("the scheduler did not dispatch the demo broadcast")
    return app.broadcast(bid), dispatch.counts(), len(dispatch.device_ids)


DEMO_ENTRY_POINT = "province"
_demo_cache: list[Any] = []  # [entry point object or None, reason]


def _demo_entry_point() -> Any:
    """The ``tcs_core.demos`` entry point ``province`` (examples/province_server/demo.py), or
    None when it cannot be loaded (e.g. installed from a wheel, which has no examples)."""
    if not _demo_cache:
        from importlib.metadata import entry_points

        found: Any = None
        reason = "no entry point tcs_core.demos:province"
        for ep in entry_points(group="tcs_core.demos"):
            if ep.name != DEMO_ENTRY_POINT:
                continue
            try:
                found = ep.load()
            except Exception as exc:  # ImportError and whatever the module raises on import
                reason = f"{ep.value}: {type(exc).__name__}: {exc}"
            break
        _demo_cache[:] = [found, reason]
    return _demo_cache[0]


def _cmd_demo(out: _Out, args: argparse.Namespace) -> int:
    settings = _settings(args, default_db=str(Path(DEMO_DB).resolve()))
    entry = _demo_entry_point()
    if entry is not None:
        return int(entry.run(args, settings=settings, lang=out.lang, console=out.console))
    out.console.print(out.t("demo.fallback", reason=_demo_cache[1]), style="yellow")
    return _minimal_demo(out, settings)


def _minimal_demo(out: _Out, settings: Settings) -> int:
    """One emergency bulletin to simulated devices (the demo when examples/ is not installed)."""
    started = time.perf_counter()
    with SourceSystem(settings) as app:
        _ensure_history(app, out)
        commune = app.area(DEMO_COMMUNE)
        province = app.area(DEMO_PROVINCE)
        if not app.areas.is_within(commune.area_id, province.area_id, _today(app)):
            raise UnknownArea(out.t("demo.no_commune", code=DEMO_COMMUNE))
        _ensure_principals(app)
        _ensure_devices(app, commune)
        broadcast, counts, total = _run_broadcast(app)
        rows: list[tuple[str, str]] = [
            (out.t("demo.areas"), str(len(app.areas))),
            (out.t("demo.gialai_now"), str(len(app.communes(DEMO_PROVINCE)))),
            (out.t("demo.chuprong_2023"), str(len(app.communes(*DEMO_DISTRICT_2023)))),
            (
                out.t("demo.devices", commune=commune.name),
                str(len(app.devices.in_areas([commune.area_id]))),
            ),
            (out.t("demo.broadcast"), broadcast.title),
            (
                out.t("demo.status"),
                f"{STATUS_LABELS[broadcast.status][out.lang]} ({broadcast.status.value})",
            ),
            (
                out.t("demo.dispatch"),
                out.t(
                    "demo.dispatch_counts",
                    total=total,
                    delivered=counts["delivered"],
                    failed=counts["failed"],
                    pending=counts["pending"],
                ),
            ),
            (out.t("demo.broadcasts_total"), str(len(app.broadcasts))),
            (out.t("demo.dispatches_total"), str(app.dispatches.started)),
        ]
    where = settings.sqlite_path if settings.persistence == "sqlite" else out.t("demo.in_memory")
    if settings.persistence == "postgres":
        where = settings.postgres_dsn or ""
    rows.append((out.t("demo.database"), where))
    rows.append((out.t("demo.elapsed"), f"{time.perf_counter() - started:.1f} s"))
    table = Table(title=out.t("demo.title"))
    table.add_column(out.t("field"), style="bold")
    table.add_column(out.t("value"), overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    out.console.print(table)
    out.console.print(out.t("demo.again"), style="dim")
    return 0


def _cmd_kpi(out: _Out, args: argparse.Namespace) -> int:
    from tcs_core.kpi.cli import run_kpi_command

    with SourceSystem(_settings(args)) as app:
        return run_kpi_command(args, app, stdout=cast(TextIO, out.console.file))


def _cmd_cluster(out: _Out, args: argparse.Namespace) -> int:
    from tcs_core.cluster.cli import run_cluster_command

    return run_cluster_command(args, _settings(args), stdout=cast(TextIO, out.console.file))


def _cmd_devices(out: _Out, args: argparse.Namespace) -> int:
    from tcs_core.discovery_cli import run_discovery_command

    return run_discovery_command(
        args,
        open_app=lambda: SourceSystem(_settings(args)),
        stdout=cast(TextIO, out.console.file),
    )


def _cmd_simulate(out: _Out, args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from tcs_core.simulation import national_day, run

    if args.memory:
        settings = Settings.in_memory()
    else:
        settings = _settings(args, default_db=str(Path("tcs-simulation.sqlite").resolve()))
        if settings.persistence == "sqlite" and Path(settings.sqlite_path).exists():
            raise ValidationError("db", out.t("sim.fresh", path=settings.sqlite_path))
    started = time.perf_counter()
    with SourceSystem(settings) as app:
        with out.console.status(out.t("sim.seeding")):
            workload = national_day(app, schedules=args.schedules, seed=args.seed)
        seeded = time.perf_counter() - started
        with Progress(console=out.console, transient=True) as progress:
            task = progress.add_task(out.t("sim.running"), total=1.0)
            summary, _, _ = asyncio.run(
                run(
                    app,
                    workload,
                    hours=args.hours,
                    progress=lambda f, _s: progress.update(task, completed=f),
                )
            )
    rows = [
        (out.t("sim.seed_s"), f"{seeded:.1f}"),
        (
            out.t("sim.broadcasts"),
            f"{workload.broadcasts:,} / {workload.devices:,} / {workload.communes:,}",
        ),
        (out.t("sim.dispatches"), f"{summary.dispatches:,}"),
        (out.t("sim.deliveries"), f"{summary.deliveries:,}"),
        (out.t("sim.delivered"), f"{summary.delivered:,} / {summary.failed:,}"),
        (out.t("sim.preemptions"), f"{summary.preemptions:,}"),
        (out.t("sim.misfires"), f"{summary.misfires:,}"),
        (out.t("sim.events"), f"{summary.events_written:,} / {summary.transactions:,}"),
        (out.t("sim.wall"), f"{summary.wall_s:.1f}"),
    ]
    table = Table(title=out.t("sim.title", name=args.workload))
    table.add_column(out.t("field"), style="bold")
    table.add_column(out.t("value"))
    for key, value in rows:
        table.add_row(key, value)
    out.console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
