"""KPIs on the small sample province: definitions, as-of values counted by hand, re-attribution,
operational indicators, as-run log, plans (validation), planner, renderings, CLI, catch-up."""

from __future__ import annotations

import argparse
import io
import json
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import pytest

from tcs_core import (
    Category,
    Channel,
    DeliveryOutcome,
    ScheduleSpec,
    Settings,
    SourceSystem,
    SpeechContent,
    Targets,
)
from tcs_core.domain.facility import Station
from tcs_core.domain.feedback import Feedback
from tcs_core.domain.values import Condition, FeedbackChannel, StationKind
from tcs_core.kpi import (
    INDICATORS,
    ND09_ANNUAL,
    IndicatorKind,
    KpiProjection,
    Kpis,
    MonthDay,
    Period,
    PlanError,
    build_report,
    load_plan,
    plan_conversions,
    render,
    render_asrun,
    render_conversions,
)
from tcs_core.kpi.cli import add_kpi_commands, build_kpi_parser, main, run_kpi_command
from tcs_core.kpi.example import build_sample_province, generate_history
from tcs_core.kpi.periods import AnnualWindow, nd09_half_year, nd09_month
from tcs_core.kpi.planner import required_count
from tcs_core.kpi.plans import parse_plan, parse_target
from tcs_core.testing.fixtures import make_source_system

ROOT = Path(__file__).resolve().parents[1]
PLANS = ROOT / "examples" / "plans"
ICT = timezone(timedelta(hours=7))
BEFORE = date(2024, 12, 14)  # legacy structure: 5 communes, 2 districts
AFTER = date(2025, 12, 14)  # 2025 structure: 3 communes, no district


def sample(settings: Settings | None = None) -> SourceSystem:
    """A fresh app with the sample province (see build_sample_province)."""
    app = make_source_system(settings or Settings.in_memory())
    build_sample_province(app)
    return app


def station(app: SourceSystem, code: str, kind: str = "wired", **kw: object) -> object:
    """Register a station in ``code`` effective 2020-01-01 unless told otherwise."""
    kw.setdefault("effective", date(2020, 1, 1))
    kw.setdefault("commissioned_year", 2012)
    return app.register_station(f"Đài {code}", area=code, kind=kind, actor="admin", **kw)  # type: ignore[arg-type]


SAMPLE_PLAN = """
[plan]
id = "sample"
title = "Kế hoạch mẫu"
issuer = "UBND tỉnh Mẫu"
issued = 2023-01-10
years = [2023, 2024, 2025]
baseline = 2021-01-01

[area]
code = "P9"
on = 2023-01-10
name = "Tỉnh Mẫu"

[report]
name = "Báo cáo mẫu"
content = "Các chỉ tiêu"
reporter = "Sở"
recipient = "Bộ"
frequency = "annual"
due_before = "12-15"
method = "Văn bản điện tử"
template = "Phụ lục"

[[target]]
indicator = "radio_coverage"
ref = "1"
wording = "Tỷ lệ xã, phường, thị trấn có hệ thống truyền thanh hoạt động đến thôn"
by_year = { 2023 = "40%", 2024 = "60%", 2025 = "100%" }

[[target]]
indicator = "ip_conversion"
ref = "2"
wording = "Tỷ lệ chuyển đổi đài truyền thanh có dây/không dây FM"
by_year = { 2024 = "> 50%", 2025 = "100%" }

[[target]]
indicator = "ip_conversion_annual"
ref = "3"
wording = "Đài chuyển đổi trong năm"
by_year = { 2024 = "1", 2025 = "≥ 25%" }
"""


def sample_plan() -> object:
    import tomllib

    return parse_plan(tomllib.loads(SAMPLE_PLAN), "sample.toml")


# ------------------------------------------------------------------------------------------
# Definitions and periods
# ------------------------------------------------------------------------------------------


def test_every_indicator_has_both_names_and_what_it_counts() -> None:
    """Each indicator carries a Vietnamese and an English name, numerator and denominator."""
    for ind in INDICATORS.values():
        for lang in ("vi", "en"):
            assert ind.name(lang) and ind.numerator(lang) and ind.denominator(lang)
    assert INDICATORS["website_urban"].name_vi.startswith("Tỷ lệ Ủy ban nhân dân phường, thị trấn")


