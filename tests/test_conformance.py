"""The transport conformance suite, run on the in-memory transport, the example plugin, and a
deliberately broken transport that it must catch.

- ``TestMemoryTransport``: ``MemoryTransport`` with the small additions proposed for memory.py
  (``plays``, a per-device answer delay bounded by the timeout, an honest probe, pacing to
  ``limits.rate_per_s``) and scripted unreachable, slow and malformed devices: every test runs.
- ``TestExampleTransport``: the example plugin's own conformance class
  (``examples/minimal_plugin/tests``), imported without installing the plugin, plus a slow device
  (a folder on a stalled network share) so that nothing is skipped here.
- ``MemoryTransport`` exactly as it is, and ``examples/broken_transport.py``, run through the suite
  with pytester: the plain one passes what applies and skips the rest with reasons; the broken one
  fails exactly the expected tests, with the expected messages. (Run in pytester so that their
  intended skips do not count as skips under ``TCS_REQUIRE_PEERS=1``.)
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
import time
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tcs_core import Channel, DeviceKind
from tcs_core.domain.values import ContentVariant
from tcs_core.errors import NotFound
from tcs_core.memory import MemoryTransport
from tcs_core.testing.conformance import (
    ObservablePlays,
    TransportConformance,
    call,
    make_context,
    names_device,
)
from tcs_core.transport import (
    DeliveryContext,
    DeviceTarget,
    Health,
    Limits,
    Outcome,
    Transport,
    load_transport_factory,
)

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PLUGIN = EXAMPLES / "minimal_plugin"
for _path in (EXAMPLES, PLUGIN / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from broken_transport import BrokenTransport  # type: ignore[import-not-found]  # noqa: E402
from tcs_plugin_example import ExampleTransport  # type: ignore[import-not-found]  # noqa: E402


def _device(n: int, name: str, address: str, **settings: str) -> DeviceTarget:
    return DeviceTarget(
        UUID(int=n), name, DeviceKind.IP_SPEAKER, address, settings, (Channel.AUDIO,)
    )


WORKING = _device(1, "Loa thôn Một", "10.0.0.11")
UNREACHABLE = _device(2, "Loa chợ Ea Tiêu", "10.0.0.12", far_end="down")
SLOW = _device(3, "Loa buôn Kô Đung", "10.0.0.13", delay_s="5")
MALFORMED = _device(4, "Loa trường học", "10.0.0.14", far_end="garbage")


def far_end(device: DeviceTarget, context: DeliveryContext) -> Outcome | None:
    """The scripted far end of the memory devices."""
    if device.settings.get("far_end") == "down":
        return Outcome.retryable(f"{device.name} ({device.address}): connection refused")
    if device.settings.get("far_end") == "garbage":
        return Outcome.failed(f"{device.name}: unreadable answer b'\\x00\\xff<html>'")
    return None


class ConformingMemoryTransport(MemoryTransport):
    """``MemoryTransport`` plus the changes proposed for memory.py (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._next_slot = 0.0

    def plays(self, device_id: UUID) -> int:
        return len(self.played.get(device_id, ()))

    async def deliver(
        self, device: DeviceTarget, content: ContentVariant, key: str, context: DeliveryContext
    ) -> Outcome:
        rate = self.limits.rate_per_s
        if rate is not None:
            now = time.monotonic()
            start = max(now, self._next_slot)
            if start - now > self.limits.timeout_s / 2:
                return Outcome.retryable(f"rate limit of {rate:g}/s", retry_after_s=start - now)
            self._next_slot = start + 1 / rate
            await asyncio.sleep(start - now)
        delay = float(device.settings.get("delay_s", 0))
        if delay >= self.limits.timeout_s:
            await asyncio.sleep(self.limits.timeout_s)
            return Outcome.retryable(
                f"{device.name} ({device.address}): no answer within {self.limits.timeout_s:g} s"
            )
        await asyncio.sleep(delay)
        return await super().deliver(device, content, key, context)

    async def probe(self, device: DeviceTarget) -> Health:
        if device.settings.get("far_end") == "down":
            return Health(ok=False, detail=f"{device.address} does not answer")
        return await super().probe(device)


class TestMemoryTransport(TransportConformance):
    """The in-memory transport with every optional device: all tests run."""

    @pytest.fixture
    def transport(self) -> ConformingMemoryTransport:
        limits = Limits(rate_per_s=50.0, timeout_s=0.2)
        return ConformingMemoryTransport(limits=limits, script=far_end)

    @pytest.fixture
    def device(self) -> DeviceTarget:
        return WORKING

    @pytest.fixture
    def unreachable_device(self) -> DeviceTarget:
        return UNREACHABLE

    @pytest.fixture
    def slow_device(self) -> DeviceTarget:
        return SLOW

    @pytest.fixture
    def malformed_device(self) -> DeviceTarget:
        return MALFORMED


def _plugin_tests() -> Any:
    spec = importlib.util.spec_from_file_location(
        "tcs_plugin_example_tests", PLUGIN / "tests" / "test_example_plugin.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PluginConformance: Any = _plugin_tests().TestExampleTransport


class TestExampleTransport(PluginConformance):  # type: ignore[misc]
    """The plugin's own conformance class, plus a folder on a stalled network share."""

    @pytest.fixture
    def slow_device(self, monkeypatch: pytest.MonkeyPatch) -> DeviceTarget:
        append = ExampleTransport._append

        def stalled(transport: ExampleTransport, folder: Path, *args: Any) -> bool:
            if folder.name == "o-mang-cham":
                time.sleep(transport.limits.timeout_s + 0.2)  # the share answers too late
            return bool(append(transport, folder, *args))

        monkeypatch.setattr(ExampleTransport, "_append", stalled)
        return DeviceTarget(UUID(int=4), "Bảng tin ổ mạng", DeviceKind.BOARD, "o-mang-cham")


_PLAIN_MEMORY_SOURCE = """
import pytest
from uuid import UUID
from tcs_core import Channel, DeviceKind
from tcs_core.memory import MemoryTransport
from tcs_core.testing.conformance import TransportConformance
from tcs_core.transport import DeviceTarget, Outcome


def far_end(device, context):
    if device.settings.get("far_end") == "garbage":
        return Outcome.failed(f"{device.name}: unreadable answer")
    return None


class TestPlain(TransportConformance):
    @pytest.fixture
    def transport(self):
        return MemoryTransport(script=far_end)

    @pytest.fixture
    def device(self):
        return DeviceTarget(UUID(int=1), "Loa", DeviceKind.IP_SPEAKER, "10.0.0.1")

    @pytest.fixture
    def malformed_device(self):
        return DeviceTarget(UUID(int=2), "Loa", DeviceKind.IP_SPEAKER, "10.0.0.2", {"far_end": "garbage"})
"""


def test_plain_memory_transport_passes_what_applies(pytester: pytest.Pytester) -> None:
    """MemoryTransport as it is passes; tests needing a missing device or limit skip, saying why."""
    pytester.makepyfile(test_plain=_PLAIN_MEMORY_SOURCE)
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    passed, skipped, failed = reprec.listoutcomes()
    assert not failed, [r.longreprtext for r in failed]
    assert len(passed) == 9
    reasons = sorted(str(r.longrepr[2]) for r in skipped)  # type: ignore[index]
    assert reasons == [
        "Skipped: TestPlain.slow_device returned None: the plugin provides no such device",
        "Skipped: TestPlain.unreachable_device returned None: the plugin provides no such device",
        "Skipped: limits.rate_per_s is None: the transport declares no rate limit",
    ]


# --------------------------------------------------------------------------------------------
# The broken transport: the suite must catch every mistake, and only those
# --------------------------------------------------------------------------------------------

_BROKEN_SOURCE = """
import pytest
from uuid import UUID
from broken_transport import BrokenTransport
from tcs_core import Channel, DeviceKind
from tcs_core.testing.conformance import TransportConformance
from tcs_core.transport import DeviceTarget


def device(n, far_end):
    return DeviceTarget(
        UUID(int=n), f"Loa {far_end}", DeviceKind.IP_SPEAKER, f"10.0.0.{n}", {"far_end": far_end}
    )


class TestBroken(TransportConformance):
    @pytest.fixture
    def transport(self):
        return BrokenTransport()

    @pytest.fixture
    def device(self):
        return device(1, "ok")

    @pytest.fixture
    def unreachable_device(self):
        return device(2, "down")

    @pytest.fixture
    def slow_device(self):
        return device(3, "slow")

    @pytest.fixture
    def malformed_device(self):
        return device(4, "garbage")
"""

#: The conformance tests the broken transport must fail, and a phrase of each failure message.
BROKEN_FAILURES = {
    "test_deliver_returns_an_outcome_for_every_content_variant": (
        "deliver(SpeechContent) to 'Loa ok' (10.0.0.1) [audio/SpeechContent] raised "
        "NotImplementedError('text to speech')"
    ),
    "test_redelivery_with_the_same_key_is_not_a_second_play": (
        "played again: plays went from 1 to 2"
    ),
    "test_preempt_when_nothing_plays_is_safe": (
        "preempt() on 'Loa ok' (10.0.0.1) raised KeyError(UUID('00000000-0000-0000-0000-"
    ),
    "test_unreachable_device_fails_with_a_reason_naming_it": (
        "raised ConnectionRefusedError('connect to 10.0.0.2 refused'): outcomes are values"
    ),
    "test_slow_device_returns_within_the_timeout": (
        "deliver(AudioContent) to 'Loa slow' (10.0.0.3) did not return within 0.4 s"
    ),
    "test_malformed_answer_fails_with_a_reason": (
        "deliver(AudioContent) to 'Loa garbage' (10.0.0.4) returned None, not Outcome"
    ),
    "test_rate_limit_is_honoured": "rate limit not honoured: 8 of 8 concurrent deliveries",
    "test_concurrent_calls_return_outcomes_never_exceptions": (
        "raised RuntimeError('too many open connections')"
    ),
}

#: What the broken transport gets right, so the suite must pass it.
BROKEN_PASSES = {
    "test_declares_its_name_channels_capabilities_mode_and_limits",
    "test_deliver_to_the_working_device_is_delivered",
    "test_preempt_after_a_delivery_returns_an_outcome",
    "test_probe_returns_health",
}


def _test_name(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1]


def test_the_suite_catches_the_broken_transport(pytester: pytest.Pytester) -> None:
    """Run on examples/broken_transport.py, exactly the expected tests fail, each saying why."""
    pytester.syspathinsert(EXAMPLES)
    pytester.makepyfile(test_broken=_BROKEN_SOURCE)
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    passed, skipped, failed = reprec.listoutcomes()
    assert not skipped
    assert {_test_name(r.nodeid) for r in passed} == BROKEN_PASSES
    assert {_test_name(r.nodeid) for r in failed} == set(BROKEN_FAILURES)
    for report in failed:
        expected = BROKEN_FAILURES[_test_name(report.nodeid)]
        assert expected in report.longreprtext, (report.nodeid, report.longreprtext[-2000:])


def test_broken_transport_looks_like_a_transport() -> None:
    """The broken transport passes the registry's check: only behaviour gives it away."""
    assert isinstance(BrokenTransport(), Transport)
    assert isinstance(BrokenTransport(), ObservablePlays)
    assert isinstance(MemoryTransport(), ObservablePlays)  # it counts plays per device
    assert isinstance(ExampleTransport("."), ObservablePlays)


# --------------------------------------------------------------------------------------------
# Helpers of the suite
# --------------------------------------------------------------------------------------------


def test_call_reports_values_errors_non_awaitables_and_hangs() -> None:
    """`call` never raises: it reports a value, an exception, a non-awaitable, or a hang."""

    async def value() -> int:
        return 7

    async def boom() -> int:
        raise ValueError("boom")

    def sync_boom() -> object:
        raise OSError("at once")

    async def forever() -> None:
        await asyncio.Event().wait()

    async def main() -> list[Any]:
        return [
            await call(value, 1.0),
            await call(boom, 1.0),
            await call(sync_boom, 1.0),
            await call(lambda: None, 1.0),
            await call(forever, 0.05),
        ]

    ok, raised, raised_at_once, not_awaitable, hung = asyncio.run(main())
    assert ok.value == 7 and ok.error is None and not ok.hung
    assert isinstance(raised.error, ValueError)
    assert isinstance(raised_at_once.error, OSError)
    assert isinstance(not_awaitable.error, TypeError)
    assert "not an awaitable" in str(not_awaitable.error)
    assert hung.hung and hung.elapsed >= 0.05


def test_names_device_accepts_name_address_host_or_id() -> None:
    """A reason names a device by its name, address, host (without port or user) or id."""
    d = DeviceTarget(UUID(int=9), "Loa 9", DeviceKind.IP_SPEAKER, "sip:loa9@10.1.2.3:5060")
    assert names_device("Loa 9: busy", d)
    assert names_device("10.1.2.3 refused", d)
    assert names_device(f"{UUID(int=9)} gone", d)
    assert not names_device("connection refused", d)
    http = DeviceTarget(UUID(int=8), "Bảng", DeviceKind.BOARD, "https://board.example:8443/api")
    assert names_device("board.example: 500", http)


def test_make_context_is_a_fresh_dispatch_now() -> None:
    """Each context has its own dispatch id, a deadline after its occurrence, attempt 1."""
    a, b = make_context(), make_context()
    assert a.dispatch_id != b.dispatch_id
    assert a.deadline > a.occurrence and a.attempt == 1


# --------------------------------------------------------------------------------------------
# Finding the plugin by name (entry points), without installing it
# --------------------------------------------------------------------------------------------


def _fake_entry_points(*eps: EntryPoint) -> Any:
    def entry_points(**params: Any) -> EntryPoints:
        return EntryPoints(eps).select(**params)

    return entry_points


def test_load_transport_factory_finds_the_example_plugin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The entry point declared in the plugin's pyproject.toml resolves to ExampleTransport."""
    pyproject = (PLUGIN / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split('[project.entry-points."tcs_core.transports"]', 1)[1]
    declared = re.search(r'^example = "([^"]+)"', section, re.MULTILINE)
    assert declared is not None
    ep = EntryPoint(name="example", value=declared.group(1), group="tcs_core.transports")
    other = EntryPoint(name="other", value="json:dumps", group="something.else")
    monkeypatch.setattr("tcs_core.transport.entry_points", _fake_entry_points(ep, other))
    factory = load_transport_factory("example")
    assert factory is ExampleTransport
    transport = factory(str(tmp_path))
    assert isinstance(transport, Transport) and transport.name == "example"


def test_load_transport_factory_names_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown name is a NotFound listing the installed transports."""
    ep = EntryPoint(
        name="example", value="tcs_plugin_example:ExampleTransport", group="tcs_core.transports"
    )
    monkeypatch.setattr("tcs_core.transport.entry_points", _fake_entry_points(ep))
    with pytest.raises(NotFound, match=r"no transport named 'vendor-x' .*known: example"):
        load_transport_factory("vendor-x")


# --------------------------------------------------------------------------------------------
# The plugin guide shows the example plugin as it is
# --------------------------------------------------------------------------------------------


def _blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python[^\n]*\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


def test_plugin_guide_shows_the_example_plugin_verbatim() -> None:
    """docs/plugins.md shows the plugin's module, tests and entry point exactly as they are."""
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    blocks = _blocks(guide)
    module = PLUGIN / "src" / "tcs_plugin_example" / "__init__.py"
    tests = PLUGIN / "tests" / "test_example_plugin.py"
    assert module.read_text(encoding="utf-8") in blocks
    assert tests.read_text(encoding="utf-8") in blocks
    assert (PLUGIN / "pyproject.toml").read_text(encoding="utf-8") in guide
