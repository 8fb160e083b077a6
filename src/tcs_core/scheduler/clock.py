"""Clocks: the scheduler takes its clock as a parameter (real in production, virtual in tests)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from tcs_core.domain.values import as_utc

__all__ = ["AcceleratedClock", "Clock", "RealClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """Tells the time; ``virtual`` clocks are stepped by the scheduler instead of waited on."""

    virtual: bool

    def now(self) -> datetime:
        """The current instant (aware, UTC)."""
        ...


class RealClock:
    """Wall-clock time."""

    virtual = False

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, t: datetime, wake: asyncio.Event) -> None:
        """Sleep until ``t`` or until ``wake`` is set, whichever comes first."""
        delay = (t - self.now()).total_seconds()
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)


class AcceleratedClock(RealClock):
    """Wall time sped up: ``start`` at the wall instant ``epoch`` (Unix seconds), then ``speed``
    simulated seconds per wall second. Several processes given the same three values share one
    clock, which is how cluster tests run many workers through a day in minutes."""

    def __init__(self, start: datetime, epoch: float, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = as_utc(start, "start")
        self.epoch = float(epoch)
        self.speed = float(speed)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.epoch) * self.speed)

    async def sleep_until(self, t: datetime, wake: asyncio.Event) -> None:
        delay = (t - self.now()).total_seconds() / self.speed
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)


class VirtualClock:
    """Simulated time: it moves only when the scheduler steps it (a day runs in seconds)."""

    virtual = True

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start, "start")

    def now(self) -> datetime:
        return self._now

    def set(self, t: datetime) -> None:
        """Move to ``t``; time never goes backwards."""
        t = as_utc(t, "t")
        if t > self._now:
            self._now = t