def test_nd09_windows() -> None:
    """NĐ 09/2019: annual 15/12–14/12, half-years and months cut on the 14th."""
    assert ND09_ANNUAL.period(2024) == Period(date(2023, 12, 15), date(2024, 12, 14))
    assert ND09_ANNUAL.year_of(date(2024, 12, 14)) == 2024
    assert ND09_ANNUAL.year_of(date(2024, 12, 15)) == 2025
    assert nd09_half_year(2024, 1) == Period(date(2023, 12, 15), date(2024, 6, 14))
    assert nd09_month(2024, 1) == Period(date(2023, 12, 15), date(2024, 1, 14))
    calendar = AnnualWindow(MonthDay(1, 1), MonthDay(12, 31))
    assert calendar.period(2024) == Period(date(2024, 1, 1), date(2024, 12, 31))
    with pytest.raises(ValueError, match="whole year"):
        AnnualWindow(MonthDay(12, 15), MonthDay(12, 10))


# ------------------------------------------------------------------------------------------
# Stock indicators as of a date, counted by hand
# ------------------------------------------------------------------------------------------


def test_stock_indicators_before_and_after_the_reform() -> None:
    """Values as of a legacy date and a 2025 date equal the hand counts of communes."""
    app = sample()
    station(app, "X1")  # good, reaches villages: covered
    s2 = station(app, "X2", kind="fm")
    app.assess_station(
        s2, "broken", reaches_villages=True, effective=date(2024, 3, 1), actor="admin"
    )
    station(app, "T3", reaches_villages=False)
    station(app, "W1", kind="ip")
    s_new = station(app, "W2", effective=date(2022, 6, 1))  # wired, after the baseline
    app.convert_station(s_new, effective=date(2023, 1, 1), actor="admin")
    app.convert_station(s2, effective=date(2025, 8, 1), actor="admin")
    app.establish_facility(
        "Web X1", "website", area="X1", effective=date(2022, 1, 1), actor="admin"
    )
    app.establish_facility(
        "Web W1", "website", area="W1", effective=date(2024, 12, 15), actor="admin"
    )
    app.establish_facility(
        "Bảng T3", "eboard", area="T3", effective=date(2023, 1, 1), actor="admin"
    )
    app.establish_facility(
        "Bảng T3 b", "eboard", area="T3", effective=date(2023, 1, 1), actor="admin"
    )
    b = app.establish_facility(
        "LED D2", "district_board", area="D2", effective=date(2022, 1, 1), actor="admin"
    )
    app.connect_facility(b, effective=date(2024, 5, 1), actor="admin")
    app.establish_facility(
        "LED D1", "district_board", area="D1", effective=date(2022, 1, 1), actor="admin"
    )
    app.establish_facility(
        "Nguồn", "source_system", area="P9", effective=date(2023, 3, 1), actor="admin"
    )
    kpis = Kpis(app)

    ev = kpis.as_of("P9", BEFORE)
    assert ev.scope is not None and ev.scope.code == "P9"
    # Communes on 2024-12-14: X1, X2 (xã), T3 (thị trấn), W1, W2 (phường).
    # Serving villages: X1 (good), W1 (IP), W2 (converted); X2 is broken, T3 does not reach.
    assert (ev["radio_coverage"].numerator, ev["radio_coverage"].denominator) == (3, 5)
    # Baseline 2021-01-01: wired/FM stations then are X1, X2, T3 (W2 came later, W1 is IP).
    assert (ev["ip_conversion"].numerator, ev["ip_conversion"].denominator) == (0, 3)
    assert (ev["website_urban"].numerator, ev["website_urban"].denominator) == (0, 3)  # W1 later
    assert (ev["website_rural"].numerator, ev["website_rural"].denominator) == (1, 2)
    assert (ev["eboard_urban"].numerator, ev["eboard_urban"].denominator) == (1, 3)
    assert (ev["eboard_count_urban"].numerator, ev["eboard_count_urban"].denominator) == (2, 3)
    assert (
        ev["district_board_connected"].numerator,
        ev["district_board_connected"].denominator,
    ) == (1, 2)
    assert ev["district_board_connected_town"].numerator == 1  # Thành phố Biển
    assert ev["district_board_connected_rural"].denominator == 1  # Huyện Núi, not connected
    assert ev["source_system"].value == 100.0
    assert ev["radio_coverage"].value == 60.0
    assert ev["ip_conversion"].exact == Fraction(0)

    after = kpis.as_of("P9", AFTER)
    # Communes on 2025-12-14: W1, W2 (phường), X2 (xã). X1 merged into X2: its good station
    # now covers X2. T3 split into W1 and X2: its facilities go to W1 (first by code).
    assert [after["radio_coverage"].numerator, after["radio_coverage"].denominator] == [3, 3]
    assert (after["ip_conversion"].numerator, after["ip_conversion"].denominator) == (1, 3)
    assert (after["eboard_count_urban"].numerator, after["eboard_count_urban"].denominator) == (
        2,
        2,
    )
    assert (after["website_rural"].numerator, after["website_rural"].denominator) == (1, 1)
    assert after["district_board_connected"].denominator == 0
    assert after["district_board_connected"].value is None
    # The same code, read on an earlier date, names the same province.
    assert kpis.as_of("P9", BEFORE, scope_on=date(2020, 1, 1))["radio_coverage"].numerator == 3


