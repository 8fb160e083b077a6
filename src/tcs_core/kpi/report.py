"""Reports against a plan: rows (indicator, value, numerator/denominator, target, met or not),
history per year for the charts, and renderings as a terminal table, JSON, CSV and HTML.

``build_report(kpis, plan, as_of)`` evaluates the plan's indicators for its report year (the
window that contains ``as_of``, up to ``as_of``) over the plan's area, plus the operational
indicators, and the value at each earlier year's cut-off for the charts. A plan's area that no
longer exists on a date (districts were dissolved on 1 July 2025; Bình Định became part of Gia
Lai) is evaluated on its last day, and the report says so.

Vietnamese is the default language (``lang="vi"``: labels in Vietnamese, the plan's own wording
of each indicator, decimal commas); ``lang="en"`` gives English labels and indicator names.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from fractions import Fraction
from html import escape
from typing import Any, Literal
from uuid import UUID

import attrs

from tcs_core.errors import UnknownArea, ValidationError
from tcs_core.i18n import message
from tcs_core.kpi.engine import AsRunRow, Evaluation, IndicatorValue, Kpis
from tcs_core.kpi.indicators import OPERATIONAL, Indicator, IndicatorKind, Unit
from tcs_core.kpi.periods import Period
from tcs_core.kpi.plans import FREQUENCIES, Note, Plan, PlanError, Target
from tcs_core.kpi.svg import ChartPoint, bar_chart
from tcs_core.projections import AreaVersion

__all__ = [
    "FORMATS",
    "LABELS",
    "HistoryPoint",
    "Report",
    "ReportRow",
    "build_report",
    "plan_scope",
    "render",
    "render_asrun",
]

Lang = Literal["vi", "en"]
Format = Literal["table", "json", "csv", "html"]
FORMATS: tuple[str, ...] = ("table", "json", "csv", "html")

LABELS: dict[str, dict[str, str]] = {
    "title": {"vi": "Báo cáo chỉ tiêu thông tin cơ sở", "en": "Grassroots information indicators"},
    "plan": {"vi": "Kế hoạch", "en": "Plan"},
    "area": {"vi": "Địa bàn", "en": "Area"},
    "as_of": {"vi": "Số liệu tính đến ngày", "en": "Figures as of"},
    "evaluated_on": {"vi": "Ngày tính số liệu", "en": "Evaluated on"},
    "year": {"vi": "Năm báo cáo", "en": "Report year"},
    "period": {"vi": "Kỳ số liệu", "en": "Reporting period"},
    "deadline": {"vi": "Hạn gửi báo cáo", "en": "Due by"},
    "no": {"vi": "STT", "en": "No."},
    "ref": {"vi": "Mục", "en": "Ref."},
    "indicator": {"vi": "Chỉ tiêu", "en": "Indicator"},
    "value": {"vi": "Kết quả", "en": "Value"},
    "fraction": {"vi": "Tử số/Mẫu số", "en": "Numerator/denominator"},
    "target": {"vi": "Chỉ tiêu kế hoạch", "en": "Target"},
    "assessment": {"vi": "Đánh giá", "en": "Assessment"},
    "met": {"vi": "Đạt", "en": "met"},
    "not_met": {"vi": "Không đạt", "en": "not met"},
    "na": {"vi": "Không áp dụng", "en": "n/a"},
    "no_target": {"vi": "—", "en": "—"},
    "operational": {"vi": "Chỉ số vận hành", "en": "Operational indicators"},
    "charts": {"vi": "Kết quả so với chỉ tiêu theo năm", "en": "Value against target by year"},
    "notes": {"vi": "Ghi chú", "en": "Notes"},
    "report_meta": {
        "vi": "Thông tin báo cáo (Thông tư 02/2023/TT-BTTTT)",
        "en": "Report particulars (Circular 02/2023/TT-BTTTT)",
    },
    "meta.name": {"vi": "Tên báo cáo", "en": "Name"},
    "meta.content": {"vi": "Nội dung yêu cầu báo cáo", "en": "Content"},
    "meta.reporter": {"vi": "Đối tượng thực hiện báo cáo", "en": "Reporter"},
    "meta.recipient": {"vi": "Cơ quan nhận báo cáo", "en": "Recipient"},
    "meta.frequency": {"vi": "Tần suất thực hiện báo cáo", "en": "Frequency"},
    "meta.cutoff": {"vi": "Thời gian chốt số liệu báo cáo", "en": "Data cut-off"},
    "meta.deadline": {"vi": "Thời hạn gửi báo cáo", "en": "Deadline"},
    "meta.method": {"vi": "Phương thức gửi, nhận báo cáo", "en": "Method"},
    "meta.template": {"vi": "Mẫu đề cương, biểu mẫu số liệu", "en": "Template"},
    "legend.value": {"vi": "Kết quả", "en": "Value"},
    "legend.target": {"vi": "Chỉ tiêu", "en": "Target"},
    "hours": {"vi": "giờ", "en": "h"},
    "by_category": {"vi": "theo lĩnh vực", "en": "by category"},
    "asrun.title": {"vi": "Nhật ký phát", "en": "As-run log"},
    "asrun.occurrence": {"vi": "Thời điểm phát", "en": "Occurrence"},
    "asrun.device": {"vi": "Thiết bị", "en": "Device"},
    "asrun.area": {"vi": "Địa bàn", "en": "Area"},
    "asrun.title_col": {"vi": "Bản tin", "en": "Bulletin"},
    "asrun.category": {"vi": "Lĩnh vực", "en": "Category"},
    "asrun.duration": {"vi": "Thời lượng (giây)", "en": "Duration (s)"},
    "asrun.status": {"vi": "Kết quả", "en": "Outcome"},
    "asrun.at": {"vi": "Lúc", "en": "At"},
    "asrun.reason": {"vi": "Lý do", "en": "Reason"},
    "status.delivered": {"vi": "đã phát", "en": "delivered"},
    "status.failed": {"vi": "không phát được", "en": "failed"},
    "status.retryable": {"vi": "chờ phát lại", "en": "retryable"},
    "status.pending": {"vi": "chưa có kết quả", "en": "pending"},
}


def _t(key: str, lang: str) -> str:
    return message(LABELS, key, lang)


# ------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------


@attrs.frozen
class ReportRow:
    """One indicator of the report."""

    indicator: Indicator
    wording: str
    ref: str
    value: IndicatorValue
    target: Target | None
    met: bool | None
    note: str = ""

    def name(self, lang: str) -> str:
        """The plan's wording in Vietnamese, the English name otherwise."""
        return self.wording if lang == "vi" else self.indicator.name_en


