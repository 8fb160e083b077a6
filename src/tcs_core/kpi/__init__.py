"""KPIs (chỉ tiêu): the provincial plans' indicators as of any date, targets, reports, planner.

- ``INDICATORS``: the indicator definitions (Vietnamese wording, English name, what the numerator
  and denominator count);
- ``Kpis(app)``: indicators of a ``SourceSystem`` as of any date, over the structure of that date
  (``as_of``), re-attributed to later areas (``reattribute``), and the as-run log (``asrun``),
  from a ``KpiProjection`` kept current from the notification log;
- ``load_plan``: plans as TOML data files with targets per year, reporting window and the report
  metadata of Thông tư 02/2023/TT-BTTTT;
- ``build_report`` / ``render``: a plan's report as a table, JSON, CSV or HTML with SVG charts;
- ``plan_conversions``: the wired/FM → IP conversion queue and the yearly needs;
- ``generate_history``: reproducible example data.

See docs/kpi.md.
"""

from tcs_core.kpi.engine import (
    DEFAULT_BASELINE,
    AsRunRow,
    Evaluation,
    IndicatorValue,
    Kpis,
    Part,
    Reattribution,
    evaluate,
    reattribute,
)
from tcs_core.kpi.example import ExampleHistory, generate_history
from tcs_core.kpi.indicators import (
    INDICATORS,
    OPERATIONAL,
    PLAN_INDICATORS,
    Indicator,
    IndicatorKind,
    Unit,
    indicator,
)
from tcs_core.kpi.periods import ND09_ANNUAL, AnnualWindow, MonthDay, Period
from tcs_core.kpi.planner import ConversionPlan, plan_conversions, render_conversions
from tcs_core.kpi.plans import (
    Plan,
    PlanError,
    PlanTarget,
    ReportMeta,
    Target,
    load_plan,
    load_plans,
)
from tcs_core.kpi.projection import KpiProjection
from tcs_core.kpi.report import Report, ReportRow, build_report, render, render_asrun

__all__ = [
    "DEFAULT_BASELINE",
    "INDICATORS",
    "ND09_ANNUAL",
    "OPERATIONAL",
    "PLAN_INDICATORS",
    "AnnualWindow",
    "AsRunRow",
    "ConversionPlan",
    "Evaluation",
    "ExampleHistory",
    "Indicator",
    "IndicatorKind",
    "IndicatorValue",
    "KpiProjection",
    "Kpis",
    "MonthDay",
    "Part",
    "Period",
    "Plan",
    "PlanError",
    "PlanTarget",
    "Reattribution",
    "Report",
    "ReportMeta",
    "ReportRow",
    "Target",
    "Unit",
    "build_report",
    "evaluate",
    "generate_history",
    "indicator",
    "load_plan",
    "load_plans",
    "plan_conversions",
    "reattribute",
    "render",
    "render_asrun",
    "render_conversions",
]