def test_closed_and_later_facts_are_not_counted() -> None:
    """A facility closed on or before the day, or established after it, does not count."""
    app = sample()
    agg = Station(
        name="Đài X1",
        area_id=app.area("X1", BEFORE).area_id,
        kind=StationKind.WIRED,
        commissioned_year=2010,
        condition=Condition.GOOD,
        reaches_villages=True,
        effective=date(2020, 1, 1),
        actor="admin",
    )
    agg.close(date(2024, 6, 1), "admin")
    app.save(agg)
    kpis = Kpis(app)
    assert kpis.as_of("P9", date(2024, 5, 31))["radio_coverage"].numerator == 1
    assert kpis.as_of("P9", date(2024, 6, 1))["radio_coverage"].numerator == 0
    assert kpis.as_of("P9", date(2019, 12, 31))["radio_coverage"].numerator == 0
    # A closed baseline station stays in the conversion denominator, unconverted.
    assert kpis.as_of("P9", BEFORE)["ip_conversion"].denominator == 1


def test_scope_must_exist_on_the_day() -> None:
    """Evaluating a district after it was dissolved says so."""
    app = sample()
    kpis = Kpis(app)
    d1 = kpis.area("D1", BEFORE)
    with pytest.raises(Exception, match="does not exist on 2025-12-14"):
        kpis.as_of(d1.area_id, AFTER)


# ------------------------------------------------------------------------------------------
# Re-attribution
# ------------------------------------------------------------------------------------------


def test_reattribution_follows_merges_and_splits_and_conserves() -> None:
    """Legacy contributions move to the 2025 communes; sums are conserved under both rules."""
    app = sample()
    for code in ("X1", "X2", "T3", "W1"):
        station(app, code)
    kpis = Kpis(app)
    ev = kpis.as_of("P9", BEFORE)
    primary = kpis.reattribute(ev, level="commune")
    # X1 and X2 → X2; T3 → W1 (first successor by code); W1 → W1; W2 → W2.
    assert primary.by_code("radio_coverage") == {"X2": (2, 2), "W1": (2, 2), "W2": (0, 1)}
    fractional = kpis.reattribute(ev, level="commune", rule="fractional")
    half = Fraction(1, 2)
    assert fractional.by_code("radio_coverage") == {
        "X2": (2 + half, 2 + half),
        "W1": (1 + half, 1 + half),
        "W2": (0, 1),
    }
    # Districts have no successor: they go to the successor of their province.
    assert kpis.reattribute(ev, level="commune").by_code("district_board_connected") == {
        "P9": (0, 2)
    }
    for r in (primary, fractional, kpis.reattribute(ev)):
        for iv in ev:
            if iv.additive:
                assert r.totals(iv.indicator.id) == (iv.numerator, iv.denominator)
    assert kpis.reattribute(ev).by_code("radio_coverage") == {"P9": (4, 5)}


# ------------------------------------------------------------------------------------------
# Operational indicators and the as-run log
# ------------------------------------------------------------------------------------------


def _approved_broadcast(app: SourceSystem, duration_s: int = 600) -> object:
    app.create_principal("op.p9", grants=[("operator", "P9")], actor="admin")
    app.create_principal("duyet.p9", grants=[("approver", "P9")], actor="admin")
    b = app.draft_broadcast(
        "Lịch tiêm chủng",
        category=Category.HEALTH,
        content={Channel.AUDIO: SpeechContent("Lịch tiêm chủng tháng này.")},
        targets=Targets(areas=["P9"], channels=["audio"]),
        schedule=ScheduleSpec.recurring("0 6 * * *", duration_s=duration_s),
        actor="op.p9",
    )
    app.submit_broadcast(b, actor="op.p9")
    app.approve_broadcast(b, actor="duyet.p9")
    return b