@attrs.frozen
class HistoryPoint:
    """An indicator at one year's cut-off (or the as-of date for the report year)."""

    year: int
    day: date
    value: float | None
    numerator: int | Fraction
    denominator: int | Fraction
    target: Target | None
    met: bool | None


@attrs.frozen
class Report:
    """A plan's report for one year, as of one day."""

    plan: Plan
    as_of: date
    year: int
    evaluated_on: date
    period: Period
    deadline: date
    area: AreaVersion
    rows: tuple[ReportRow, ...]
    operational: tuple[ReportRow, ...]
    history: Mapping[str, tuple[HistoryPoint, ...]]
    notes: tuple[Note, ...]

    def row(self, indicator_id: str) -> ReportRow:
        """The row of an indicator (plan rows first, then operational ones)."""
        for r in (*self.rows, *self.operational):
            if r.indicator.id == indicator_id:
                return r
        raise KeyError(indicator_id)


def plan_scope(kpis: Kpis, plan: Plan, day: date) -> tuple[UUID, date]:
    """The plan's area id and the day to evaluate it on: ``day``, or the area's last day if it
    ended before (PlanError if the data disagree with the plan's area name)."""
    proj = kpis.projection
    try:
        v = proj.areas.resolve(plan.area.code, plan.area.on)
    except UnknownArea as exc:
        raise PlanError(plan.path or plan.id, "area.code", str(exc)) from None
    if v.name != plan.area.name:
        raise PlanError(
            plan.path or plan.id,
            "area.name",
            f"code {plan.area.code} on {plan.area.on.isoformat()} is {v.name!r} in the data, "
            f"not {plan.area.name!r}",
        )
    history = proj.areas.history(v.area_id)
    first, last_to = history[0].valid_from, history[-1].valid_to
    if day < first:
        raise ValidationError(
            "as_of", f"{plan.area.name} exists from {first.isoformat()}, not on {day.isoformat()}"
        )
    if last_to is not None and day >= last_to:
        return v.area_id, last_to - timedelta(days=1)
    return v.area_id, day


