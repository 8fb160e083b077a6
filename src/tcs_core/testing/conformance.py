"""A reusable pytest conformance suite for transport plugins.

Any transport (built in or third party) proves that it honours the contract of
``tcs_core.transport`` by subclassing ``TransportConformance`` in its own test suite and providing
a few fixtures::

    import pytest
    from tcs_core.testing.conformance import TransportConformance
    from tcs_core.transport import DeviceTarget

    class TestMyTransport(TransportConformance):
        @pytest.fixture
        def transport(self) -> MyTransport:
            return MyTransport(...)  # NOT opened: every test opens and closes it in its own loop

        @pytest.fixture
        def device(self) -> DeviceTarget:
            return DeviceTarget(...)  # a device that works

        # optional (default None: the tests that need them are skipped, with the reason):
        # unreachable_device, slow_device (answers slower than limits.timeout_s),
        # malformed_device (its far end answers garbage)

Every test runs through the public contract only (``open`` / ``deliver`` / ``preempt`` /
``probe`` / ``close`` and the declared attributes). The tests are plain synchronous pytest tests
that run their own event loop (``asyncio.Runner``), so no pytest asyncio plugin is needed. Because a
transport's sockets and sessions belong to the loop that opened them, the ``transport`` fixture
returns an *unopened* transport and each test opens and closes it inside its loop. A far end that
must run in that same loop (a simulated board served by aiohttp, say) is started by overriding
``peer()``.

A transport that wants its plays checked exactly implements ``ObservablePlays``; otherwise the
idempotency test checks only that a redelivery is answered consistently.

Requires the ``test`` extra (pytest, hypothesis). See ``docs/plugins.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NoReturn, Protocol, runtime_checkable
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcs_core.domain.values import (
    AudioContent,
    BoardContent,
    Channel,
    ContentVariant,
    OutcomeStatus,
    Preemption,
    Priority,
    SmsContent,
)
from tcs_core.testing import strategies as tst
from tcs_core.transport import (
    Capability,
    DeliveryContext,
    DeviceTarget,
    Health,
    Limits,
    Mode,
    Outcome,
    Transport,
    delivery_key,
)

__all__ = [
    "CHANNEL_CAPABILITIES",
    "CallResult",
    "ObservablePlays",
    "TransportConformance",
    "call",
    "make_context",
    "names_device",
    "sample_content",
    "variant_strategies",
]

#: Which capabilities can carry each channel (a declared channel needs at least one of them).
CHANNEL_CAPABILITIES: Mapping[Channel, frozenset[Capability]] = {
    Channel.AUDIO: frozenset({Capability.AUDIO, Capability.LIVE}),
    Channel.BOARD: frozenset({Capability.TEXT, Capability.IMAGE}),
    Channel.SMS: frozenset({Capability.SMS}),
}

_NOT_FINAL = (OutcomeStatus.FAILED, OutcomeStatus.RETRYABLE)


@runtime_checkable
class ObservablePlays(Protocol):
    """Optional hook: a transport that can tell how many items a device actually played.

    ``plays(device_id)`` counts distinct items the far end played (or accepted, in ``ahead``
    mode) for that device since the transport was created. With it, the conformance suite checks
    that a redelivery with the same idempotency key is not a second play.
    """

    def plays(self, device_id: UUID) -> int:
        """Number of items the device has played so far."""
        ...


# --------------------------------------------------------------------------------------------
# Helpers (public: use them in your own extra tests)
# --------------------------------------------------------------------------------------------


def make_context(
    dispatch_id: UUID | None = None,
    *,
    priority: Priority = Priority.NORMAL,
    duration_s: float = 30.0,
    attempt: int = 1,
) -> DeliveryContext:
    """A ``DeliveryContext`` for a dispatch starting now (a fresh dispatch id unless given)."""
    now = datetime.now(UTC)
    return DeliveryContext(
        dispatch_id=dispatch_id or uuid4(),
        broadcast_id=uuid4(),
        occurrence=now,
        priority=priority,
        preemption=Preemption.for_priority(priority),
        duration_s=duration_s,
        deadline=now + timedelta(minutes=10),
        attempt=attempt,
    )


def sample_content(channel: Channel) -> ContentVariant:
    """A small, valid, fixed content variant for ``channel`` (a recording for audio)."""
    channel = Channel(channel)
    if channel is Channel.AUDIO:
        return AudioContent("https://example.invalid/ban-tin-sang.mp3", "ab" * 32, 42.0)
    if channel is Channel.BOARD:
        return BoardContent("Thông báo: lịch tiêm chủng lúc 7 giờ 30 tại trạm y tế xã.")
    return SmsContent("UBND xã thông báo: mưa lớn, bà con chú ý phòng chống sạt lở đất.")


def variant_strategies(channel: Channel) -> dict[str, st.SearchStrategy[ContentVariant]]:
    """The Hypothesis strategies of every content variant a channel carries, by type name."""
    channel = Channel(channel)
    if channel is Channel.AUDIO:
        return {"AudioContent": tst.audio_contents(), "SpeechContent": tst.speech_contents()}
    if channel is Channel.BOARD:
        return {"BoardContent": tst.board_contents()}
    return {"SmsContent": tst.sms_contents()}


def names_device(reason: str, device: DeviceTarget) -> bool:
    """Whether ``reason`` names the device: its name, address (or host), or id."""
    wanted = {device.name, device.address, str(device.device_id), device.device_id.hex}
    host = device.address.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    wanted.add(host.rsplit(":", 1)[0] if host.count(":") == 1 else host)
    return any(w and w in reason for w in wanted)


@dataclass(frozen=True)
class CallResult:
    """What one bounded call into a transport did: its value, its exception, or that it hung."""

    value: object = None
    error: BaseException | None = None
    hung: bool = False
    elapsed: float = 0.0


async def call(start: Callable[[], object], limit: float, grace: float = 0.5) -> CallResult:
    """Call ``start()`` (which should return an awaitable) and await it for at most ``limit`` s.

    Never raises: a synchronous exception, an exception from the awaitable, a non-awaitable
    return value and a hang are all reported in the ``CallResult``. A call still running after
    ``limit`` is cancelled (and given ``grace`` seconds to unwind).
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        awaitable = start()
    except Exception as exc:
        return CallResult(error=exc, elapsed=loop.time() - began)
    if not isinstance(awaitable, Awaitable):
        return CallResult(
            error=TypeError(f"returned {awaitable!r}, not an awaitable (the method is not async)"),
            elapsed=loop.time() - began,
        )
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=limit)
    elapsed = loop.time() - began
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=grace)
        return CallResult(hung=True, elapsed=elapsed)
    if task.cancelled():
        return CallResult(error=asyncio.CancelledError("cancelled from inside"), elapsed=elapsed)
    error = task.exception()
    if error is not None:
        return CallResult(error=error, elapsed=elapsed)
    return CallResult(value=task.result(), elapsed=elapsed)


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


