"""Plans as data: a provincial plan's area, targets per year, reporting window and report metadata.

A plan is a TOML file (see ``examples/plans/``). ``load_plan(path)`` validates all of it and raises
``PlanError`` naming the file, the key and the reason; nothing half-valid is returned. The format:

.. code-block:: toml

    [plan]
    id = "binh-duong-6587-2023"          # letters, digits, dashes
    title = "Kế hoạch ..."                # as the plan is titled
    issuer = "Ủy ban nhân dân tỉnh Bình Dương"
    number = "6587/KH-UBND"               # optional
    issued = 2023-12-18                   # TOML date
    source = "001_3d880d7fbad6c1ef.txt"   # optional: the text it was encoded from
    years = [2023, 2024, 2025]            # the years the plan sets targets for
    baseline = 2021-01-01                 # wired/FM stations counted for conversion on this
                                          # day (default: 2021-01-01, the strategy's start)

    [area]                                # codes are reused: a code is read on a date
    code = "74"
    on = 2023-12-18
    name = "Tỉnh Bình Dương"              # checked against the data when evaluated

    [window]                              # annual cut-off, NĐ 09/2019: 15/12 → 14/12
    start = "12-15"
    end = "12-14"

    [report]                              # Thông tư 02/2023/TT-BTTTT: what a report states
    name = "..."
    content = "..."
    reporter = "..."
    recipient = "..."
    frequency = "annual"
    cutoff = "..."                        # optional: derived from [window] when absent
    due_before = "12-15"                  # or due_by = "12-31" (the last day allowed)
    method = "..."
    template = "..."

    [[target]]
    indicator = "radio_coverage"          # an id of tcs_core.kpi.INDICATORS
    ref = "Phụ lục, 1.1"                  # where the plan states it
    wording = "Tỷ lệ xã, phường, thị trấn có hệ thống truyền thanh ..."
    by_year = { 2023 = "95%", 2024 = "98%", 2025 = "100%" }

A target is a percentage (``"95%"``: at least 95 %, as the plans' "đạt 95%"), a threshold
(``"> 70%"``, ``">= 25%"``, ``"≥ 25%"``) or a count (``"20"``, ``"≥ 2"``: compared with the
indicator's numerator, e.g. communes or stations).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs

from tcs_core.errors import ValidationError
from tcs_core.kpi.indicators import INDICATORS, Indicator, IndicatorKind
from tcs_core.kpi.periods import AnnualWindow, MonthDay, Period

__all__ = [
    "FREQUENCIES",
    "Note",
    "Plan",
    "PlanArea",
    "PlanError",
    "PlanTarget",
    "ReportMeta",
    "Target",
    "load_plan",
    "load_plans",
    "parse_plan",
    "parse_target",
]

#: Report frequencies a plan may name (TT 02/2023 "tần suất"), with their Vietnamese words.
FREQUENCIES: dict[str, str] = {"annual": "Hằng năm"}
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_TARGET = re.compile(r"^\s*(>=|≥|>|=)?\s*(\d+(?:[.,]\d+)?)\s*(%)?\s*$")


class PlanError(ValidationError):
    """A plan file is invalid: names the file, the key and the reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(key, reason)
        self.args = (f"{source}: {key}: {reason}",)

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.reason}"


@attrs.frozen
class Note:
    """A remark shown with a report, in Vietnamese and English."""

    vi: str
    en: str

    def text(self, lang: str) -> str:
        """The remark in ``lang``."""
        return self.vi if lang == "vi" else self.en