def _met(value: IndicatorValue, target: Target | None) -> bool | None:
    if target is None:
        return None
    return target.met(value.numerator, value.exact)


def build_report(
    kpis: Kpis,
    plan: Plan,
    as_of: date,
    *,
    year: int | None = None,
    operational: bool = True,
    history: bool = True,
) -> Report:
    """The report of ``plan`` for ``year`` (default: the window containing ``as_of``)."""
    kpis.refresh()
    year = plan.year_of(as_of) if year is None else year
    window = plan.period(year)
    cut = min(as_of, window.end)
    if cut < window.start:
        raise ValidationError(
            "as_of", f"{as_of.isoformat()} is before the {year} reporting window ({window.label()})"
        )
    scope, day = plan_scope(kpis, plan, cut)
    notes = list(plan.warnings)
    if day != cut:
        ended = day + timedelta(days=1)
        notes.append(
            Note(
                f"{plan.area.name} không còn từ ngày {ended:%d/%m/%Y} (sắp xếp đơn vị hành "
                f"chính): số liệu tính đến ngày cuối cùng, {day:%d/%m/%Y}; phân bổ lại theo đơn "
                "vị mới để xem số liệu thuộc về đâu.",
                f"{plan.area.name} ended on {ended:%d/%m/%Y}: figures are taken on its last day, "
                f"{day:%d/%m/%Y}; re-attribute them to see where they went.",
            )
        )
    if year not in plan.years:
        years = ", ".join(str(y) for y in plan.years)
        notes.append(
            Note(
                f"Kế hoạch không đặt chỉ tiêu cho năm {year} (các năm: {years}).",
                f"The plan sets no targets for {year} (its years: {years}).",
            )
        )
    period = window.until(day)
    ids = [t.indicator.id for t in plan.targets]
    extra = [i for i in OPERATIONAL if operational and i not in ids]
    ev = kpis.as_of(scope, day, period=period, baseline=plan.baseline, indicators=[*ids, *extra])
    rows = tuple(
        ReportRow(
            t.indicator,
            t.wording,
            t.ref,
            ev[t.indicator.id],
            t.for_year(year),
            _met(ev[t.indicator.id], t.for_year(year)),
            t.note,
        )
        for t in plan.targets
    )
    ops = tuple(
        ReportRow(ev[i].indicator, ev[i].indicator.name_vi, "", ev[i], None, None) for i in extra
    )
    points: dict[str, list[HistoryPoint]] = {i: [] for i in ids}
    if history:
        for y in plan.years:
            if y > year:
                break
            w = plan.period(y)
            if y == year:
                past: Evaluation = ev
                at = day
            else:
                try:
                    _, at = plan_scope(kpis, plan, w.end)
                except ValidationError:
                    continue
                past = kpis.as_of(
                    scope, at, period=w.until(at), baseline=plan.baseline, indicators=ids
                )
            for t in plan.targets:
                iv = past[t.indicator.id]
                target = t.for_year(y)
                points[t.indicator.id].append(
                    HistoryPoint(
                        y, at, iv.value, iv.numerator, iv.denominator, target, _met(iv, target)
                    )
                )
    area = kpis.projection.areas.version_at(scope, day)
    assert area is not None
    return Report(
        plan,
        as_of,
        year,
        day,
        period,
        plan.report.deadline(year, plan.window),
        area,
        rows,
        ops,
        {k: tuple(v) for k, v in points.items()},
        tuple(notes),
    )