def test_device_availability_from_transitions() -> None:
    """Online 18 h of 24 h observed on one day: 75 %; unknown time is not observed."""
    app = sample()
    dev = app.register_device(
        "Loa X2",
        "ip_speaker",
        area="X2",
        transport="simulated",
        address="sim://x2",
        channels=["audio"],
        actor="admin",
    )
    day = date(2025, 8, 1)
    t0 = datetime(2025, 8, 1, tzinfo=ICT)
    app.set_device_status(dev, "online", at=t0)
    app.set_device_status(dev, "offline", "no heartbeat", at=t0 + timedelta(hours=6))
    app.set_device_status(dev, "online", at=t0 + timedelta(hours=12))
    app.set_device_status(dev, "maintenance", "planned", at=t0 + timedelta(hours=30))
    kpis = Kpis(app)
    ev = kpis.as_of("P9", day, period=Period(day, day))
    av = ev["device_availability"]
    assert (av.numerator, av.denominator) == (18 * 3600, 24 * 3600)
    assert av.value == 75.0
    two = kpis.as_of("P9", date(2025, 8, 2), period=Period(day, date(2025, 8, 2)))
    assert two["device_availability"].numerator == (18 + 6) * 3600  # maintenance: not observed
    assert two["device_availability"].denominator == (24 + 6) * 3600


def test_sms_subscribers_do_not_count_towards_device_availability() -> None:
    """A citizen's phone (an SMS subscriber) is not equipment: its status, even offline all
    day, leaves the availability of the speakers and boards as it was."""
    app = sample()
    t0 = datetime(2025, 8, 1, tzinfo=ICT)
    speaker, phone = (
        app.register_device(
            name,
            kind,
            area="X2",
            transport=transport,
            address=address,
            channels=[channel],
            actor="admin",
        )
        for name, kind, transport, address, channel in (
            ("Loa X2", "ip_speaker", "simulated", "sim://x2", "audio"),
            ("Thuê bao 1", "sms_subscriber", "sms", "+84912345678", "sms"),
        )
    )
    app.set_device_status(speaker, "online", at=t0)
    app.set_device_status(phone, "offline", "handset off", at=t0)
    day = date(2025, 8, 1)
    av = Kpis(app).as_of("P9", day, period=Period(day, day))["device_availability"]
    assert (av.numerator, av.denominator) == (24 * 3600, 24 * 3600)


def test_on_time_airtime_bulletins_and_asrun() -> None:
    """One dispatch to three speakers: on-time 1/3, airtime and bulletins counted, as-run rows."""
    app = sample()
    b = _approved_broadcast(app, duration_s=900)
    devs = [
        app.register_device(
            f"Loa {i}",
            "ip_speaker",
            area=code,
            transport="simulated",
            address=f"sim://{i}",
            channels=["audio"],
            actor="admin",
        )
        for i, code in enumerate(("X2", "X2", "W1"))
    ]
    occ = datetime(2025, 8, 1, 6, 0, tzinfo=ICT)
    d = app.start_dispatch(b, occ, devs)  # type: ignore[arg-type]
    app.record_outcomes(
        d,
        [
            DeliveryOutcome(devs[0], "delivered", occ + timedelta(seconds=10)),
            DeliveryOutcome(devs[1], "delivered", occ + timedelta(minutes=5)),
            DeliveryOutcome(devs[2], "failed", occ, reason="offline"),
        ],
    )
    kpis = Kpis(app)
    ev = kpis.as_of("P9", date(2025, 8, 31))
    assert (ev["on_time_delivery"].numerator, ev["on_time_delivery"].denominator) == (1, 3)
    # 900 s aired in X2 only, over the 3 communes of 2025: (0.25 h) / 3.
    air = ev["airtime_per_commune"]
    assert (air.numerator, air.denominator) == (Fraction(1, 4), 3)
    assert ev["bulletins_aired"].numerator == 1
    assert ev["bulletins_aired"].breakdown == {"health": 1}
    assert kpis.as_of("W1", date(2025, 8, 31))["bulletins_aired"].numerator == 0
    rows = kpis.asrun("X2", date(2025, 8, 1), date(2025, 8, 1))
    assert sorted((r.device_name, r.status) for r in rows) == [
        ("Loa 0", "delivered"),
        ("Loa 1", "delivered"),
    ]
    assert rows[0].title == "Lịch tiêm chủng" and rows[0].duration_s == 900
    assert kpis.asrun("P9", date(2025, 8, 2), date(2025, 8, 30)) == []
    text = render_asrun(kpis.asrun("P9", date(2025, 8, 1), date(2025, 8, 1)), "csv")
    assert text.count("\n") == 4 and "không phát được" in text
    assert json.loads(render_asrun(rows, "json"))[0]["category"] == "health"