@attrs.frozen
class Target:
    """A target: ``op`` (``>=`` or ``>``) and ``amount``, a percentage or a count."""

    op: str
    amount: Fraction
    percent: bool
    text: str

    def met(self, numerator: Fraction | int, value: Fraction | None) -> bool | None:
        """Whether the indicator meets it; None when the value is undefined (no denominator).

        A percentage compares the exact value; a count compares the numerator."""
        measured: Fraction | None = value if self.percent else Fraction(numerator)
        if measured is None:
            return None
        if self.op == ">":
            return measured > self.amount
        if self.op == "=":
            return measured == self.amount
        return measured >= self.amount

    def label(self, lang: str = "vi") -> str:
        """``≥ 95%``, ``> 70%``, ``≥ 20`` (decimal comma in Vietnamese)."""
        amount = _number(self.amount, lang)
        sign = {">=": "≥", ">": ">", "=": "="}[self.op]
        return f"{sign} {amount}{'%' if self.percent else ''}"


def _number(x: Fraction, lang: str) -> str:
    text = str(int(x)) if x.denominator == 1 else f"{float(x):.2f}".rstrip("0").rstrip(".")
    return text.replace(".", ",") if lang == "vi" else text


def parse_target(text: str, indicator: Indicator | None = None) -> Target:
    """``"95%"`` / ``"> 70%"`` / ``"≥ 25%"`` / ``"20"`` → ``Target``; ValueError says why."""
    if not isinstance(text, str):
        raise ValueError(f"a target is a string such as '95%' or '> 70%', not {text!r}")
    m = _TARGET.match(text)
    if m is None:
        raise ValueError(
            f"{text!r} is not a target: write a percentage ('95%'), a threshold ('> 70%', "
            "'>= 25%') or a count ('20', '>= 2')"
        )
    op = {"≥": ">=", None: ">="}.get(m.group(1), m.group(1))
    amount = Fraction(m.group(2).replace(",", "."))
    percent = m.group(3) is not None
    if percent and not (0 <= amount <= 100):
        raise ValueError(f"{text!r}: a percentage lies between 0% and 100%")
    if not percent and amount.denominator != 1:
        raise ValueError(f"{text!r}: a count is a whole number")
    if indicator is not None and percent and indicator.kind is IndicatorKind.COUNT:
        raise ValueError(
            f"{text!r}: {indicator.id} is a count; give a count target (e.g. '2'), not a percentage"
        )
    return Target(str(op), amount, percent, text.strip())


@attrs.frozen
class PlanTarget:
    """One indicator's targets in a plan, as the plan words it."""

    indicator: Indicator
    wording: str
    ref: str
    by_year: Mapping[int, Target]
    note: str = ""

    def for_year(self, year: int) -> Target | None:
        """The target set for ``year``, if any."""
        return self.by_year.get(year)


@attrs.frozen
class PlanArea:
    """The plan's area: ``code`` read on ``on`` (codes are reused after 2025)."""

    code: str
    on: date
    name: str


@attrs.frozen
class ReportMeta:
    """What Thông tư 02/2023/TT-BTTTT requires a periodic report to state."""

    name: str
    content: str
    reporter: str
    recipient: str
    frequency: str
    cutoff: str
    method: str
    template: str
    due_before: MonthDay | None = None
    due_by: MonthDay | None = None

    def deadline(self, year: int, window: AnnualWindow) -> date:
        """The last day the report of ``year`` may be sent (in the year its window ends)."""
        if self.due_by is not None:
            return self.due_by.in_year(year)
        assert self.due_before is not None
        return date.fromordinal(self.due_before.in_year(year).toordinal() - 1)


@attrs.frozen
class Plan:
    """A provincial (or district) plan: its area, targets by year, window and report metadata."""

    id: str
    title: str
    issuer: str
    number: str
    issued: date
    source: str
    years: tuple[int, ...]
    baseline: date
    area: PlanArea
    window: AnnualWindow
    report: ReportMeta
    targets: tuple[PlanTarget, ...]
    path: str = ""
    warnings: tuple[Note, ...] = ()

    def period(self, year: int) -> Period:
        """The reporting window of ``year``."""
        return self.window.period(year)

    def year_of(self, day: date) -> int:
        """The report year whose window contains ``day``."""
        return self.window.year_of(day)

    def target(self, indicator_id: str) -> PlanTarget | None:
        """The plan's targets for an indicator, if it sets any."""
        return next((t for t in self.targets if t.indicator.id == indicator_id), None)