# ------------------------------------------------------------------------------------------
# Formatting
# ------------------------------------------------------------------------------------------


def _num(x: float | int | Fraction, lang: str, digits: int = 1) -> str:
    if isinstance(x, Fraction) and x.denominator == 1:
        x = int(x)
    if isinstance(x, int):
        text = f"{x:,}"
        return text.replace(",", ".") if lang == "vi" else text
    text = f"{float(x):,.{digits}f}"
    if lang == "vi":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def format_value(iv: IndicatorValue, lang: str, target: Target | None = None) -> str:
    """The value as shown: ``87,7%``, ``20``, ``2,5 giờ``; ``—`` when undefined. Against a
    count target a ratio shows its numerator first: ``20 (100,0%)``."""
    v = iv.value
    kind = iv.indicator.kind
    if target is not None and not target.percent and kind is IndicatorKind.RATIO:
        pct = "—" if v is None else f"{_num(v, lang)}%"
        return f"{_num(iv.numerator, lang)} ({pct})"
    if v is None:
        return "—"
    if kind is IndicatorKind.RATIO:
        return f"{_num(v, lang)}%"
    if kind is IndicatorKind.AVERAGE:
        return f"{_num(v, lang)} {_t('hours', lang)}"
    return _num(iv.numerator, lang)


def format_fraction(iv: IndicatorValue, lang: str) -> str:
    """``139/155``; device time in hours; airtime in hours."""
    n, d = iv.numerator, iv.denominator
    if iv.indicator.unit is Unit.DEVICE_SECONDS:
        h = _t("hours", lang)
        return f"{_num(Fraction(n) / 3600, lang, 0)} {h}/{_num(Fraction(d) / 3600, lang, 0)} {h}"
    if isinstance(n, Fraction) and n.denominator != 1:
        return f"{_num(n, lang)} {_t('hours', lang)}/{_num(d, lang)}"
    return f"{_num(n, lang)}/{_num(d, lang)}"


def _assessment(met: bool | None, target: Target | None, lang: str) -> str:
    if target is None:
        return _t("no_target", lang)
    if met is None:
        return _t("na", lang)
    return _t("met" if met else "not_met", lang)


def _plain(x: int | Fraction) -> int | float:
    if isinstance(x, Fraction):
        return int(x) if x.denominator == 1 else round(float(x), 4)
    return x


def _row_json(i: int, r: ReportRow, lang: str) -> dict[str, Any]:
    v = r.value.value
    return {
        "no": i,
        "indicator": r.indicator.id,
        "ref": r.ref,
        "name": r.name(lang),
        "kind": r.indicator.kind.value,
        "value": None if v is None else round(v, 4),
        "numerator": _plain(r.value.numerator),
        "denominator": _plain(r.value.denominator),
        "target": None
        if r.target is None
        else {
            "op": r.target.op,
            "amount": _plain(r.target.amount),
            "percent": r.target.percent,
            "text": r.target.text,
        },
        "met": r.met,
        "assessment": _assessment(r.met, r.target, lang),
        "breakdown": dict(r.value.breakdown),
        "note": r.note,
    }


def _meta(report: Report, lang: str) -> list[tuple[str, str]]:
    m = report.plan.report
    freq = FREQUENCIES.get(m.frequency, m.frequency) if lang == "vi" else m.frequency
    return [
        (_t("meta.name", lang), m.name),
        (_t("meta.content", lang), m.content),
        (_t("meta.reporter", lang), m.reporter),
        (_t("meta.recipient", lang), m.recipient),
        (_t("meta.frequency", lang), freq),
        (_t("meta.cutoff", lang), m.cutoff),
        (_t("meta.deadline", lang), f"{report.deadline:%d/%m/%Y}"),
        (_t("meta.method", lang), m.method),
        (_t("meta.template", lang), m.template),
    ]