def _label(device: DeviceTarget) -> str:
    return f"{device.name!r} ({device.address})"


def _problem(result: CallResult, what: str, limit: float, expected: type) -> str | None:
    """Why ``result`` breaks the contract for a call expected to return ``expected``, or None."""
    if result.hung:
        return (
            f"{what} did not return within {limit:.3g} s (2 x limits.timeout_s): a transport "
            "must bound every wait on the far end by its own timeout"
        )
    if result.error is not None:
        return (
            f"{what} raised {result.error!r}: outcomes are values, never exceptions "
            f"(return Outcome.failed(...) or Outcome.retryable(...))"
        )
    if not isinstance(result.value, expected):
        wanted = "None" if expected is type(None) else f"{expected.__name__} (never None)"
        return f"{what} returned {result.value!r}, not {wanted}"
    if isinstance(result.value, Outcome):
        outcome = result.value
        if outcome.status in _NOT_FINAL and not outcome.reason.strip():
            return f"{what} returned {outcome.status.value} with an empty reason"
    return None


def _outcome(result: CallResult, what: str, limit: float) -> Outcome:
    problem = _problem(result, what, limit, Outcome)
    if problem is not None:
        _fail(problem)
    assert isinstance(result.value, Outcome)
    return result.value


def _health(result: CallResult, what: str, limit: float) -> Health:
    problem = _problem(result, what, limit, Health)
    if problem is not None:
        _fail(problem)
    assert isinstance(result.value, Health)
    return result.value


