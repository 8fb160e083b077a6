"""``tcs kpi``: reports against a plan, as-run logs and the conversion planner.

The ``tcs`` command wires these in with two calls (see docs/kpi.md)::

    add_kpi_commands(commands, parents=[common], lang=out.lang, func=_cmd_kpi)

    def _cmd_kpi(out, args):
        with contextlib.closing(SourceSystem(_settings(args))) as app:
            return run_kpi_command(args, app, stdout=out.console.file)

Commands:

- ``tcs kpi report --plan FILE --as-of DATE [--year N] [--format table|json|csv|html]
  [--lang vi|en] [--out FILE]``;
- ``tcs kpi asrun --area CODE --from DATE --to DATE [--format table|json|csv] [--out FILE]``;
- ``tcs kpi conversions --plan FILE --as-of DATE [--format table|json] [--out FILE]``.

``build_kpi_parser()`` gives the same commands as a parser of their own (with ``--db`` and
``--lang``) and ``main(argv)`` runs it on a SQLite file, for use without the ``tcs`` wiring.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tcs_core.i18n import message
from tcs_core.kpi.engine import Kpis
from tcs_core.kpi.planner import plan_conversions, render_conversions
from tcs_core.kpi.plans import load_plan
from tcs_core.kpi.report import FORMATS, build_report, render, render_asrun

if TYPE_CHECKING:
    from tcs_core.app import SourceSystem

__all__ = ["KPI_MESSAGES", "add_kpi_commands", "build_kpi_parser", "main", "run_kpi_command"]

KPI_MESSAGES: dict[str, dict[str, str]] = {
    "kpi": {
        "vi": "chỉ tiêu thông tin cơ sở: báo cáo theo kế hoạch, nhật ký phát, kế hoạch chuyển đổi",
        "en": "grassroots-information indicators: plan reports, as-run logs, conversion planner",
    },
    "report": {
        "vi": "báo cáo các chỉ tiêu của một kế hoạch tại một ngày",
        "en": "report a plan's indicators as of a date",
    },
    "asrun": {
        "vi": "nhật ký phát: thiết bị nào đã phát gì, ở địa bàn và trong khoảng thời gian",
        "en": "as-run log: what each device played, for an area and a period",
    },
    "conversions": {
        "vi": "xếp thứ tự chuyển đổi đài có dây/FM và số đài cần chuyển đổi mỗi năm",
        "en": "rank wired/FM stations for conversion and project the yearly needs",
    },
    "opt.plan": {"vi": "tệp kế hoạch (TOML)", "en": "plan file (TOML)"},
    "opt.as_of": {
        "vi": "ngày tính số liệu (YYYY-MM-DD, mặc định: hôm nay)",
        "en": "as-of date (YYYY-MM-DD, default: today)",
    },
    "opt.year": {
        "vi": "năm báo cáo (mặc định: kỳ chứa ngày tính số liệu)",
        "en": "report year (default: the window containing the as-of date)",
    },
    "opt.format": {"vi": "định dạng", "en": "output format"},
    "opt.out": {"vi": "ghi ra tệp thay vì màn hình", "en": "write to this file instead"},
    "opt.area": {"vi": "mã địa bàn", "en": "area code"},
    "opt.area_on": {
        "vi": "ngày đọc mã địa bàn (mặc định: --to)",
        "en": "date the area code is read on (default: --to)",
    },
    "opt.from": {"vi": "từ ngày (YYYY-MM-DD)", "en": "from (YYYY-MM-DD)"},
    "opt.to": {"vi": "đến ngày (YYYY-MM-DD)", "en": "to (YYYY-MM-DD)"},
    "opt.no_ops": {"vi": "không kèm chỉ số vận hành", "en": "leave out operational indicators"},
    "opt.db": {"vi": "đường dẫn tệp SQLite", "en": "path of the SQLite file"},
    "opt.lang": {"vi": "ngôn ngữ hiển thị (vi, en)", "en": "display language (vi, en)"},
    "bad_date": {
        "vi": "ngày không hợp lệ: {value!r} (dạng YYYY-MM-DD)",
        "en": "not a date: {value!r} (use YYYY-MM-DD)",
    },
    "written": {"vi": "Đã ghi {what} vào {path}", "en": "Wrote {what} to {path}"},
    "what.report": {"vi": "báo cáo", "en": "the report"},
    "what.asrun": {"vi": "nhật ký phát", "en": "the as-run log"},
    "what.conversions": {"vi": "kế hoạch chuyển đổi", "en": "the conversion plan"},
    "asrun.count": {"vi": "{n} lượt phát", "en": "{n} deliveries"},
}


def _m(key: str, lang: str, **kw: Any) -> str:
    return message(KPI_MESSAGES, key, lang, **kw)


def _date(lang: str) -> Callable[[str], date]:
    def parse(text: str) -> date:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(_m("bad_date", lang, value=text)) from None

    return parse


def add_kpi_commands(
    subparsers: Any,
    *,
    parents: Sequence[argparse.ArgumentParser] = (),
    lang: str = "vi",
    func: Callable[..., int] | None = None,
) -> argparse.ArgumentParser:
    """Add ``kpi report``, ``kpi asrun`` and ``kpi conversions`` to ``subparsers``.

    ``parents`` carry the shared options (``--db``, ``--config``, ``--lang``); without them the
    commands get ``--lang`` of their own. ``func`` becomes each command's ``func`` default (how
    ``tcs`` dispatches); ``run_kpi_command`` does the work either way."""
    d = _date(lang)
    kpi: argparse.ArgumentParser = subparsers.add_parser(
        "kpi", help=_m("kpi", lang), description=_m("kpi", lang)
    )
    cmds = kpi.add_subparsers(dest="kpi_command", required=True, metavar="SUBCOMMAND")
    common = list(parents)

    def leaf(name: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = cmds.add_parser(
            name, help=_m(name, lang), description=_m(name, lang), parents=common
        )
        if not parents:
            p.add_argument("--lang", choices=("vi", "en"), default="vi", help=_m("opt.lang", lang))
        p.add_argument("--out", metavar="FILE", help=_m("opt.out", lang))
        if func is not None:
            p.set_defaults(func=func)
        return p

    report = leaf("report")
    report.add_argument("--plan", required=True, metavar="FILE", help=_m("opt.plan", lang))
    report.add_argument("--as-of", type=d, metavar="YYYY-MM-DD", help=_m("opt.as_of", lang))
    report.add_argument("--year", type=int, metavar="YYYY", help=_m("opt.year", lang))
    report.add_argument("--format", choices=FORMATS, default="table", help=_m("opt.format", lang))
    report.add_argument("--no-operational", action="store_true", help=_m("opt.no_ops", lang))

    asrun = leaf("asrun")
    asrun.add_argument("--area", required=True, metavar="CODE", help=_m("opt.area", lang))
    asrun.add_argument(
        "--from",
        dest="start",
        required=True,
        type=d,
        metavar="YYYY-MM-DD",
        help=_m("opt.from", lang),
    )
    asrun.add_argument(
        "--to", dest="end", required=True, type=d, metavar="YYYY-MM-DD", help=_m("opt.to", lang)
    )
    asrun.add_argument("--area-on", type=d, metavar="YYYY-MM-DD", help=_m("opt.area_on", lang))
    asrun.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help=_m("opt.format", lang)
    )

    conv = leaf("conversions")
    conv.add_argument("--plan", required=True, metavar="FILE", help=_m("opt.plan", lang))
    conv.add_argument("--as-of", type=d, metavar="YYYY-MM-DD", help=_m("opt.as_of", lang))
    conv.add_argument(
        "--format", choices=("table", "json"), default="table", help=_m("opt.format", lang)
    )
    return kpi


def _today(app: SourceSystem) -> date:
    return app.areas.day(datetime.now(UTC))


def _emit(text: str, args: argparse.Namespace, stdout: TextIO, what: str, lang: str) -> None:
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(_m("written", lang, what=_m(what, lang), path=args.out), file=stdout)
    else:
        stdout.write(text if text.endswith("\n") else text + "\n")


def run_kpi_command(
    args: argparse.Namespace, app: SourceSystem, *, stdout: TextIO | None = None
) -> int:
    """Run the parsed ``kpi`` command against ``app``; returns the exit code (0).

    Errors are raised (``PlanError`` / ``ValidationError`` / ``UnknownArea``: a usage error for
    ``tcs``, exit code 2)."""
    out = stdout if stdout is not None else sys.stdout
    lang = getattr(args, "lang", "vi") or "vi"
    kpis = Kpis(app)
    if args.kpi_command == "report":
        plan = load_plan(args.plan)
        as_of = args.as_of or _today(app)
        report = build_report(
            kpis, plan, as_of, year=args.year, operational=not args.no_operational
        )
        _emit(render(report, args.format, lang), args, out, "what.report", lang)
        return 0
    if args.kpi_command == "asrun":
        rows = kpis.asrun(args.area, args.start, args.end, area_on=args.area_on)
        text = render_asrun(rows, args.format, lang)
        if args.format == "table":
            text += _m("asrun.count", lang, n=len(rows)) + "\n"
        _emit(text, args, out, "what.asrun", lang)
        return 0
    if args.kpi_command == "conversions":
        plan = load_plan(args.plan)
        cp = plan_conversions(kpis, plan, args.as_of or _today(app))
        _emit(render_conversions(cp, args.format, lang), args, out, "what.conversions", lang)
        return 0
    raise ValueError(f"unknown kpi command {args.kpi_command!r}")


def build_kpi_parser(lang: str = "vi") -> argparse.ArgumentParser:
    """A parser with just the ``kpi`` commands, plus ``--db`` (for ``main``)."""
    p = argparse.ArgumentParser(prog="tcs", description=_m("kpi", lang))
    p.add_argument("--db", metavar="PATH", default="tcs.sqlite", help=_m("opt.db", lang))
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_kpi_commands(commands, lang=lang)
    return p


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """``python -m tcs_core.kpi.cli kpi report ...`` on the SQLite file ``--db``."""
    from tcs_core.app import SourceSystem
    from tcs_core.config import Settings

    argv = list(sys.argv[1:] if argv is None else argv)
    lang = "en" if "--lang" in argv and argv[argv.index("--lang") + 1 :][:1] == ["en"] else "vi"
    args = build_kpi_parser(lang).parse_args(argv)
    app = SourceSystem(Settings.sqlite(args.db))
    try:
        return run_kpi_command(args, app, stdout=stdout)
    finally:
        app.close()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