def to_json(report: Report, lang: str = "vi") -> str:
    """The report as JSON (numbers as numbers; labels in ``lang``)."""
    p = report.plan
    doc = {
        "plan": {
            "id": p.id,
            "title": p.title,
            "number": p.number,
            "issuer": p.issuer,
            "issued": p.issued.isoformat(),
            "years": list(p.years),
            "baseline": p.baseline.isoformat(),
        },
        "report": {
            k: v
            for k, v in attrs.asdict(p.report, recurse=False).items()
            if k not in ("due_before", "due_by")
        },
        "area": {"code": report.area.code, "name": report.area.name},
        "as_of": report.as_of.isoformat(),
        "evaluated_on": report.evaluated_on.isoformat(),
        "year": report.year,
        "period": {"start": report.period.start.isoformat(), "end": report.period.end.isoformat()},
        "deadline": report.deadline.isoformat(),
        "rows": [_row_json(i + 1, r, lang) for i, r in enumerate(report.rows)],
        "operational": [_row_json(i + 1, r, lang) for i, r in enumerate(report.operational)],
        "history": {
            k: [
                {
                    "year": h.year,
                    "day": h.day.isoformat(),
                    "value": None if h.value is None else round(h.value, 4),
                    "numerator": _plain(h.numerator),
                    "denominator": _plain(h.denominator),
                    "target": None if h.target is None else h.target.text,
                    "met": h.met,
                }
                for h in v
            ]
            for k, v in report.history.items()
        },
        "notes": [n.text(lang) for n in report.notes],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2)