def test_feedback_handled_in_the_period() -> None:
    """Items received in the window; handled = answered or closed by the end of the day."""
    app = sample()
    x2 = app.area("X2", AFTER).area_id
    received = datetime(2025, 3, 1, 9, tzinfo=ICT)
    items = []
    for i, answered in enumerate((timedelta(days=2), timedelta(days=400), None)):
        fb = Feedback(
            channel=FeedbackChannel.SMS,
            area_id=x2,
            sender_ref="0900000000",
            text=f"Ý kiến {i}",
            received_at=received,
            due=date(2025, 3, 8),
            source_ref=f"t-{i}",
            actor="system",
        )
        if answered is not None:
            fb.respond("Đã xử lý", received + answered, "admin")
        items.append(fb)
    app.save(*items)
    ev = Kpis(app).as_of("P9", date(2025, 12, 14))
    assert (ev["feedback_handled"].numerator, ev["feedback_handled"].denominator) == (1, 3)


# ------------------------------------------------------------------------------------------
# Plans
# ------------------------------------------------------------------------------------------


def test_targets_parse() -> None:
    """Percentages, thresholds and counts, with clear refusals."""
    assert parse_target("95%").op == ">=" and parse_target("95%").percent
    assert parse_target("> 70%").op == ">"
    assert parse_target("≥ 25%").amount == 25
    assert not parse_target("20").percent
    for bad in ("lots", "120%", "2.5", "<5"):
        with pytest.raises(ValueError, match=r"target|percentage|whole number"):
            parse_target(bad)
    assert parse_target("> 70%").met(71, Fraction(70)) is False
    assert parse_target("> 70%").met(71, Fraction(7001, 100)) is True
    assert parse_target("20").met(20, None) is True
    assert required_count(parse_target("> 70%"), 10) == 8
    assert required_count(parse_target("70%"), 10) == 7
    assert required_count(parse_target("≥ 25%"), 9) == 3


def test_seed_plans_load(tmp_path: Path) -> None:
    """The four seed plans validate, with their windows, deadlines and areas."""
    plans = {p.stem: load_plan(p) for p in sorted(PLANS.glob("*.toml"))}
    assert set(plans) == {"binh-thuan-2023", "binh-duong-6587", "binh-dinh-2025", "chu-prong-2023"}
    assert plans["binh-duong-6587"].report.deadline(2024, ND09_ANNUAL) == date(2024, 12, 14)
    assert plans["binh-thuan-2023"].report.deadline(2023, ND09_ANNUAL) == date(2023, 12, 24)
    assert plans["chu-prong-2023"].report.deadline(2024, ND09_ANNUAL) == date(2024, 12, 4)
    assert plans["chu-prong-2023"].warnings  # due before its own cut-off
    assert {p.area.code for p in plans.values()} == {"60", "74", "52", "632"}


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (
            lambda s: s.replace('indicator = "ip_conversion"\n', 'indicator = "ip_conv"\n'),
            "target[1].indicator",
            "unknown indicator",
        ),
        (
            lambda s: s.replace('2024 = "> 50%"', '2024 = "plenty"'),
            "target[1].by_year.2024",
            "not a target",
        ),
        (
            lambda s: s.replace('2024 = "> 50%"', '2030 = "> 50%"'),
            "target[1].by_year.2030",
            "not one of the plan's years",
        ),
        (lambda s: s.replace('due_before = "12-15"', ""), "report.due_before", "exactly one"),
        (lambda s: s.replace('code = "P9"', 'code = "P-9"'), "area.code", "not an area code"),
        (
            lambda s: s.replace("issued = 2023-01-10", 'issued = "10/01/2023"'),
            "plan.issued",
            "TOML date",
        ),
        (
            lambda s: s.replace("[report]", "[report]\ncolour = 'red'"),
            "report.colour",
            "unknown key",
        ),
        (lambda s: s + "\n[window]\nstart = '12-15'\nend = '12-10'\n", "window.end", "whole year"),
    ],
)
def test_plan_errors_name_file_key_and_reason(
    edit: object, key: str, reason: str, tmp_path: Path
) -> None:
    """An invalid plan file is refused with the file, the key and the reason."""
    path = tmp_path / "bad.toml"
    path.write_text(edit(SAMPLE_PLAN), encoding="utf-8")  # type: ignore[operator]
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(path) in str(info.value)


