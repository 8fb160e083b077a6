"""A deliberately broken transport: every classic plugin mistake, for the conformance suite to catch.

``tests/test_conformance.py`` runs ``tcs_core.testing.conformance.TransportConformance`` against it
and asserts exactly which tests fail, and why. Its declarations, its probe and its answers for the
working device are right, so those tests pass: the suite fails what is broken, not everything.

The far end of a device is chosen by ``device.settings["far_end"]``: ``"ok"`` (default),
``"down"`` (cannot be reached), ``"slow"`` (never answers) or ``"garbage"`` (answers nonsense).

The mistakes (each a comment ``MISTAKE`` below):

1. ``deliver`` raises when the far end is down, instead of returning an outcome;
2. ``deliver`` returns None when the far end answers garbage;
3. ``deliver`` waits forever on a device that does not answer (no timeout of its own);
4. ``deliver`` ignores ``limits.rate_per_s``;
5. ``deliver`` plays the same idempotency key twice;
6. ``deliver`` raises for speech content (text to speech not written yet);
7. ``deliver`` raises when too many calls overlap;
8. ``preempt`` raises when nothing plays.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from uuid import UUID

from tcs_core import Channel, SpeechContent
from tcs_core.domain.values import ContentVariant
from tcs_core.transport import (
    Capability,
    DeliveryContext,
    DeviceTarget,
    Health,
    Limits,
    Mode,
    Outcome,
)

__all__ = ["BrokenTransport"]


class BrokenTransport:
    """Looks like a transport, declares itself correctly, and breaks the contract in eight ways."""

    def __init__(self) -> None:
        self.name = "broken"
        self.channels = frozenset(Channel)
        self.capabilities = frozenset(
            {Capability.AUDIO, Capability.TEXT, Capability.IMAGE, Capability.SMS}
        )
        self.mode = Mode.LIVE
        self.limits = Limits(concurrency=100, rate_per_s=5.0, timeout_s=0.2)
        self._plays: Counter[UUID] = Counter()
        self._playing: set[UUID] = set()
        self._in_flight = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def deliver(
        self, device: DeviceTarget, content: ContentVariant, key: str, context: DeliveryContext
    ) -> Outcome:
        far_end = device.settings.get("far_end", "ok")
        if far_end == "down":
            # MISTAKE 1: the exception escapes; it should be Outcome.retryable(reason naming it).
            raise ConnectionRefusedError(f"connect to {device.address} refused")
        if far_end == "garbage":
            return None  # type: ignore[return-value]  # MISTAKE 2: not an Outcome
        if far_end == "slow":
            await asyncio.Event().wait()  # MISTAKE 3: no timeout: waits forever
        if isinstance(content, SpeechContent):
            raise NotImplementedError("text to speech")  # MISTAKE 6
        self._in_flight += 1
        try:
            if self._in_flight > 16:
                raise RuntimeError("too many open connections")  # MISTAKE 7
            await asyncio.sleep(0.01)  # MISTAKE 4: no pacing to limits.rate_per_s
        finally:
            self._in_flight -= 1
        self._plays[device.device_id] += 1  # MISTAKE 5: the key is never checked
        self._playing.add(device.device_id)
        return Outcome.delivered(remote_id=key)

    async def preempt(self, device: DeviceTarget) -> Outcome:
        self._playing.remove(device.device_id)  # MISTAKE 8: KeyError when nothing plays
        return Outcome.delivered(reason="stopped")

    async def probe(self, device: DeviceTarget) -> Health:
        far_end = device.settings.get("far_end", "ok")
        return Health(ok=far_end == "ok", detail=f"{device.address}: {far_end}")

    def plays(self, device_id: UUID) -> int:
        """How many items the device played (the ``ObservablePlays`` hook)."""
        return self._plays[device_id]
