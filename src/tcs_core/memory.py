"""An in-memory transport for tests and simulations, honouring the plugin contract.

It plays nothing: it records what each device was given and stopped. Behaviour per device can be
scripted (fail, be busy, answer after a delay) to exercise the engine's outcome handling.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from uuid import UUID

import attrs

from tcs_core.domain.values import Channel, ContentVariant
from tcs_core.transport import (
    Capability,
    DeliveryContext,
    DeviceTarget,
    Health,
    Limits,
    Mode,
    Outcome,
)

__all__ = ["MemoryTransport", "Played"]


@attrs.frozen
class Played:
    """One item a device was given."""

    device_id: UUID
    key: str
    content: ContentVariant
    context: DeliveryContext


Script = Callable[[DeviceTarget, DeliveryContext], Outcome | None]


class MemoryTransport:
    """Records deliveries per device; the same idempotency key twice plays once."""

    def __init__(
        self,
        name: str = "memory",
        channels: frozenset[Channel] = frozenset(Channel),
        limits: Limits | None = None,
        delay_s: float = 0.0,
        script: Script | None = None,
        health: Callable[[DeviceTarget], Health | None] | None = None,
    ) -> None:
        self.name = name
        self.channels = channels
        self.capabilities = frozenset(
            {Capability.AUDIO, Capability.TEXT, Capability.IMAGE, Capability.SMS}
        )
        self.mode = Mode.LIVE
        self.limits = limits or Limits(concurrency=10_000)
        self.delay_s = delay_s
        self.script = script
        self.health = health
        self._next_slot = 0.0
        self.played: dict[UUID, list[Played]] = defaultdict(list)
        self.preempted: dict[UUID, int] = defaultdict(int)
        self.keys: set[str] = set()
        self.duplicates = 0
        self.opened = False

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.opened = False

    async def deliver(
        self, device: DeviceTarget, content: ContentVariant, key: str, context: DeliveryContext
    ) -> Outcome:
        rate = self.limits.rate_per_s
        if rate is not None:  # pace to the declared rate, or say when to come back
            now = time.monotonic()
            start = max(now, self._next_slot)
            if start - now > self.limits.timeout_s / 2:
                return Outcome.retryable(f"rate limit of {rate:g}/s", retry_after_s=start - now)
            self._next_slot = start + 1 / rate
            await asyncio.sleep(start - now)
        delay = float(device.settings.get("delay_s", self.delay_s))
        if delay >= self.limits.timeout_s:  # slower than the timeout: give up in time
            await asyncio.sleep(self.limits.timeout_s)
            return Outcome.retryable(
                f"{device.name} ({device.address}): no answer within {self.limits.timeout_s:g} s"
            )
        if delay:
            await asyncio.sleep(delay)
        if self.script is not None:
            scripted = self.script(device, context)
            if scripted is not None:
                return scripted
        if key in self.keys:
            self.duplicates += 1  # the far end recognises the key: no second play
            return Outcome.delivered(remote_id=key, reason="duplicate key, already playing")
        self.keys.add(key)
        self.played[device.device_id].append(Played(device.device_id, key, content, context))
        return Outcome.delivered(remote_id=key)

    async def preempt(self, device: DeviceTarget) -> Outcome:
        self.preempted[device.device_id] += 1
        return Outcome.delivered(reason="stopped")

    async def probe(self, device: DeviceTarget) -> Health:
        if self.health is not None and (h := self.health(device)) is not None:
            return h
        return Health(ok=True, detail="in memory")

    def plays(self, device_id: UUID) -> int:
        """Distinct items the device played (the conformance suite's ObservablePlays hook)."""
        return len(self.played.get(device_id, ()))

    @property
    def deliveries(self) -> int:
        """Number of distinct items played, over all devices."""
        return sum(len(v) for v in self.played.values())
