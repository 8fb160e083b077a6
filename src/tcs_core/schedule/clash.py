"""Clash detection: overlapping occurrences of equal-priority items on one device.

A device plays one audio item at a time. A higher priority preempts a lower one, so only items of
*equal* priority clash (Thông tư 39/2020: for two priority items the operator chooses the order).
Each occurrence at ``t`` holds the device for ``[t, t + duration_s)``.

The occurrences are swept in start order with a heap of the ones still playing:
O(n log n + k) for n occurrences and k clashes, never a comparison of every pair.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import attrs

from tcs_core.domain.values import Priority, ScheduleSpec, as_utc
from tcs_core.schedule.recurrence import RecurrenceCache, occurrences

__all__ = ["Item", "Schedulable", "clashes"]


class Schedulable(Protocol):
    """Anything with an id, a schedule and a priority (an :class:`Item`, a broadcast view…)."""

    @property
    def id(self) -> Hashable: ...

    @property
    def spec(self) -> ScheduleSpec: ...

    @property
    def priority(self) -> Priority: ...


@attrs.frozen
class Item:
    """One scheduled item on a device."""

    id: Hashable
    spec: ScheduleSpec
    priority: Priority = attrs.field(default=Priority.NORMAL, converter=Priority)


T = TypeVar("T", bound=Schedulable)


def clashes(
    items: Iterable[T],
    start: datetime,
    end: datetime,
    *,
    cache: RecurrenceCache | None = None,
) -> list[tuple[T, T, datetime]]:
    """Pairs of occurrences of equal-priority items that overlap within ``[start, end)``.

    Each clash is ``(earlier, later, at)``: ``earlier`` started first (or at the same instant and
    came first in ``items``), ``later`` starts at ``at`` while ``earlier`` still plays. A pair is
    reported once per overlapping pair of occurrences, when the overlap reaches into the window
    (so an occurrence that began before ``start`` and still plays counts). Occurrences of one item
    never clash with each other. Sorted by ``at``.
    """
    lo = as_utc(start, "start")
    hi = as_utc(end, "end")
    listed = list(items)
    if hi <= lo or not listed:
        return []
    reach = timedelta(seconds=max(item.spec.duration_s for item in listed))
    # (start, end, item index) of every occurrence that can overlap the window.
    plays: list[tuple[datetime, datetime, int]] = []
    for index, item in enumerate(listed):
        length = timedelta(seconds=item.spec.duration_s)
        for t in occurrences(item.spec, lo - reach, hi, cache=cache):
            if t + length > lo:
                plays.append((t, t + length, index))
    plays.sort(key=lambda play: (play[0], play[2]))

    found: list[tuple[T, T, datetime]] = []
    # Per priority, a heap of (end, item index) of the occurrences still playing.
    playing: dict[Priority, list[tuple[datetime, int]]] = {}
    for t, until, index in plays:
        item = listed[index]
        heap = playing.setdefault(Priority(item.priority), [])
        while heap and heap[0][0] <= t:
            heapq.heappop(heap)
        for _, other_index in heap:
            other = listed[other_index]
            if other.id != item.id:
                found.append((other, item, t))
        heapq.heappush(heap, (until, index))
    found.sort(key=lambda clash: clash[2])
    return found