# ------------------------------------------------------------------------------------------
# Loading and validation
# ------------------------------------------------------------------------------------------


class _Reader:
    """Typed access to a TOML table that reports errors with the file and the dotted key."""

    def __init__(self, source: str, table: Mapping[str, Any], prefix: str) -> None:
        self.source = source
        self.table = table
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, reason: str) -> PlanError:
        return PlanError(self.source, self.key(name), reason)

    def only(self, allowed: Sequence[str]) -> None:
        extra = sorted(set(self.table) - set(allowed))
        if extra:
            raise self.fail(extra[0], f"unknown key; allowed here: {', '.join(sorted(allowed))}")

    def get(self, name: str, kind: type[Any], required: bool = True, default: Any = None) -> Any:
        if name not in self.table:
            if required:
                raise self.fail(name, f"missing (a {kind.__name__} is required)")
            return default
        value = self.table[name]
        if kind is date and not isinstance(value, date):
            raise self.fail(name, f"expected a TOML date (e.g. 2023-12-18), got {value!r}")
        if kind is str and (not isinstance(value, str) or not value.strip()):
            raise self.fail(name, f"expected a non-empty string, got {value!r}")
        if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise self.fail(name, f"expected an integer, got {value!r}")
        if kind in (dict, list) and not isinstance(value, kind):
            raise self.fail(name, f"expected a {'table' if kind is dict else 'list'}")
        return value.strip() if isinstance(value, str) else value

    def sub(self, name: str) -> _Reader:
        return _Reader(self.source, self.get(name, dict), self.key(name))

    def month_day(self, name: str, required: bool = True) -> MonthDay | None:
        text = self.get(name, str, required)
        if text is None:
            return None
        try:
            return MonthDay.parse(text)
        except ValidationError as exc:
            raise self.fail(name, exc.reason) from None


