"""tcs-plugin-example: a complete minimal transport for tcs-core (ví dụ plugin truyền tải).

Each device is a folder under ``folder``, named by the device's ``address`` (think of a vendor's
sync agent that plays whatever lands there). ``deliver`` appends the item as one JSON line to
``<folder>/<address>/items.jsonl``, once per idempotency key; ``preempt`` appends a stop line;
``probe`` checks that the folder exists and is writable.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs

from tcs_core import Channel
from tcs_core.domain.values import ContentVariant
from tcs_core.transport import (
    Capability,
    DeliveryContext,
    DeviceTarget,
    Health,
    Limits,
    Mode,
    Outcome,
    resolve_secret,
)

__all__ = ["ExampleTransport"]


class ExampleTransport:
    """Writes each item as a JSON line to its device's folder; a key is written only once."""

    def __init__(
        self,
        folder: str,
        *,
        name: str = "example",
        secret: str | None = None,
        rate_per_s: float | None = None,
        timeout_s: float = 5.0,
        concurrency: int = 50,
    ) -> None:
        self.name = name
        self.channels = frozenset(Channel)
        self.capabilities = frozenset(
            {Capability.AUDIO, Capability.TEXT, Capability.IMAGE, Capability.SMS}
        )
        self.mode = Mode.LIVE
        self.limits = Limits(concurrency=concurrency, rate_per_s=rate_per_s, timeout_s=timeout_s)
        self.folder = Path(folder)
        self._secret = secret  # "env:NAME", resolved in open(): never a secret in the config
        self._key: bytes | None = None
        self._lock = threading.Lock()  # "is the key there? no: append" must be one step
        self._next_slot = 0.0  # when the next delivery may start under rate_per_s
        self._files: dict[UUID, Path] = {}

    async def open(self) -> None:
        if self._secret is not None:
            self._key = resolve_secret(self._secret).encode()

    async def close(self) -> None:
        self._key = None

    async def deliver(
        self, device: DeviceTarget, content: ContentVariant, key: str, context: DeliveryContext
    ) -> Outcome:
        wait = self._slot()
        if wait is None:
            return Outcome.retryable(
                f"rate limit of {self.limits.rate_per_s:g}/s reached", retry_after_s=1.0
            )
        await asyncio.sleep(wait)
        record = {
            "kind": "play",
            "key": key,
            "at": datetime.now(UTC).isoformat(),
            "priority": str(context.priority),
            "type": type(content).__name__,
            "content": attrs.asdict(content),
        }
        return await self._write(device, record, key)

    async def preempt(self, device: DeviceTarget) -> Outcome:
        return await self._write(device, {"kind": "stop", "at": datetime.now(UTC).isoformat()})

    async def probe(self, device: DeviceTarget) -> Health:
        folder = self.folder / device.address
        ok = folder.is_dir() and os.access(folder, os.W_OK)
        detail = f"{folder} is writable" if ok else f"{folder} is missing or read-only"
        return Health(ok=ok, detail=detail, at=datetime.now(UTC))

    def plays(self, device_id: UUID) -> int:
        """Items played by the device so far (the conformance suite's ``ObservablePlays``)."""
        path = self._files.get(device_id)
        if path is None or not path.exists():
            return 0
        lines = path.read_text(encoding="utf-8").splitlines()
        return sum(json.loads(line)["kind"] == "play" for line in lines)

    def _slot(self) -> float | None:
        """Seconds to wait before delivering under ``rate_per_s``; None if that is too long."""
        rate = self.limits.rate_per_s
        if rate is None:
            return 0.0
        now = time.monotonic()
        start = max(now, self._next_slot)
        if start - now > self.limits.timeout_s / 2:
            return None
        self._next_slot = start + 1 / rate
        return start - now

    async def _write(
        self, device: DeviceTarget, record: dict[str, Any], key: str | None = None
    ) -> Outcome:
        folder = self.folder / device.address
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                written = await asyncio.to_thread(self._append, folder, record, key)
        except TimeoutError:
            return Outcome.retryable(
                f"{device.name}: {folder} did not answer within {self.limits.timeout_s:g} s"
            )
        except OSError as exc:
            return Outcome.retryable(f"{device.name}: cannot write to {folder}: {exc}")
        except ValueError as exc:  # a line that is not JSON: the far end answers garbage
            return Outcome.failed(f"{device.name}: {folder}/items.jsonl is corrupt: {exc}")
        self._files[device.device_id] = folder / "items.jsonl"
        return Outcome.delivered(remote_id=key, reason="" if written else "key already written")

    def _append(self, folder: Path, record: dict[str, Any], key: str | None) -> bool:
        """Append ``record`` unless a line with ``key`` exists; True if it was written."""
        if not folder.is_dir():
            raise FileNotFoundError(f"no folder {folder}")
        if self._key is not None:
            body = json.dumps(record, ensure_ascii=False, sort_keys=True).encode()
            record = {**record, "sig": hmac.new(self._key, body, hashlib.sha256).hexdigest()}
        path = folder / "items.jsonl"
        with self._lock:
            if key is not None and path.exists():
                for line in path.read_text(encoding="utf-8").splitlines():
                    if json.loads(line).get("key") == key:
                        return False
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return True