def test_plan_file_that_is_not_toml(tmp_path: Path) -> None:
    """Broken TOML and missing files are PlanErrors too."""
    bad = tmp_path / "x.toml"
    bad.write_text("[plan\n", encoding="utf-8")
    with pytest.raises(PlanError, match="not valid TOML"):
        load_plan(bad)
    with pytest.raises(PlanError, match="no such file"):
        load_plan(tmp_path / "missing.toml")


# ------------------------------------------------------------------------------------------
# Report, planner, renderings
# ------------------------------------------------------------------------------------------


def _sample_with_history() -> tuple[SourceSystem, Kpis]:
    app = sample()
    s = {code: station(app, code) for code in ("X1", "X2", "T3")}
    station(app, "W1", kind="ip")
    app.assess_station(
        s["T3"], "broken", reaches_villages=True, effective=date(2022, 1, 1), actor="admin"
    )
    app.convert_station(s["X2"], effective=date(2024, 3, 1), actor="admin")
    app.assess_station(
        s["X1"], "degraded", reaches_villages=True, effective=date(2023, 1, 1), actor="admin"
    )
    return app, Kpis(app)


def test_report_rows_targets_and_history() -> None:
    """Rows carry value, numerator/denominator, target and met/not met; history per year."""
    _, kpis = _sample_with_history()
    report = build_report(kpis, sample_plan(), date(2024, 12, 14))  # type: ignore[arg-type]
    assert report.year == 2024 and report.evaluated_on == date(2024, 12, 14)
    radio = report.row("radio_coverage")
    # X1 (degraded, reaches), X2 (IP), W1 (IP) serve villages; T3 is broken; W2 has none: 3/5.
    assert (radio.value.numerator, radio.value.denominator, radio.met) == (3, 5, True)
    conv = report.row("ip_conversion")
    assert (conv.value.numerator, conv.value.denominator, conv.met) == (1, 3, False)  # > 50%
    annual = report.row("ip_conversion_annual")
    assert (annual.value.numerator, annual.met) == (1, True)  # count target "1"
    assert [h.year for h in report.history["radio_coverage"]] == [2023, 2024]
    first = report.history["radio_coverage"][0]  # 2023: X1, X2 (still wired, good), W1
    assert (first.numerator, first.denominator, first.met) == (3, 5, True)
    assert report.history["ip_conversion"][-1].met is False
    assert report.operational and report.row("device_availability").target is None
    assert report.deadline == date(2024, 12, 14)

    late = build_report(kpis, sample_plan(), date(2025, 12, 14))  # type: ignore[arg-type]
    assert late.evaluated_on == date(2025, 12, 14)  # P9 still exists


def test_renderings_in_both_languages() -> None:
    """Table, JSON, CSV and HTML; Vietnamese by default with decimal commas."""
    _, kpis = _sample_with_history()
    report = build_report(kpis, sample_plan(), date(2024, 12, 14))  # type: ignore[arg-type]
    table = render(report)
    assert "Đạt" in table and "Không đạt" in table and "60,0%" in table and "3/5" in table
    assert "met" in render(report, "table", "en") and "60.0%" in render(report, "table", "en")
    doc = json.loads(render(report, "json"))
    assert doc["rows"][0]["numerator"] == 3 and doc["rows"][0]["met"] is True
    assert doc["rows"][0]["target"]["text"] == "60%"
    csv_text = render(report, "csv", "en")
    assert csv_text.splitlines()[1].startswith("radio_coverage,1,")
    page = render(report, "html")
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="kpi-chart"') == 3
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert 'lang="vi"' in page and "Thời gian chốt số liệu báo cáo" in page
    with pytest.raises(ValueError, match="format"):
        render(report, "pdf")


