"""The four seed plans against hand-built histories on the real administrative structure.

Each test writes facts into its plan's area, counts the expected numerators and denominators by
hand (from the communes the application lists for that day), and checks that the report shows
exactly those values and the right met / not-met marks. The legacy + 2025 history is loaded once
for the module (a few seconds).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import pytest

from tcs_core import AreaKind, AreaVersion, Settings, SourceSystem, load_history
from tcs_core.domain.feedback import Feedback
from tcs_core.domain.values import FeedbackChannel
from tcs_core.kpi import Kpis, Report, build_report, load_plan, render
from tcs_core.testing.fixtures import make_source_system

PLANS = Path(__file__).resolve().parents[1] / "examples" / "plans"
ICT = timezone(timedelta(hours=7))
A = "admin"


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[SourceSystem, Kpis]]:
    """The real structure (legacy, then the 2025 reform) in memory, and its KPIs."""
    app = make_source_system(Settings.in_memory())
    load_history(app)
    yield app, Kpis(app)
    app.close()


def communes(app: SourceSystem, code: str, day: date) -> list[AreaVersion]:
    """Commune-level units of ``code`` on ``day``, by code."""
    return sorted(app.communes(code, day), key=lambda v: v.code)


def districts(app: SourceSystem, code: str, day: date) -> list[AreaVersion]:
    """District-level units of ``code`` on ``day``, by code."""
    return sorted(
        (v for v in app.subtree(code, day) if v.kind is AreaKind.DISTRICT), key=lambda v: v.code
    )


def stations(
    app: SourceSystem, units: Sequence[AreaVersion], kinds: Sequence[str], **kw: object
) -> list[UUID]:
    """One station per unit, of the given kinds in turn, effective 2020-01-01 by default."""
    kw.setdefault("effective", date(2020, 1, 1))
    return [
        app.register_station(  # type: ignore[misc]
            f"Đài truyền thanh {u.name}",
            area=u.code,
            kind=kinds[i % len(kinds)],
            commissioned_year=2010,
            actor=A,
            **kw,
        )
        for i, u in enumerate(units)
    ]


def convert(app: SourceSystem, ids: Sequence[UUID], on: date) -> None:
    """Convert the stations to IP on ``on``."""
    for s in ids:
        app.convert_station(s, effective=on, actor=A)


def facilities(app: SourceSystem, kind: str, units: Sequence[AreaVersion], on: date) -> list[UUID]:
    """One facility of ``kind`` per unit, established on ``on``."""
    return [
        app.establish_facility(f"{kind} {u.name}", kind, area=u.code, effective=on, actor=A)
        for u in units
    ]


def row_values(report: Report) -> dict[str, tuple[object, object, bool | None]]:
    """(numerator, denominator, met) per plan row."""
    return {r.indicator.id: (r.value.numerator, r.value.denominator, r.met) for r in report.rows}


def test_binh_thuan_2023(world: tuple[SourceSystem, Kpis]) -> None:
    """Bình Thuận 2023: 121 communes (28 urban, 93 rural), 10 districts; eight targets."""
    app, kpis = world
    plan = load_plan(PLANS / "binh-thuan-2023.toml")
    day = date(2023, 12, 14)
    cs = communes(app, "60", day)
    urban = [c for c in cs if c.kind.is_urban]
    rural = [c for c in cs if not c.kind.is_urban]
    ds = districts(app, "60", day)
    assert (len(cs), len(urban), len(rural), len(ds)) == (121, 28, 93, 10)

    ids = stations(app, cs[:115], ["wired"] * 50 + ["fm"] * 50 + ["ip"] * 15)
    convert(app, ids[:10] + ids[50:60], date(2023, 6, 1))  # 20 of the 100 wired/FM
    broken = stations(app, cs[115:116], ["ip"], condition="broken")
    assert broken
    facilities(app, "website", urban[:19], date(2022, 3, 1))
    facilities(app, "website", urban[19:20], date(2023, 12, 20))  # after the cut-off
    facilities(app, "website", rural[:66], date(2022, 3, 1))
    facilities(app, "eboard", urban[:11], date(2023, 2, 1))
    facilities(app, "eboard", rural[:19], date(2023, 2, 1))
    for b in facilities(app, "district_board", ds[:3], date(2023, 1, 1)):
        app.connect_facility(b, effective=date(2023, 5, 1), actor=A)
    facilities(app, "district_board", ds[3:4], date(2023, 1, 1))  # not connected
    facilities(app, "source_system", [app.area("60", day)], date(2023, 3, 1))

    report = build_report(kpis, plan, day)
    assert report.year == 2023 and report.deadline == date(2023, 12, 24)
    assert row_values(report) == {
        "radio_coverage": (115, 121, True),  # 95.04% ≥ 95%
        "ip_conversion": (20, 100, True),  # 20% ≥ 20%
        "website_urban": (19, 28, False),  # 67.9% < 70%
        "website_rural": (66, 93, True),  # 71.0%
        "eboard_urban": (11, 28, False),  # 39.3% < 40%
        "eboard_rural": (19, 93, True),  # 20.4%
        "district_board_connected": (3, 10, True),  # 30%
        "source_system": (1, 1, True),  # 100% ≥ 30%
    }
    table = render(report, "table")
    for text in ("115/121", "95,0%", "67,9%", "Không đạt", "Đạt", "≥ 95%"):
        assert text in table
    doc = json.loads(render(report, "json", "en"))
    assert [r["met"] for r in doc["rows"]] == [True, True, False, True, False, True, True, True]
    assert render(report, "html").count('class="kpi-chart"') == 8


def test_binh_duong_6587(world: tuple[SourceSystem, Kpis]) -> None:
    """Bình Dương 6587/KH-UBND, 2024 column: 91 communes (52 urban, 39 rural), 9 districts."""
    app, kpis = world
    plan = load_plan(PLANS / "binh-duong-6587.toml")
    day = date(2024, 12, 14)
    cs = communes(app, "74", day)
    urban = [c for c in cs if c.kind.is_urban]
    rural = [c for c in cs if not c.kind.is_urban]
    ds = districts(app, "74", day)
    assert (len(cs), len(urban), len(rural), len(ds)) == (91, 52, 39, 9)

    old = stations(app, cs[:40], ["wired", "fm"])
    stations(app, cs[40:90], ["ip"])
    stations(app, cs[:1], ["wired"], effective=date(2022, 5, 1))  # after the baseline
    convert(app, old[:8], date(2023, 3, 1))
    convert(app, old[8:16], date(2024, 4, 1))
    facilities(app, "website", urban[:44], date(2022, 1, 1))
    facilities(app, "website", rural[:34], date(2022, 1, 1))
    facilities(app, "eboard", urban[:37], date(2023, 6, 1))
    facilities(app, "eboard", rural[:17], date(2023, 6, 1))
    for b in facilities(app, "district_board", ds[:8], date(2024, 1, 1)):
        app.connect_facility(b, effective=date(2024, 2, 1), actor=A)
    facilities(app, "source_system", [app.area("74", day)], date(2023, 9, 1))

    report = build_report(kpis, plan, day)
    assert report.year == 2024 and report.deadline == date(2024, 12, 14)
    assert report.period.start == date(2023, 12, 15)
    assert row_values(report) == {
        "radio_coverage": (90, 91, True),  # 98.9% ≥ 98%
        "ip_conversion": (16, 40, True),  # 40% ≥ 40%
        "website_urban": (44, 52, False),  # 84.6% < 85%
        "website_rural": (34, 39, True),  # 87.2%
        "eboard_urban": (37, 52, True),  # 71.2% ≥ 70%
        "eboard_rural": (17, 39, False),  # 43.6% < 45%
        "district_board_connected": (8, 9, False),  # 88.9% < 100%
        "source_system": (1, 1, True),
        "feedback_handled": (0, 0, None),  # target for 2025 only
    }
    assert report.row("feedback_handled").target is None
    history = {h.year: (h.numerator, h.met) for h in report.history["ip_conversion"]}
    assert history == {2023: (8, True), 2024: (16, True)}  # 20% then 40%
    assert report.history["district_board_connected"][0].met is False  # 0/9 in 2023
    assert "98,9%" in render(report, "table") and "88,9%" in render(report, "table")


def test_binh_dinh_2025(world: tuple[SourceSystem, Kpis]) -> None:
    """Bình Định: 155 communes (40 urban, 115 rural), 11 districts (3 towns/cities); the ≥25%
    per-year conversion rule; its 2025 figures are taken on 30/06/2025, its last day."""
    app, kpis = world
    plan = load_plan(PLANS / "binh-dinh-2025.toml")
    day = date(2023, 12, 14)
    cs = communes(app, "52", day)
    urban = [c for c in cs if c.kind.is_urban]
    rural = [c for c in cs if not c.kind.is_urban]
    ds = districts(app, "52", day)
    towns = [d for d in ds if not d.name.startswith("Huyện")]
    huyen = [d for d in ds if d.name.startswith("Huyện")]
    assert (len(cs), len(urban), len(rural), len(ds), len(towns)) == (155, 40, 115, 11, 3)

    old = stations(app, cs[:100], ["wired", "fm"])
    stations(app, cs[100:], ["ip"])
    convert(app, old[:25], date(2023, 5, 1))
    convert(app, old[25:55], date(2024, 5, 1))
    convert(app, old[55:], date(2025, 3, 1))
    facilities(app, "source_system", [app.area("52", day)], date(2023, 2, 1))
    facilities(app, "website", urban, date(2022, 1, 1))
    facilities(app, "website", rural[:81], date(2022, 1, 1))
    facilities(app, "eboard", urban[:39], date(2022, 1, 1))
    facilities(app, "eboard", rural[:80], date(2022, 1, 1))
    for b in facilities(app, "district_board", towns + huyen[:7], date(2022, 1, 1)):
        app.connect_facility(b, effective=date(2024, 6, 1), actor=A)
    at = datetime(2025, 1, 10, 9, tzinfo=ICT)
    items = []
    for i in range(10):
        fb = Feedback(
            channel=FeedbackChannel.APP,
            area_id=cs[0].area_id,
            sender_ref=f"c{i}",
            text="Loa không nghe rõ",
            received_at=at,
            due=date(2025, 1, 17),
            source_ref=f"binh-dinh-{i}",
            actor="system",
        )
        if i < 9:
            fb.respond("Đã sửa cụm loa", at + timedelta(days=2), A)
        items.append(fb)
    app.save(*items)

    r2023 = build_report(kpis, plan, day)
    assert row_values(r2023)["ip_conversion_annual"] == (25, 100, True)  # 25% ≥ 25%
    assert row_values(r2023)["source_system"] == (1, 1, True)
    assert row_values(r2023)["radio_coverage"] == (155, 155, None)  # no 2023 target
    assert [h.met for h in r2023.history["ip_conversion_annual"]] == [False, True]  # 2022: 0%

    r2025 = build_report(kpis, plan, date(2025, 12, 14))
    assert r2025.evaluated_on == date(2025, 6, 30)
    assert r2025.area.name == "Tỉnh Bình Định" and r2025.deadline == date(2025, 12, 31)
    assert any("30/06/2025" in n.text("vi") for n in r2025.notes)
    assert row_values(r2025) == {
        "radio_coverage": (155, 155, True),
        "ip_conversion": (100, 100, True),
        "ip_conversion_annual": (45, 100, True),
        "website_urban": (40, 40, True),
        "website_rural": (81, 115, True),  # 70.4% > 70%
        "eboard_urban": (39, 40, False),
        "eboard_rural": (80, 115, False),  # 69.6%, not > 70%
        "district_board_connected_town": (3, 3, True),
        "district_board_connected_rural": (7, 8, True),  # 87.5% > 80%
        "source_system": (1, 1, None),  # target for 2023 only
        "feedback_handled": (9, 10, False),
    }
    # What Bình Định's communes contribute to the new Gia Lai (code 52 since 2025-07-01).
    ev = kpis.as_of(r2023.area.area_id, date(2024, 12, 14))
    moved = kpis.reattribute(ev, date(2025, 7, 1))
    assert moved.by_code("radio_coverage") == {"52": (155, 155)}
    assert {v.name for v in moved.areas.values() if v} == {"Tỉnh Gia Lai"}
    for iv in ev:
        if iv.additive:
            assert moved.totals(iv.indicator.id) == (iv.numerator, iv.denominator)
    by_commune = kpis.reattribute(ev, date(2025, 7, 1), level="commune")
    assert sum(d for _, d in by_commune.values["radio_coverage"].values()) == 155
    assert len(by_commune.values["radio_coverage"]) < 155  # merged into fewer communes


def test_chu_prong_2023(world: tuple[SourceSystem, Kpis]) -> None:
    """Chư Prông: targets as counts per year over its 20 communes (19 xã, 1 thị trấn)."""
    app, kpis = world
    plan = load_plan(PLANS / "chu-prong-2023.toml")
    day = date(2024, 12, 14)
    cs = communes(app, "632", day)
    town = [c for c in cs if c.kind.is_urban]
    rural = [c for c in cs if not c.kind.is_urban]
    assert (len(cs), len(town), len(rural)) == (20, 1, 19)

    ids = stations(app, cs, ["wired", "fm"])
    convert(app, ids[:2], date(2021, 3, 1))
    convert(app, ids[2:7], date(2022, 3, 1))
    convert(app, ids[7:13], date(2023, 3, 1))  # 6, the plan wants 7
    convert(app, ids[13:19], date(2024, 3, 1))
    facilities(app, "website", town + rural[:18], date(2020, 6, 1))
    facilities(app, "eboard", town, date(2024, 2, 1))
    facilities(app, "eboard", rural[:9] + rural[:2], date(2024, 2, 1))  # 11 boards, 9 communes
    (board,) = facilities(app, "district_board", [app.area("632", day)], date(2021, 1, 1))
    app.connect_facility(board, effective=date(2021, 6, 1), actor=A)

    report = build_report(kpis, plan, day)
    assert report.deadline == date(2024, 12, 4) and report.notes  # due before the cut-off
    assert row_values(report) == {
        "radio_coverage": (20, 20, True),  # 20 ≥ 20 communes
        "ip_conversion_annual": (6, 20, True),  # 6 ≥ 6
        "website_urban": (1, 1, True),
        "website_rural": (18, 19, False),
        "eboard_count_urban": (1, 1, True),  # 1 board ≥ 1
        "eboard_count_rural": (11, 19, True),  # 11 boards ≥ 10
        "district_board_connected": (1, 1, True),
    }
    history = [(h.year, h.numerator, h.met) for h in report.history["ip_conversion_annual"]]
    assert history == [(2021, 2, True), (2022, 5, True), (2023, 6, False), (2024, 6, True)]
    assert report.history["radio_coverage"][0].denominator == 20
    table = render(report, "table")
    assert "20 (100,0%)" in table and "≥ 10" in table

    later = build_report(kpis, plan, date(2025, 12, 14))
    assert later.evaluated_on == date(2025, 6, 30)
    assert row_values(later)["radio_coverage"] == (20, 20, True)
    assert row_values(later)["eboard_count_urban"] == (1, 1, False)  # 2025 wants 2 boards
    ev = kpis.as_of(report.area.area_id, day)
    moved = kpis.reattribute(ev, date(2025, 7, 1), level="commune")
    assert moved.totals("radio_coverage") == (20, 20)
    assert kpis.reattribute(ev, date(2025, 7, 1)).by_code("radio_coverage") == {"52": (20, 20)}