def to_csv(report: Report, lang: str = "vi") -> str:
    """One line per indicator (plan rows, then operational ones); numbers with a dot."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "indicator",
            _t("ref", lang),
            _t("indicator", lang),
            _t("value", lang),
            "numerator",
            "denominator",
            _t("target", lang),
            _t("assessment", lang),
        ]
    )
    for r in (*report.rows, *report.operational):
        v = r.value.value
        w.writerow(
            [
                r.indicator.id,
                r.ref,
                r.name(lang),
                "" if v is None else f"{v:.2f}",
                _plain(r.value.numerator),
                _plain(r.value.denominator),
                "" if r.target is None else r.target.label("en"),
                _assessment(r.met, r.target, lang),
            ]
        )
    return buf.getvalue()


def to_table(report: Report, lang: str = "vi", width: int | None = 160) -> str:
    """The report as a terminal table (rich), met / not met marked in colour."""
    from rich.console import Console
    from rich.table import Table

    console = Console(
        file=io.StringIO(), width=width, highlight=False, markup=False, force_terminal=False
    )
    p = report.plan
    console.print(f"{_t('title', lang)}: {p.title}")
    console.print(
        f"{_t('area', lang)}: {report.area.name} ({report.area.code}) · {_t('year', lang)} "
        f"{report.year} · {_t('period', lang)} {report.period.label()} · "
        f"{_t('deadline', lang)} {report.deadline:%d/%m/%Y}"
    )
    for rows, title in ((report.rows, _t("plan", lang)), (report.operational, None)):
        if not rows:
            continue
        table = Table(title=title or _t("operational", lang), show_lines=False)
        for col in ("no", "indicator", "value", "fraction", "target", "assessment"):
            table.add_column(_t(col, lang), overflow="fold")
        for i, r in enumerate(rows):
            style = {True: "green", False: "red", None: ""}[r.met]
            extra = ""
            if r.value.breakdown:
                parts = ", ".join(f"{k}: {v}" for k, v in r.value.breakdown.items())
                extra = f" ({_t('by_category', lang)}: {parts})"
            table.add_row(
                str(i + 1),
                r.name(lang) + extra,
                format_value(r.value, lang, r.target),
                format_fraction(r.value, lang),
                "" if r.target is None else r.target.label(lang),
                _assessment(r.met, r.target, lang),
                style=style,
            )
        console.print(table)
    for note in report.notes:
        console.print(f"{_t('notes', lang)}: {note.text(lang)}")
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


_CSS = """
body{font-family:"Noto Sans","DejaVu Sans",Arial,sans-serif;margin:24px;color:#263238}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}
.sub{color:#546e7a;margin:0 0 12px}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{border:1px solid #cfd8dc;padding:4px 8px;font-size:13px;vertical-align:top}
th{background:#eceff1;text-align:left}
td.num{text-align:right;white-space:nowrap}
tr.met td.mark{color:#2e7d32;font-weight:bold}tr.not-met td.mark{color:#c62828;font-weight:bold}
.charts{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;border:1px solid #cfd8dc;padding:8px;width:520px}
figcaption{font-size:12px;margin-bottom:4px}
.notes li{font-size:13px;color:#6d4c41}
"""


def _html_rows(rows: Sequence[ReportRow], lang: str) -> str:
    out = []
    for i, r in enumerate(rows):
        cls = {True: "met", False: "not-met", None: ""}[r.met]
        name = escape(r.name(lang))
        if r.value.breakdown:
            parts = ", ".join(f"{escape(k)}: {v}" for k, v in r.value.breakdown.items())
            name += f"<br><small>{_t('by_category', lang)}: {parts}</small>"
        if r.note:
            name += f"<br><small>{escape(r.note)}</small>"
        out.append(
            f'<tr class="{cls}" data-indicator="{r.indicator.id}"><td>{i + 1}</td>'
            f"<td>{escape(r.ref)}</td><td>{name}</td>"
            f'<td class="num">{escape(format_value(r.value, lang, r.target))}</td>'
            f'<td class="num">{escape(format_fraction(r.value, lang))}</td>'
            f'<td class="num">{escape("" if r.target is None else r.target.label(lang))}</td>'
            f'<td class="mark">{escape(_assessment(r.met, r.target, lang))}</td></tr>'
        )
    return "".join(out)


def _chart(report: Report, row: ReportRow, lang: str) -> str:
    ind = row.indicator
    points = []
    for h in report.history.get(ind.id, ()):
        if ind.kind is IndicatorKind.COUNT or (h.target is not None and not h.target.percent):
            value: float | None = float(h.numerator)
            value_text = _num(h.numerator, lang)
        else:
            value = h.value
            value_text = "—" if h.value is None else f"{_num(h.value, lang)}%"
        points.append(
            ChartPoint(
                str(h.year),
                value,
                None if h.target is None else float(h.target.amount),
                h.met,
                value_text,
                "" if h.target is None else h.target.label(lang),
            )
        )
    percent = ind.kind is IndicatorKind.RATIO and not any(
        h.target is not None and not h.target.percent for h in report.history.get(ind.id, ())
    )
    return bar_chart(
        ind.id,
        row.name(lang),
        points,
        percent=percent,
        labels=(_t("met", lang), _t("not_met", lang), _t("legend.target", lang)),
    )


def to_html(report: Report, lang: str = "vi") -> str:
    """A self-contained HTML page: metadata, the table, one inline SVG chart per indicator."""
    p = report.plan
    head = "".join(
        f"<th>{_t(c, lang)}</th>"
        for c in ("no", "ref", "indicator", "value", "fraction", "target", "assessment")
    )
    meta = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in _meta(report, lang)
    )
    charts = "".join(
        f"<figure><figcaption>{escape(r.ref)} {escape(r.name(lang))}</figcaption>"
        f"{_chart(report, r, lang)}</figure>"
        for r in report.rows
    )
    ops = ""
    if report.operational:
        ops = (
            f"<h2>{_t('operational', lang)}</h2><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{_html_rows(report.operational, lang)}</tbody></table>"
        )
    notes = ""
    if report.notes:
        items = "".join(f"<li>{escape(n.text(lang))}</li>" for n in report.notes)
        notes = f'<h2>{_t("notes", lang)}</h2><ul class="notes">{items}</ul>'
    number = f"{escape(p.number)} · " if p.number else ""
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{escape(_t('title', lang))} · {escape(report.area.name)} · {report.year}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{escape(_t('title', lang))}: {escape(report.area.name)} ({report.year})</h1>"
        f'<p class="sub">{_t("plan", lang)}: {number}{escape(p.title)} · {escape(p.issuer)} · '
        f"{p.issued:%d/%m/%Y}</p>"
        f'<p class="sub">{_t("as_of", lang)} {report.as_of:%d/%m/%Y} · '
        f"{_t('evaluated_on', lang)} {report.evaluated_on:%d/%m/%Y} · "
        f"{_t('period', lang)} {report.period.label()}</p>"
        f'<h2>{_t("report_meta", lang)}</h2><table class="meta">{meta}</table>'
        f'<h2>{_t("plan", lang)}</h2><table class="kpi"><thead><tr>{head}</tr></thead>'
        f"<tbody>{_html_rows(report.rows, lang)}</tbody></table>"
        f'{ops}<h2>{_t("charts", lang)}</h2><div class="charts">{charts}</div>{notes}'
        "</body></html>"
    )


def render(report: Report, fmt: str = "table", lang: str = "vi") -> str:
    """The report in ``fmt`` (table, json, csv, html) and ``lang`` (vi, en)."""
    if lang not in ("vi", "en"):
        raise ValidationError("lang", "give vi or en")
    if fmt == "table":
        return to_table(report, lang)
    if fmt == "json":
        return to_json(report, lang)
    if fmt == "csv":
        return to_csv(report, lang)
    if fmt == "html":
        return to_html(report, lang)
    raise ValidationError("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")


# ------------------------------------------------------------------------------------------
# As-run log
# ------------------------------------------------------------------------------------------


def render_asrun(rows: Sequence[AsRunRow], fmt: str = "table", lang: str = "vi") -> str:
    """The as-run log as a table, JSON or CSV."""
    cols = (
        "asrun.occurrence",
        "asrun.device",
        "asrun.area",
        "asrun.title_col",
        "asrun.category",
        "asrun.duration",
        "asrun.status",
        "asrun.at",
        "asrun.reason",
    )

    def cells(r: AsRunRow) -> list[str]:
        return [
            r.occurrence.isoformat(),
            r.device_name,
            f"{r.area_code} {r.area_name}",
            r.title,
            r.category,
            str(r.duration_s),
            _t(f"status.{r.status}", lang),
            "" if r.at is None else r.at.isoformat(),
            r.reason,
        ]

    if fmt == "json":
        return json.dumps(
            [
                {
                    "occurrence": r.occurrence.isoformat(),
                    "device_id": str(r.device_id),
                    "device": r.device_name,
                    "area": {"code": r.area_code, "name": r.area_name},
                    "title": r.title,
                    "category": r.category,
                    "duration_s": r.duration_s,
                    "status": r.status,
                    "at": None if r.at is None else r.at.isoformat(),
                    "reason": r.reason,
                    "dispatch_id": str(r.dispatch_id),
                }
                for r in rows
            ],
            ensure_ascii=False,
            indent=2,
        )
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([_t(c, lang) for c in cols])
        for r in rows:
            w.writerow(cells(r))
        return buf.getvalue()
    if fmt != "table":
        raise ValidationError("format", "give table, json or csv")
    from rich.console import Console
    from rich.table import Table

    console = Console(file=io.StringIO(), width=200, highlight=False, markup=False)
    table = Table(title=_t("asrun.title", lang))
    for c in cols:
        table.add_column(_t(c, lang), overflow="fold")
    for r in rows:
        table.add_row(*cells(r))
    console.print(table)
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()