def test_conversion_planner_ranks_and_projects() -> None:
    """Broken, then degraded, then older than 5 years; yearly needs meet both targets."""
    app, kpis = _sample_with_history()
    s_old = station(app, "W2", effective=date(2020, 1, 1), commissioned_year=2021)
    assert s_old
    cp = plan_conversions(kpis, sample_plan(), date(2024, 12, 14))  # type: ignore[arg-type]
    assert [s.area_code for s in cp.queue] == ["T3", "X1", "W2"]
    assert [s.reason("en") for s in cp.queue] == ["broken", "degraded", "the rest"]
    assert cp.baseline == 4 and cp.converted == 1
    assert [y.year for y in cp.years] == [2024, 2025]  # 14/12 is still in 2024's window
    early = plan_conversions(kpis, sample_plan(), date(2024, 6, 1))  # type: ignore[arg-type]
    y24, y25 = early.years
    # 2024: cumulative "> 50%" of 4 needs 3; 1 done: 2 more (T3, X1). 2025: 100% needs the last.
    assert (y24.needed, [s.area_code for s in y24.stations]) == (2, ["T3", "X1"])
    assert (y25.needed, y25.cumulative, y25.projected) == (1, 4, 100.0)
    assert "hư hỏng" in render_conversions(early)
    assert json.loads(render_conversions(early, "json"))["years"][0]["needed"] == 2


# ------------------------------------------------------------------------------------------
# Projection: catch-up from SQLite, known-at positions
# ------------------------------------------------------------------------------------------


def test_catch_up_from_sqlite_incrementally_equals_a_rebuild(tmp_path: Path) -> None:
    """A projection kept current batch by batch equals one rebuilt from the SQLite file."""
    settings = Settings.sqlite(tmp_path / "tcs.sqlite")
    app = sample(settings)
    kpis = Kpis(app)
    generate_history(app, "P9", seed=3, end=date(2025, 6, 30), bulletins_per_year=6)
    assert kpis.refresh() > 0
    assert kpis.refresh() == 0
    later = station(app, "W2", effective=date(2025, 1, 2))
    assert later and kpis.refresh() > 0
    fresh = SourceSystem(settings)
    try:
        rebuilt = Kpis(fresh)
        for day in (date(2023, 12, 14), date(2025, 6, 30), date(2025, 12, 14)):
            a, b = kpis.as_of("P9", day), rebuilt.as_of("P9", day)
            assert {i.indicator.id: (i.numerator, i.denominator) for i in a} == {
                i.indicator.id: (i.numerator, i.denominator) for i in b
            }
        assert rebuilt.projection.position == kpis.projection.position
    finally:
        fresh.close()
        app.close()


def test_until_gives_the_figures_as_known_then() -> None:
    """A projection stopped at a log position answers as the store was then."""
    app = sample()
    station(app, "X1")
    position = app.recorder.max_notification_id()
    station(app, "X2")
    then = KpiProjection()
    then.catch_up(app, until=position)
    now = Kpis(app)
    from tcs_core.kpi import evaluate

    scope = now.area("P9", BEFORE).area_id
    assert evaluate(then, scope, BEFORE)["radio_coverage"].numerator == 1
    assert now.as_of(scope, BEFORE)["radio_coverage"].numerator == 2


def test_live_feeding_with_domain_events() -> None:
    """``apply`` takes live domain events like the catch-up takes stored ones."""
    app = sample()
    live = KpiProjection()
    start = 1
    while batch := app.recorder.select_notifications(start, 100):
        for n in batch:
            live.apply(n.topic, app.mapper.to_domain_event(n))
        start = batch[-1].id + 1
    station(app, "X1")
    n = app.recorder.select_notifications(start, 10)[-1]
    live.apply(n.topic, app.mapper.to_domain_event(n))
    from tcs_core.kpi import evaluate

    scope = live.areas.resolve("P9", BEFORE).area_id
    assert evaluate(live, scope, BEFORE)["radio_coverage"].numerator == 1


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------


