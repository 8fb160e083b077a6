"""Small inline SVG charts, generated here (no JavaScript, no CDN: the report works offline).

``bar_chart`` draws one indicator over the years: a bar per year for the value (green when the
target is met, red when not, grey without a target) and a dashed mark for the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import attrs

__all__ = ["ChartPoint", "bar_chart"]


@attrs.frozen
class ChartPoint:
    """One year: its value, its target amount (same unit), whether it was met."""

    label: str
    value: float | None
    target: float | None
    met: bool | None
    value_text: str = ""
    target_text: str = ""


_COLOURS = {True: "#2e7d32", False: "#c62828", None: "#78909c"}


def _nice_max(top: float, ticks: int) -> float:
    """The smallest "round" axis maximum ≥ ``top`` whose ``ticks`` steps are round numbers."""
    base = 1.0
    while True:
        for step in (1, 2, 2.5, 5):
            if step * base * ticks >= top:
                return step * base * ticks
        base *= 10


def bar_chart(
    indicator_id: str,
    title: str,
    points: Sequence[ChartPoint],
    *,
    percent: bool,
    width: int = 520,
    height: int = 260,
    labels: tuple[str, str, str] = ("Đạt", "Không đạt", "Chỉ tiêu"),
) -> str:
    """An SVG bar chart of ``points`` (value bars, dashed target marks) with a legend:
    ``labels`` name a met bar, a bar not met and the target."""
    left, right, top, bottom = 48, 16, 36, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [p.value for p in points if p.value is not None]
    targets = [p.target for p in points if p.target is not None]
    ticks = 4
    y_max = 100.0 if percent else _nice_max(max([*values, *targets, 1.0]), ticks)

    def y(v: float) -> float:
        return top + plot_h - (max(0.0, min(v, y_max)) / y_max) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="kpi-chart" '
        f'data-indicator="{escape(indicator_id)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for i in range(ticks + 1):
        v = y_max * i / ticks
        yy = y(v)
        text = f"{v:g}{'%' if percent else ''}"
        out.append(
            f'<line x1="{left}" y1="{yy:.1f}" x2="{width - right}" y2="{yy:.1f}" '
            'stroke="#e0e0e0" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#455a64">{escape(text)}</text>'
        )
    n = max(len(points), 1)
    slot = plot_w / n
    bar_w = min(48.0, slot * 0.55)
    for i, p in enumerate(points):
        cx = left + slot * (i + 0.5)
        if p.value is not None:
            yy = y(p.value)
            out.append(
                f'<rect class="kpi-bar" x="{cx - bar_w / 2:.1f}" y="{yy:.1f}" width="{bar_w:.1f}" '
                f'height="{top + plot_h - yy:.1f}" fill="{_COLOURS[p.met]}">'
                f"<title>{escape(p.label)}: {escape(p.value_text)}</title></rect>"
            )
            out.append(
                f'<text x="{cx:.1f}" y="{yy - 4:.1f}" font-size="11" text-anchor="middle" '
                f'fill="#263238">{escape(p.value_text)}</text>'
            )
        if p.target is not None:
            ty = y(p.target)
            out.append(
                f'<line class="kpi-target" x1="{cx - bar_w / 2 - 8:.1f}" y1="{ty:.1f}" '
                f'x2="{cx + bar_w / 2 + 8:.1f}" y2="{ty:.1f}" stroke="#ef6c00" stroke-width="3" '
                f'stroke-dasharray="6 3"><title>{escape(p.target_text)}</title></line>'
            )
        out.append(
            f'<text x="{cx:.1f}" y="{height - bottom + 16}" font-size="12" text-anchor="middle" '
            f'fill="#263238">{escape(p.label)}</text>'
        )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'stroke="#90a4ae" stroke-width="1"/>'
    )
    lx = left
    for colour, text, width_hint in (
        (_COLOURS[True], labels[0], 90),
        (_COLOURS[False], labels[1], 110),
    ):
        out.append(f'<rect x="{lx}" y="10" width="12" height="12" fill="{colour}"/>')
        out.append(
            f'<text x="{lx + 16}" y="20" font-size="12" fill="#263238">{escape(text)}</text>'
        )
        lx += width_hint
    out.append(
        f'<line x1="{lx}" y1="16" x2="{lx + 24}" y2="16" stroke="#ef6c00" '
        'stroke-width="3" stroke-dasharray="6 3"/>'
    )
    out.append(
        f'<text x="{lx + 30}" y="20" font-size="12" fill="#263238">{escape(labels[2])}</text>'
    )
    out.append("</svg>")
    return "".join(out)