# --------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------


class TransportConformance:
    """Subclass as ``Test<YourTransport>`` and provide the fixtures (see the module docstring).

    Tuning (class attributes): ``examples_per_variant`` Hypothesis examples per content variant,
    ``concurrent_calls`` deliveries issued at once, ``timeout_factor`` (a call must return within
    ``timeout_factor x limits.timeout_s``, and at least ``min_margin_s`` more than the timeout),
    ``max_rate_calls`` (above this many deliveries the rate test skips).
    """

    examples_per_variant: ClassVar[int] = 5
    concurrent_calls: ClassVar[int] = 32
    timeout_factor: ClassVar[float] = 2.0
    min_margin_s: ClassVar[float] = 0.1
    max_rate_calls: ClassVar[int] = 2000

    # -- fixtures the plugin provides -----------------------------------------------------------

    @pytest.fixture
    def transport(self) -> Transport:
        """The transport under test, *not* opened (each test opens and closes it)."""
        raise NotImplementedError(f"{type(self).__name__} must define the `transport` fixture")

    @pytest.fixture
    def device(self) -> DeviceTarget:
        """A device that works: deliveries to it succeed."""
        raise NotImplementedError(f"{type(self).__name__} must define the `device` fixture")

    @pytest.fixture
    def unreachable_device(self) -> DeviceTarget | None:
        """A device that cannot be reached (None: skip the test that needs it)."""
        return None

    @pytest.fixture
    def slow_device(self) -> DeviceTarget | None:
        """A device that answers slower than ``limits.timeout_s`` (None: skip)."""
        return None

    @pytest.fixture
    def malformed_device(self) -> DeviceTarget | None:
        """A device whose far end answers garbage (None: skip)."""
        return None

    # -- hooks ---------------------------------------------------------------------------------

    def peer(self) -> contextlib.AbstractAsyncContextManager[object]:
        """Override to run the far end (e.g. a simulated device) in the test's own event loop.

        Entered before the transport is opened and exited after it is closed.
        """
        return contextlib.nullcontext()

    def limit(self, transport: Transport) -> float:
        """How long any single call may take: the transport's timeout and a margin."""
        timeout = transport.limits.timeout_s
        return max(self.timeout_factor * timeout, timeout + self.min_margin_s)

    @contextlib.contextmanager
    def session(self, transport: Transport) -> Iterator[asyncio.Runner]:
        """Run ``peer()``, open ``transport`` and yield the event loop runner; close on exit."""
        limit = self.limit(transport)
        with asyncio.Runner() as runner:
            stack = contextlib.AsyncExitStack()
            runner.run(stack.enter_async_context(self.peer()))
            try:
                opened = runner.run(call(transport.open, limit))
                problem = _problem(opened, "open()", limit, type(None))
                if problem is not None:
                    _fail(problem)
                failed = False
                try:
                    yield runner
                except BaseException:
                    failed = True
                    raise
                finally:
                    closed = runner.run(call(transport.close, limit))
                    problem = _problem(closed, "close()", limit, type(None))
                    if problem is not None and not failed:
                        _fail(problem)
            finally:
                runner.run(stack.aclose())

    def _deliver(
        self,
        runner: asyncio.Runner,
        transport: Transport,
        device: DeviceTarget,
        content: ContentVariant,
        key: str | None = None,
        limit: float | None = None,
    ) -> tuple[CallResult, str]:
        context = make_context()
        key = key or delivery_key(context.dispatch_id, device.device_id)
        what = f"deliver({type(content).__name__}) to {_label(device)}"

        def start() -> object:
            return transport.deliver(device, content, key, context)

        return runner.run(call(start, limit or self.limit(transport))), what

    def _preempt(
        self, runner: asyncio.Runner, transport: Transport, device: DeviceTarget
    ) -> Outcome:
        limit = self.limit(transport)
        result = runner.run(call(lambda: transport.preempt(device), limit))
        return _outcome(result, f"preempt() on {_label(device)}", limit)

    def _probe(self, runner: asyncio.Runner, transport: Transport, device: DeviceTarget) -> Health:
        limit = self.limit(transport)
        result = runner.run(call(lambda: transport.probe(device), limit))
        return _health(result, f"probe() of {_label(device)}", limit)

    @staticmethod
    def _channels(transport: Transport, device: DeviceTarget) -> list[Channel]:
        declared = set(transport.channels)
        if device.channels:
            declared &= set(device.channels)
        return sorted(declared)

    def _content(self, transport: Transport, device: DeviceTarget) -> ContentVariant:
        channels = self._channels(transport, device)
        if not channels:
            _fail(
                f"the device {_label(device)} has no channel in common with the transport "
                f"({sorted(transport.channels)}): give the `device` fixture a matching channel"
            )
        return sample_content(channels[0])

    @staticmethod
    def _require(value: DeviceTarget | None, fixture: str, cls: type) -> DeviceTarget:
        if value is None:
            pytest.skip(
                f"{cls.__name__}.{fixture} returned None: the plugin provides no such device"
            )
        return value

    # -- the tests -----------------------------------------------------------------------------

    def test_declares_its_name_channels_capabilities_mode_and_limits(
        self, transport: Transport
    ) -> None:
        """Pins the declared data: a name, channels, capabilities, a mode and valid limits."""
        problems: list[str] = []
        if not isinstance(transport, Transport):
            problems.append(f"{transport!r} does not implement the Transport protocol")
        name = getattr(transport, "name", None)
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            problems.append(f"name must be a non-empty string without spaces around, not {name!r}")
        chans = getattr(transport, "channels", None)
        if not isinstance(chans, frozenset) or not chans:
            problems.append(f"channels must be a non-empty frozenset of Channel, not {chans!r}")
        elif not all(isinstance(c, Channel) for c in chans):
            problems.append(f"channels must hold Channel members, not {sorted(map(repr, chans))}")
        caps = getattr(transport, "capabilities", None)
        if not isinstance(caps, frozenset) or not caps:
            problems.append(f"capabilities must be a non-empty frozenset of Capability: {caps!r}")
        elif not all(isinstance(c, Capability) for c in caps):
            problems.append(f"capabilities must hold Capability members: {sorted(map(repr, caps))}")
        elif isinstance(chans, frozenset):
            for channel in sorted(c for c in chans if isinstance(c, Channel)):
                if not caps & CHANNEL_CAPABILITIES[channel]:
                    carriers = ", ".join(sorted(CHANNEL_CAPABILITIES[channel]))
                    problems.append(
                        f"channel {channel} is declared but no capability carries it "
                        f"(one of: {carriers})"
                    )
        mode = getattr(transport, "mode", None)
        if not isinstance(mode, Mode):
            problems.append(f"mode must be Mode.LIVE or Mode.AHEAD, not {mode!r}")
        limits = getattr(transport, "limits", None)
        if not isinstance(limits, Limits):
            problems.append(f"limits must be a Limits, not {limits!r}")
        else:
            if not isinstance(limits.concurrency, int) or limits.concurrency < 1:
                problems.append(f"limits.concurrency must be an int >= 1: {limits.concurrency!r}")
            if not (math.isfinite(limits.timeout_s) and limits.timeout_s > 0):
                problems.append(f"limits.timeout_s must be finite and positive: {limits.timeout_s}")
            rate = limits.rate_per_s
            if rate is not None and not (math.isfinite(rate) and rate > 0):
                problems.append(f"limits.rate_per_s must be None or finite and positive: {rate}")
        assert not problems, "; ".join(problems)

    def test_deliver_returns_an_outcome_for_every_content_variant(
        self, transport: Transport, device: DeviceTarget
    ) -> None:
        """Pins that deliver returns an Outcome (never raises) for every variant of its channels."""
        with self.session(transport) as runner:
            for channel in sorted(transport.channels):
                for variant, strategy in variant_strategies(channel).items():
                    self._check_variant(runner, transport, device, f"{channel}/{variant}", strategy)

    def _check_variant(
        self,
        runner: asyncio.Runner,
        transport: Transport,
        device: DeviceTarget,
        label: str,
        strategy: st.SearchStrategy[ContentVariant],
    ) -> None:
        limit = self.limit(transport)

        @settings(
            max_examples=self.examples_per_variant,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(content=strategy)
        def check(content: ContentVariant) -> None:
            result, what = self._deliver(runner, transport, device, content)
            _outcome(result, f"{what} [{label}]", limit)

        check()

    def test_deliver_to_the_working_device_is_delivered(
        self, transport: Transport, device: DeviceTarget
    ) -> None:
        """Pins that the working device accepts a simple item on each channel it shares."""
        self._content(transport, device)  # fails clearly if they share no channel
        channels = self._channels(transport, device)
        limit = self.limit(transport)
        with self.session(transport) as runner:
            for channel in channels:
                result, what = self._deliver(runner, transport, device, sample_content(channel))
                outcome = _outcome(result, what, limit)
                assert outcome.status is OutcomeStatus.DELIVERED, (
                    f"{what} returned {outcome.status.value} ({outcome.reason!r}) for the working "
                    "device; the `device` fixture must be one that works"
                )

    def test_redelivery_with_the_same_key_is_not_a_second_play(
        self, transport: Transport, device: DeviceTarget
    ) -> None:
        """Pins idempotency: the same key delivered twice plays once (or answers consistently)."""
        limit = self.limit(transport)
        content = self._content(transport, device)
        key = delivery_key(uuid4(), device.device_id)
        observable = isinstance(transport, ObservablePlays)
        with self.session(transport) as runner:
            before = _plays(transport, device)
            first_result, what = self._deliver(runner, transport, device, content, key)
            first = _outcome(first_result, f"first {what}", limit)
            after_first = _plays(transport, device)
            second_result, _ = self._deliver(runner, transport, device, content, key)
            second = _outcome(second_result, f"second {what} with the same key", limit)
            after_second = _plays(transport, device)
        for n, outcome in (("first", first), ("second", second)):
            assert outcome.status is not OutcomeStatus.FAILED, (
                f"the {n} delivery with key {key} failed ({outcome.reason!r}): redelivering an "
                "accepted key must be recognised, not refused"
            )
        if first.status is OutcomeStatus.DELIVERED:
            assert second.status is OutcomeStatus.DELIVERED, (
                f"key {key} was delivered, then the same key was answered {second.status.value} "
                f"({second.reason!r}): a redelivery of an accepted key is delivered again"
            )
        if observable and first.status is OutcomeStatus.DELIVERED:
            assert after_first - before == 1, (
                f"one delivery made plays({device.device_id}) go from {before} to {after_first}"
            )
            assert after_second == after_first, (
                f"redelivery with the same key {key} played again: plays went from "
                f"{after_first} to {after_second} (the key must be recognised)"
            )

    def test_preempt_after_a_delivery_returns_an_outcome(
        self, transport: Transport, device: DeviceTarget
    ) -> None:
        """Pins that preempt stops what a delivery started and answers with an Outcome."""
        limit = self.limit(transport)
        content = self._content(transport, device)
        with self.session(transport) as runner:
            result, what = self._deliver(runner, transport, device, content)
            _outcome(result, what, limit)
            outcome = self._preempt(runner, transport, device)
        assert outcome.status is not OutcomeStatus.FAILED, (
            f"preempt() on the working device {_label(device)} failed: {outcome.reason!r}"
        )

    def test_preempt_when_nothing_plays_is_safe(
        self, transport: Transport, device: DeviceTarget
    ) -> None:
        """Pins that preempt with nothing playing returns an Outcome (delivered), never raises."""
        with self.session(transport) as runner:
            first = self._preempt(runner, transport, device)
            second = self._preempt(runner, transport, device)
        for outcome in (first, second):
            assert outcome.status is OutcomeStatus.DELIVERED, (
                f"preempt() on {_label(device)} with nothing playing returned "
                f"{outcome.status.value} ({outcome.reason!r}); the contract says delivered"
            )

    def test_probe_returns_health(self, transport: Transport, device: DeviceTarget) -> None:
        """Pins that probe returns a Health (ok for the working device), never raises."""
        with self.session(transport) as runner:
            health = self._probe(runner, transport, device)
        assert health.ok is True, (
            f"probe() of the working device {_label(device)} says not ok: {health.detail!r}"
        )

    def test_unreachable_device_fails_with_a_reason_naming_it(
        self, transport: Transport, device: DeviceTarget, unreachable_device: DeviceTarget | None
    ) -> None:
        """Pins that an unreachable device yields failed/retryable naming it, and an unhealthy probe."""
        target = self._require(unreachable_device, "unreachable_device", type(self))
        limit = self.limit(transport)
        content = self._content(transport, device)
        with self.session(transport) as runner:
            result, what = self._deliver(runner, transport, target, content)
            outcome = _outcome(result, what, limit)
            health = self._probe(runner, transport, target)
            self._preempt(runner, transport, target)
        assert outcome.status in _NOT_FINAL, (
            f"{what} returned {outcome.status.value} for a device that cannot be reached"
        )
        assert names_device(outcome.reason, target), (
            f"the reason {outcome.reason!r} does not name the device: a technician needs its "
            f"name, address or id ({_label(target)})"
        )
        assert health.ok is False, (
            f"probe() of the unreachable device {_label(target)} says ok: {health.detail!r}"
        )

    def test_slow_device_returns_within_the_timeout(
        self, transport: Transport, device: DeviceTarget, slow_device: DeviceTarget | None
    ) -> None:
        """Pins that calls to a device slower than limits.timeout_s return in time, not hang."""
        target = self._require(slow_device, "slow_device", type(self))
        limit = self.limit(transport)
        content = self._content(transport, device)
        with self.session(transport) as runner:
            result, what = self._deliver(runner, transport, target, content)
            outcome = _outcome(result, what, limit)
            self._probe(runner, transport, target)
            self._preempt(runner, transport, target)
        assert outcome.status in _NOT_FINAL, (
            f"{what} returned delivered although the device answers slower than "
            f"limits.timeout_s={transport.limits.timeout_s:g} s"
        )

    def test_malformed_answer_fails_with_a_reason(
        self, transport: Transport, device: DeviceTarget, malformed_device: DeviceTarget | None
    ) -> None:
        """Pins that a far end answering garbage yields failed/retryable with a reason."""
        target = self._require(malformed_device, "malformed_device", type(self))
        limit = self.limit(transport)
        content = self._content(transport, device)
        with self.session(transport) as runner:
            result, what = self._deliver(runner, transport, target, content)
            outcome = _outcome(result, what, limit)
            self._probe(runner, transport, target)
        assert outcome.status in _NOT_FINAL, (
            f"{what} returned delivered although the far end answered garbage"
        )

    def test_rate_limit_is_honoured(self, transport: Transport, device: DeviceTarget) -> None:
        """Pins limits.rate_per_s: concurrent deliveries are accepted no faster than it allows."""
        rate = transport.limits.rate_per_s
        if rate is None:
            pytest.skip("limits.rate_per_s is None: the transport declares no rate limit")
        burst = max(1.0, rate)
        n = math.ceil(burst) + max(2, math.ceil(rate / 2))
        if n > self.max_rate_calls:
            pytest.skip(f"rate_per_s={rate:g} needs {n} deliveries to check (> max_rate_calls)")
        limit = self.limit(transport) + n / rate
        content = self._content(transport, device)

        async def burst_of_deliveries() -> tuple[list[CallResult], float]:
            gate = asyncio.Semaphore(transport.limits.concurrency)  # as the engine does

            async def one() -> CallResult:
                context = make_context()
                key = delivery_key(context.dispatch_id, device.device_id)
                async with gate:
                    return await call(
                        lambda: transport.deliver(device, content, key, context), limit
                    )

            began = time.monotonic()
            results = await asyncio.gather(*(one() for _ in range(n)))
            return results, time.monotonic() - began

        with self.session(transport) as runner:
            results, elapsed = runner.run(burst_of_deliveries())
        delivered = sum(1 for r in results if _is_delivered(r))
        allowed = burst + rate * elapsed * 1.05 + 0.5
        assert delivered >= 1, f"none of {n} deliveries to the working device was delivered"
        assert delivered <= allowed, (
            f"rate limit not honoured: {delivered} of {n} concurrent deliveries were accepted in "
            f"{elapsed:.3f} s, but limits.rate_per_s={rate:g} allows at most {allowed:.1f} "
            f"(a burst of {burst:g}, then {rate:g}/s); pace the calls or answer retryable"
        )

    def test_concurrent_calls_return_outcomes_never_exceptions(
        self, transport: Transport, device: DeviceTarget
    ) -> None:
        """Pins that concurrent deliver/preempt/probe calls return values and each key plays once."""
        n = max(2, min(self.concurrent_calls, transport.limits.concurrency))
        rate = transport.limits.rate_per_s
        limit = self.limit(transport) + (n / rate if rate else 0.0)
        content = self._content(transport, device)
        contexts = [make_context() for _ in range(n)]
        keys = [delivery_key(c.dispatch_id, device.device_id) for c in contexts]
        calls: list[tuple[str, Callable[[], object], type, str | None]] = []
        for i, (context, key) in enumerate(zip(contexts, keys, strict=True)):
            start = _bind_deliver(transport, device, content, key, context)
            calls.append((f"deliver #{i}", start, Outcome, key))
        for i in range(min(4, n)):  # the same keys again, at the same time
            start = _bind_deliver(transport, device, content, keys[i], contexts[i])
            calls.append((f"deliver #{i} again", start, Outcome, keys[i]))
        for i in range(2):
            calls.append((f"preempt #{i}", lambda: transport.preempt(device), Outcome, None))
            calls.append((f"probe #{i}", lambda: transport.probe(device), Health, None))

        async def everything() -> list[CallResult | BaseException]:
            return await asyncio.gather(
                *(call(start, limit) for _, start, _, _ in calls), return_exceptions=True
            )

        with self.session(transport) as runner:
            before = _plays(transport, device)
            results = runner.run(everything())
            played = _plays(transport, device) - before
        problems = []
        delivered: set[str] = set()
        for (what, _, expected, played_key), result in zip(calls, results, strict=True):
            if isinstance(result, BaseException):  # cannot happen with `call`, but be explicit
                problems.append(f"{what} raised {result!r}")
                continue
            problem = _problem(result, what, limit, expected)
            if problem is not None:
                problems.append(problem.split(": outcomes are values")[0])
            elif played_key is not None and _is_delivered(result):
                delivered.add(played_key)
        assert not problems, (
            f"{len(problems)} of {len(calls)} concurrent calls to {_label(device)} broke the "
            f"contract (outcomes are values, never exceptions): "
            + "; ".join(problems[:5])
            + (" ..." if len(problems) > 5 else "")
        )
        if isinstance(transport, ObservablePlays):
            assert played == len(delivered), (
                f"{len(delivered)} distinct keys were delivered concurrently (some of them twice "
                f"at once), but the device played {played} items: each key must play once"
            )


def _is_delivered(result: CallResult) -> bool:
    return isinstance(result.value, Outcome) and result.value.status is OutcomeStatus.DELIVERED


def _plays(transport: Transport, device: DeviceTarget) -> int:
    """``plays(device_id)`` if the transport implements ``ObservablePlays``, else 0."""
    if isinstance(transport, ObservablePlays):
        return transport.plays(device.device_id)
    return 0


def _bind_deliver(
    transport: Transport,
    device: DeviceTarget,
    content: ContentVariant,
    key: str,
    context: DeliveryContext,
) -> Callable[[], Any]:
    def start() -> Any:
        return transport.deliver(device, content, key, context)

    return start