def test_cli_wiring_into_a_parent_parser(tmp_path: Path) -> None:
    """``add_kpi_commands`` + ``run_kpi_command``: report to a file, as-run to stdout."""
    _, kpis = _sample_with_history()
    plan = tmp_path / "sample.toml"
    plan.write_text(SAMPLE_PLAN, encoding="utf-8")
    parser = argparse.ArgumentParser(prog="tcs")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lang", choices=("vi", "en"), default="vi")
    commands = parser.add_subparsers(dest="command", required=True)
    add_kpi_commands(commands, parents=[common], func=lambda out, args: 0)
    out_file = tmp_path / "r.html"
    args = parser.parse_args(
        [
            "kpi",
            "report",
            "--plan",
            str(plan),
            "--as-of",
            "2024-12-14",
            "--format",
            "html",
            "--out",
            str(out_file),
        ]
    )
    assert args.func(None, args) == 0
    buf = io.StringIO()
    assert run_kpi_command(args, kpis.app, stdout=buf) == 0
    assert "Đã ghi báo cáo" in buf.getvalue() and "<svg" in out_file.read_text(encoding="utf-8")
    args = parser.parse_args(
        [
            "kpi",
            "asrun",
            "--area",
            "P9",
            "--from",
            "2025-01-01",
            "--to",
            "2025-01-31",
            "--lang",
            "en",
        ]
    )
    buf = io.StringIO()
    run_kpi_command(args, kpis.app, stdout=buf)
    assert "0 deliveries" in buf.getvalue()
    with pytest.raises(SystemExit):
        parser.parse_args(["kpi", "report", "--plan", str(plan), "--as-of", "14/12/2024"])


def test_cli_main_on_a_sqlite_file(tmp_path: Path) -> None:
    """``main`` runs the kpi commands on a SQLite file: report (json), conversions."""
    db = tmp_path / "tcs.sqlite"
    app = sample(Settings.sqlite(db))
    station(app, "X1")
    app.close()
    plan = tmp_path / "sample.toml"
    plan.write_text(SAMPLE_PLAN, encoding="utf-8")
    buf = io.StringIO()
    assert (
        main(
            [
                "--db",
                str(db),
                "kpi",
                "report",
                "--plan",
                str(plan),
                "--as-of",
                "2024-12-14",
                "--format",
                "json",
            ],
            stdout=buf,
        )
        == 0
    )
    assert json.loads(buf.getvalue())["rows"][0]["numerator"] == 1
    buf = io.StringIO()
    assert (
        main(
            [
                "--db",
                str(db),
                "kpi",
                "conversions",
                "--plan",
                str(plan),
                "--as-of",
                "2024-06-01",
                "--lang",
                "en",
            ],
            stdout=buf,
        )
        == 0
    )
    assert "Conversion order" in buf.getvalue()
    assert build_kpi_parser().prog == "tcs"


def test_kinds_of_values() -> None:
    """Ratios are percentages, counts their numerator, averages a quotient."""
    kinds = {i.id: i.kind for i in INDICATORS.values()}
    assert kinds["eboard_count_rural"] is IndicatorKind.COUNT
    assert kinds["airtime_per_commune"] is IndicatorKind.AVERAGE


def test_sqlite_fast_path_equals_the_generic_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading SQLite directly gives the same state as select_notifications + the mapper."""
    from tcs_core.kpi import projection

    app = sample(Settings.sqlite(tmp_path / "tcs.sqlite"))
    generate_history(app, "P9", seed=4, end=date(2025, 6, 30), bulletins_per_year=4)
    dev = app.register_device(
        "Loa lạ",
        "ip_speaker",
        area="W2",
        transport="simulated",
        address="sim://odd",
        channels=["audio"],
        actor="admin",
    )
    at = datetime(2025, 8, 1, tzinfo=ICT)
    app.set_device_status(dev, "online", 'say "hi" \\ mất điện', at=at)  # escapes: fallback-safe
    app.set_device_status(dev, "offline", "", at=at + timedelta(hours=3))
    fast = KpiProjection()
    assert projection._sqlite_fast_path(app)
    fast.catch_up(app)
    monkeypatch.setattr(projection, "_sqlite_fast_path", lambda app: False)
    slow = KpiProjection()
    slow.catch_up(app)
    assert fast.position == slow.position
    for d in fast.devices:
        assert fast.devices[d].times == slow.devices[d].times
        assert fast.devices[d].on == slow.devices[d].on
    from tcs_core.kpi import evaluate

    for day in (date(2024, 12, 14), date(2025, 8, 1)):
        a = evaluate(fast, None, day)
        b = evaluate(slow, None, day)
        assert [(i.numerator, i.denominator) for i in a] == [
            (i.numerator, i.denominator) for i in b
        ]
    app.close()
