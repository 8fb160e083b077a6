"""Reporting periods: the cut-off windows of Nghị định 09/2019/NĐ-CP and plain date ranges.

NĐ 09/2019 counts a report's data from the 15th of the previous period to the 14th: monthly from the
15th of the previous month to the 14th; half-year 15/12–14/06 and 15/06–14/12; annual from 15/12 of
the previous year to 14/12 of the report year. ``AnnualWindow`` holds one such annual convention
(any month-day pair; a window whose start falls after its end begins in the previous year).
"""

from __future__ import annotations

from datetime import date, timedelta

import attrs

from tcs_core.errors import ValidationError

__all__ = ["ND09_ANNUAL", "AnnualWindow", "MonthDay", "Period", "nd09_half_year", "nd09_month"]


@attrs.frozen(order=True)
class MonthDay:
    """A day of the year without the year (``12-15``); 29 February is not allowed."""

    month: int
    day: int

    def __attrs_post_init__(self) -> None:
        try:
            date(2023, self.month, self.day)  # a common year: refuses 02-29 as well
        except (ValueError, TypeError):
            raise ValidationError(
                "month_day", f"{self.month:02}-{self.day:02} is not a day of a common year"
            ) from None

    @classmethod
    def parse(cls, text: str) -> MonthDay:
        """``"12-15"`` (month-day) → ``MonthDay(12, 15)``."""
        parts = text.strip().split("-") if isinstance(text, str) else []
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValidationError("month_day", f"{text!r} is not MM-DD (e.g. '12-15')")
        return cls(int(parts[0]), int(parts[1]))

    def in_year(self, year: int) -> date:
        """This day in ``year``."""
        return date(year, self.month, self.day)

    def __str__(self) -> str:
        return f"{self.month:02}-{self.day:02}"


@attrs.frozen
class Period:
    """The days ``start`` to ``end``, both included."""

    start: date
    end: date

    def __attrs_post_init__(self) -> None:
        if self.end < self.start:
            raise ValidationError(
                "period", f"ends ({self.end.isoformat()}) before it starts ({self.start})"
            )

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end

    def until(self, day: date) -> Period:
        """The part of the period up to ``day`` (the period so far, as of ``day``)."""
        return Period(self.start, min(self.end, max(day, self.start)))

    @property
    def days(self) -> int:
        """Number of days in the period."""
        return (self.end - self.start).days + 1

    def label(self) -> str:
        """``15/12/2023–14/12/2024`` (Vietnamese date order)."""
        return f"{self.start:%d/%m/%Y}–{self.end:%d/%m/%Y}"


@attrs.frozen
class AnnualWindow:
    """An annual reporting window: from ``start`` (of the previous year if it falls after
    ``end``) to ``end`` of the report year."""

    start: MonthDay = MonthDay(12, 15)
    end: MonthDay = MonthDay(12, 14)

    def __attrs_post_init__(self) -> None:
        after_end = self.end.in_year(2023) + timedelta(days=1)
        if (after_end.month, after_end.day) != (self.start.month, self.start.day):
            raise ValidationError(
                "window",
                f"an annual window must cover the whole year: {self.start} follows {self.end} "
                "(e.g. start 12-15, end 12-14; or start 01-01, end 12-31)",
            )

    @property
    def crosses_year(self) -> bool:
        """True when the window starts in the previous calendar year."""
        return self.start > self.end

    def period(self, year: int) -> Period:
        """The window of report year ``year``."""
        first = self.start.in_year(year - 1 if self.crosses_year else year)
        return Period(first, self.end.in_year(year))

    def year_of(self, day: date) -> int:
        """The report year whose window contains ``day``."""
        if self.crosses_year and (day.month, day.day) > (self.end.month, self.end.day):
            return day.year + 1
        return day.year


#: The annual window of NĐ 09/2019: 15/12 of the previous year to 14/12.
ND09_ANNUAL = AnnualWindow(MonthDay(12, 15), MonthDay(12, 14))


def nd09_month(year: int, month: int) -> Period:
    """NĐ 09/2019 monthly window: 15th of the previous month to the 14th of ``month``."""
    prev = date(year, month, 1) - timedelta(days=1)
    return Period(date(prev.year, prev.month, 15), date(year, month, 14))


def nd09_half_year(year: int, half: int) -> Period:
    """NĐ 09/2019 half-year windows: 15/12–14/06 (half 1) and 15/06–14/12 (half 2)."""
    if half == 1:
        return Period(date(year - 1, 12, 15), date(year, 6, 14))
    if half == 2:
        return Period(date(year, 6, 15), date(year, 12, 14))
    raise ValidationError("half", "give 1 or 2")