def parse_plan(data: Mapping[str, Any], source: str = "<plan>") -> Plan:
    """Validate a plan already read from TOML; PlanError names ``source``, the key, the reason."""
    top = _Reader(source, data, "")
    top.only(("plan", "area", "window", "report", "target"))
    p = top.sub("plan")
    p.only(("id", "title", "issuer", "number", "issued", "source", "years", "baseline"))
    plan_id = p.get("id", str)
    if not _ID.match(plan_id):
        raise p.fail("id", "use lowercase letters, digits and dashes (e.g. 'binh-dinh-2022')")
    years_raw = p.get("years", list)
    if not years_raw or not all(isinstance(y, int) and 2000 <= y <= 2100 for y in years_raw):
        raise p.fail("years", "give the plan's years, e.g. [2023, 2024, 2025]")
    years = tuple(sorted(set(years_raw)))
    if years != tuple(range(years[0], years[-1] + 1)):
        raise p.fail("years", "the years must follow each other without gaps")

    a = top.sub("area")
    a.only(("code", "on", "name"))
    code = a.get("code", str)
    if not re.fullmatch(r"[0-9A-Za-z]{1,32}", code):
        raise a.fail("code", f"{code!r} is not an area code (digits, e.g. '52' or '632')")
    area = PlanArea(code, a.get("on", date), a.get("name", str))

    w = top.sub("window") if "window" in data else _Reader(source, {}, "window")
    w.only(("start", "end"))
    start = w.month_day("start", required=False) or MonthDay(12, 15)
    end = w.month_day("end", required=False) or MonthDay(12, 14)
    try:
        window = AnnualWindow(start, end)
    except ValidationError as exc:
        raise w.fail("end", exc.reason) from None

    r = top.sub("report")
    r.only(
        (
            "name",
            "content",
            "reporter",
            "recipient",
            "frequency",
            "cutoff",
            "due_before",
            "due_by",
            "method",
            "template",
        )
    )
    frequency = r.get("frequency", str)
    if frequency not in FREQUENCIES:
        raise r.fail("frequency", f"{frequency!r} is not one of {', '.join(FREQUENCIES)}")
    due_before = r.month_day("due_before", required=False)
    due_by = r.month_day("due_by", required=False)
    if (due_before is None) == (due_by is None):
        raise r.fail("due_before", 'give exactly one of due_before ("trước ngày") or due_by')
    example = window.period(2024)
    cutoff = r.get(
        "cutoff",
        str,
        required=False,
        default=(
            f"Từ ngày {example.start:%d/%m} năm trước đến hết ngày {example.end:%d/%m} năm báo cáo"
            if window.crosses_year
            else f"Từ ngày {example.start:%d/%m} đến hết ngày {example.end:%d/%m}"
        ),
    )
    report = ReportMeta(
        name=r.get("name", str),
        content=r.get("content", str),
        reporter=r.get("reporter", str),
        recipient=r.get("recipient", str),
        frequency=frequency,
        cutoff=cutoff,
        method=r.get("method", str),
        template=r.get("template", str),
        due_before=due_before,
        due_by=due_by,
    )

    raw_targets = top.get("target", list)
    if not raw_targets:
        raise top.fail("target", "a plan sets at least one target ([[target]] tables)")
    targets: list[PlanTarget] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_targets):
        if not isinstance(raw, dict):
            raise PlanError(source, f"target[{i}]", "expected a table ([[target]])")
        t = _Reader(source, raw, f"target[{i}]")
        t.only(("indicator", "wording", "ref", "by_year", "note"))
        ind_id = t.get("indicator", str)
        ind = INDICATORS.get(ind_id)
        if ind is None:
            raise t.fail(
                "indicator", f"unknown indicator {ind_id!r}; known: {', '.join(INDICATORS)}"
            )
        if ind_id in seen:
            raise t.fail("indicator", f"{ind_id} has targets twice; merge them into one by_year")
        seen.add(ind_id)
        table = t.sub("by_year")
        if not table.table:
            raise t.fail("by_year", "give at least one year's target")
        by_year: dict[int, Target] = {}
        for key, value in table.table.items():
            if not str(key).isdigit() or int(key) not in years:
                raise table.fail(str(key), f"not one of the plan's years {list(years)}")
            try:
                by_year[int(key)] = parse_target(value, ind)
            except ValueError as exc:
                raise table.fail(str(key), str(exc)) from None
        targets.append(
            PlanTarget(
                ind,
                t.get("wording", str),
                t.get("ref", str),
                dict(sorted(by_year.items())),
                t.get("note", str, required=False, default=""),
            )
        )

    warnings = []
    due = report.deadline(years[0], window)
    cut = window.period(years[0]).end
    if due < cut:
        warnings.append(
            Note(
                f"Hạn gửi báo cáo ({due:%d/%m}) đến trước ngày chốt số liệu ({cut:%d/%m}): số "
                "liệu phát sinh sau hạn gửi không có trong báo cáo đã gửi.",
                f"The report is due by {due:%d/%m}, before its data cut-off ({cut:%d/%m}): "
                "figures after the deadline are not in the report as sent.",
            )
        )
    return Plan(
        id=plan_id,
        title=p.get("title", str),
        issuer=p.get("issuer", str),
        number=p.get("number", str, required=False, default=""),
        issued=p.get("issued", date),
        source=p.get("source", str, required=False, default=""),
        years=years,
        baseline=p.get("baseline", date, required=False, default=date(2021, 1, 1)),
        area=area,
        window=window,
        report=report,
        targets=tuple(targets),
        path=source,
        warnings=tuple(warnings),
    )


def load_plan(path: str | Path) -> Plan:
    """Read and validate one plan file; PlanError names the file, the key and the reason."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(str(p), "-", "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(str(p), "-", f"not valid TOML: {exc}") from None
    return parse_plan(data, str(p))


def load_plans(directory: str | Path) -> list[Plan]:
    """Every ``*.toml`` plan in ``directory``, sorted by file name."""
    return [load_plan(p) for p in sorted(Path(directory).glob("*.toml"))]
