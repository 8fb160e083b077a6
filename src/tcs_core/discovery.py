"""Zeroconf (mDNS / DNS-SD) discovery of devices on the LAN, for any transport.

Transports say which DNS-SD service types their devices advertise through an optional attribute,
read with ``getattr`` so that transports without it need no change::

    class BoardTransport:
        discovery_service_types = frozenset({"_tcs-board._tcp.local."})

``Browser`` (or the one-shot ``browse``) listens for those types, resolves each advertisement and
reads its TXT records into a validated ``DiscoveredService``; advertisements that break the
layout become ``DiscoveryProblem`` values naming the TXT record and the reason. Nothing here
registers a device: ``record_found`` hands the finds to ``SourceSystem.record_discovered``, which
keeps them *pending* until an admin accepts one (docs/discovery.md).

``advertise`` is the other side: an async context manager that announces a (simulated) device
until the block ends.

Built on python-zeroconf (``AsyncZeroconf``, ``AsyncServiceBrowser``, ``AsyncServiceInfo``), part
of the ``server`` extra. Pass ``interfaces=["127.0.0.1"]`` to keep everything on loopback (tests,
``tcs demo``); the default is every IPv4 interface of the machine (what a server on a LAN wants).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import ipaddress
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any

import attrs
from zeroconf import (
    BadTypeInNameException,
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from tcs_core.domain.device import _SECRET_NAME
from tcs_core.domain.discovered import (
    TXT_VERSION,
    DiscoveredService,
    DiscoveryRecord,
    normalise_service_type,
)
from tcs_core.domain.values import Channel
from tcs_core.errors import AlreadyExists, ValidationError

if TYPE_CHECKING:
    from tcs_core.app import Actor, SourceSystem

__all__ = [
    "Advertisement",
    "BrowseResult",
    "Browser",
    "DiscoveryProblem",
    "ServiceTypeDeclaration",
    "advertise",
    "browse",
    "declared_service_types",
    "installed_service_types",
    "record_found",
    "recorder",
]

log = logging.getLogger("tcs_core.discovery")

FoundCallback = Callable[[DiscoveredService], Awaitable[None] | None]
ProblemCallback = Callable[["DiscoveryProblem"], Awaitable[None] | None]


@attrs.frozen
class ServiceTypeDeclaration:
    """A DNS-SD service type, the transport that declared it and the channels it serves."""

    service_type: str
    transport: str
    channels: frozenset[Channel] | None = None  # None: the transport did not say


@attrs.frozen
class DiscoveryProblem:
    """An advertisement that could not be read: which service, which field, and why."""

    service_name: str
    service_type: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.service_name}: {self.field}: {self.reason}"


@attrs.frozen
class BrowseResult:
    """What one browse found (sorted by service name) and what it could not read."""

    found: tuple[DiscoveredService, ...]
    problems: tuple[DiscoveryProblem, ...]


def declared_service_types(
    transports: Iterable[Any], extra: Mapping[str, str] | None = None
) -> dict[str, ServiceTypeDeclaration]:
    """The service types the transports declare in their optional ``discovery_service_types``
    attribute (objects or classes; those without it are skipped), plus ``extra`` (type →
    transport name). A type declared by two different transports is an error."""
    out: dict[str, ServiceTypeDeclaration] = {}

    def add(stype: str, decl: ServiceTypeDeclaration) -> None:
        seen = out.get(stype)
        if seen is not None and seen.transport != decl.transport:
            raise ValidationError(
                "discovery_service_types",
                f"{stype} is declared by both {seen.transport!r} and {decl.transport!r}",
            )
        out[stype] = decl

    for t in transports:
        types = getattr(t, "discovery_service_types", None)
        if not types:
            continue
        name = getattr(t, "name", None)
        if not isinstance(name, str) or not name:
            raise ValidationError("transport", f"{t!r} declares service types but has no name")
        raw_channels = getattr(t, "channels", None)
        channels = None
        if isinstance(raw_channels, Iterable) and not isinstance(raw_channels, str):
            channels = frozenset(Channel(c) for c in raw_channels)
        for raw in [types] if isinstance(types, str) else types:
            stype = normalise_service_type(raw)
            add(stype, ServiceTypeDeclaration(stype, name, channels))
    for raw, transport in (extra or {}).items():
        stype = normalise_service_type(raw)
        add(stype, ServiceTypeDeclaration(stype, transport, None))
    return out


def installed_service_types(
    extra: Mapping[str, str] | None = None,
) -> tuple[dict[str, ServiceTypeDeclaration], list[str]]:
    """The service types declared by the transports installed under the entry-point group
    ``tcs_core.transports`` (each factory's ``discovery_service_types``), plus ``extra``; and
    a note for each entry point that could not be loaded (it is skipped)."""
    from importlib.metadata import entry_points

    from tcs_core.transport import ENTRY_POINT_GROUP

    @attrs.frozen
    class _Named:  # a factory (class or function) under its entry-point name
        name: str
        channels: Any
        discovery_service_types: Any

    found: list[_Named] = []
    notes: list[str] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            factory = ep.load()
        except Exception as exc:  # a broken plugin must not stop discovery of the others
            notes.append(f"{ep.name}: {type(exc).__name__}: {exc}")
            continue
        types = getattr(factory, "discovery_service_types", None)
        if types:
            name = getattr(factory, "name", None)
            found.append(
                _Named(
                    name if isinstance(name, str) and name else ep.name,
                    getattr(factory, "channels", None),
                    types,
                )
            )
    return declared_service_types(found, extra), notes


def _zeroconf(interfaces: Sequence[str] | None) -> AsyncZeroconf:
    if interfaces is None:
        return AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
    v6 = any(":" in i for i in interfaces)
    return AsyncZeroconf(
        interfaces=list(interfaces), ip_version=IPVersion.All if v6 else IPVersion.V4Only
    )


async def _call(callback: Callable[[Any], Awaitable[None] | None] | None, value: Any) -> None:
    if callback is None:
        return
    result = callback(value)
    if inspect.isawaitable(result):
        await result


class Browser:
    """Browse for the declared service types until stopped (``async with Browser(...)``).

    ``found`` holds the current advertisements by service name (an advertisement that goes
    away is dropped); ``problems`` the ones that could not be read. ``on_found`` and
    ``on_problem`` are called (or awaited) as they come, in the event loop."""

    def __init__(
        self,
        transports: Iterable[Any] | Mapping[str, ServiceTypeDeclaration],
        *,
        interfaces: Sequence[str] | None = None,
        on_found: FoundCallback | None = None,
        on_problem: ProblemCallback | None = None,
        resolve_timeout_s: float = 3.0,
        zeroconf: AsyncZeroconf | None = None,
    ) -> None:
        if isinstance(transports, Mapping):
            self.declarations = dict(transports)
        else:
            self.declarations = declared_service_types(transports)
        if not self.declarations:
            raise ValidationError(
                "transports", "no transport declares discovery_service_types: nothing to browse"
            )
        if resolve_timeout_s <= 0:
            raise ValidationError("resolve_timeout_s", "must be positive")
        self.interfaces = None if interfaces is None else list(interfaces)
        self.on_found = on_found
        self.on_problem = on_problem
        self.resolve_timeout_s = resolve_timeout_s
        self.found: dict[str, DiscoveredService] = {}
        self.problems: dict[str, DiscoveryProblem] = {}
        self._given_zc = zeroconf
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._resolving: dict[str, asyncio.Task[None]] = {}  # by service name
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        """Open the mDNS sockets and start browsing."""
        if self._browser is not None:
            return
        self._zc = self._given_zc or _zeroconf(self.interfaces)
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, sorted(self.declarations), handlers=[self._on_change]
        )

    async def stop(self) -> None:
        """Stop browsing; close the sockets unless the zeroconf object was given."""
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._zc is not None and self._given_zc is None:
            await self._zc.async_close()
        self._zc = None

    async def __aenter__(self) -> Browser:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        # Called by zeroconf in the event loop: resolve in a task, never block it here.
        pending = self._resolving.pop(name, None)
        if pending is not None:
            pending.cancel()  # a newer state supersedes a resolution still under way
        if state_change is ServiceStateChange.Removed:
            self.found.pop(name, None)
            self.problems.pop(name, None)
            self._spawn(self._notify())
            return
        self._resolving[name] = self._spawn(self._resolve(service_type, name))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _resolve(self, service_type: str, name: str) -> None:
        zc = self._zc
        if zc is None:
            return
        stype = normalise_service_type(service_type)
        decl = self.declarations.get(stype)
        try:
            info = AsyncServiceInfo(service_type, name)
            answered = await info.async_request(zc.zeroconf, int(self.resolve_timeout_s * 1000))
            if not answered:
                raise ValidationError(
                    "service",
                    f"did not answer the resolution (SRV, TXT, A) within {self.resolve_timeout_s} s",
                )
            hosts = info.parsed_addresses(IPVersion.V4Only) or info.parsed_addresses()
            if not hosts:
                raise ValidationError("address", "the advertisement carries no IP address")
            if not info.port:
                raise ValidationError("port", "the advertisement carries no port")
            found = DiscoveredService.from_txt(
                service_name=name,
                service_type=stype,
                host=hosts[0],
                port=info.port,
                txt=info.properties,
                transport=decl.transport if decl else None,
                transport_channels=decl.channels if decl else None,
            )
        except ValidationError as exc:
            problem = DiscoveryProblem(name, stype, exc.field, exc.reason)
            self.found.pop(name, None)
            self.problems[name] = problem
            log.warning("discovery: %s", problem)
            await _call(self.on_problem, problem)
        else:
            self.problems.pop(name, None)
            self.found[name] = found
            await _call(self.on_found, found)
        finally:
            if self._resolving.get(name) is asyncio.current_task():
                del self._resolving[name]
        await self._notify()

    async def wait_for(self, predicate: Callable[[Browser], bool], timeout_s: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` holds (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        async with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
        return True

    def result(self) -> BrowseResult:
        """What was found and what could not be read, so far."""
        return BrowseResult(
            tuple(self.found[k] for k in sorted(self.found)),
            tuple(self.problems[k] for k in sorted(self.problems)),
        )


async def browse(
    transports: Iterable[Any] | Mapping[str, ServiceTypeDeclaration],
    seconds: float = 3.0,
    *,
    interfaces: Sequence[str] | None = None,
) -> BrowseResult:
    """Browse for ``seconds`` and return what was found (``Browser`` for longer runs)."""
    if not (0 < seconds <= 3600):
        raise ValidationError("seconds", "browse for between 0 and 3600 seconds")
    async with Browser(transports, interfaces=interfaces) as b:
        await asyncio.sleep(seconds)
        # Give resolutions that started just before the end their chance to finish.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*b._tasks, return_exceptions=True), b.resolve_timeout_s
            )
        return b.result()


def record_found(
    app: SourceSystem, found: Iterable[DiscoveredService], *, actor: Actor | None = None
) -> list[DiscoveryRecord]:
    """Record each find as pending in ``app`` (``SourceSystem.record_discovered``); the same
    advertisement seen again records nothing new. Registers nothing."""
    from tcs_core.app import SYSTEM

    who = SYSTEM if actor is None else actor
    return [app.record_discovered(f, actor=who) for f in found]


def recorder(app: SourceSystem, *, actor: Actor | None = None) -> FoundCallback:
    """An ``on_found`` callback for a long-running ``Browser`` in a server: records each find as
    pending (in a worker thread: the event store is synchronous) and logs, never raises, when
    recording fails, so one bad find cannot stop the browser::

        async with Browser(transports, on_found=recorder(app)):
            ...  # serve; devices appear in app.discovered.pending()
    """

    async def record(found: DiscoveredService) -> None:
        try:
            await asyncio.to_thread(record_found, app, [found], actor=actor)
        except Exception:
            log.exception("could not record the discovered device %s", found.service_name)

    return record


# -- advertising ----------------------------------------------------------------------------------


@attrs.define
class Advertisement:
    """A running announcement (see ``advertise``); ``update`` changes its TXT records."""

    service_name: str
    service_type: str
    info: ServiceInfo
    _zc: AsyncZeroconf

    async def update(self, properties: Mapping[str, str]) -> None:
        """Announce new TXT records for the same service."""
        txt = _check_properties(properties)
        self.info = ServiceInfo(
            self.service_type,
            self.service_name,
            addresses=self.info.addresses,
            port=self.info.port,
            properties=txt,
            server=self.info.server,
        )
        await (await self._zc.async_update_service(self.info))


def _check_label(name: str) -> str:
    text = name.strip() if isinstance(name, str) else ""
    if not text:
        raise ValidationError("name", "give the service instance a name")
    if len(text.encode("utf-8")) > 63:
        raise ValidationError("name", "at most 63 bytes of UTF-8 (one DNS label)")
    if any(ord(c) < 32 or ord(c) == 127 for c in text) or "." in text:
        raise ValidationError("name", "no dots or control characters")
    return text


def _check_properties(properties: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {"txtvers": TXT_VERSION}
    for key, value in properties.items():
        if not isinstance(key, str) or not key or not key.isascii() or "=" in key:
            raise ValidationError("properties", f"TXT keys are ASCII without '=': {key!r}")
        if _SECRET_NAME.search(key):
            raise ValidationError(
                f"properties.{key}", "TXT records are public: never advertise a secret"
            )
        text = str(value)
        if len(key.encode()) + 1 + len(text.encode("utf-8")) > 255:
            raise ValidationError(f"properties.{key}", "a TXT record holds at most 255 bytes")
        out[key.lower()] = text
    return out


@contextlib.asynccontextmanager
async def advertise(
    name: str,
    service_type: str,
    *,
    port: int,
    host: str = "127.0.0.1",
    properties: Mapping[str, str] | None = None,
    interfaces: Sequence[str] | None = None,
    zeroconf: AsyncZeroconf | None = None,
    allow_name_change: bool = False,
) -> AsyncIterator[Advertisement]:
    """Announce a device as ``name`` (UTF-8, one DNS label) of ``service_type`` at
    ``host:port`` with TXT ``properties`` (``kind``, ``channel``, ``address``, ``model``...,
    see docs/discovery.md) until the block ends; then say goodbye.

    ``interfaces`` defaults to ``[host]``: a simulated device on 127.0.0.1 stays on loopback."""
    label = _check_label(name)
    stype = normalise_service_type(service_type)
    try:
        packed = ipaddress.ip_address(host).packed
    except ValueError:
        raise ValidationError("host", f"{host!r} is not an IP address") from None
    if not (0 < port < 65536):
        raise ValidationError("port", f"{port} is not a port number (1-65535)")
    txt = _check_properties(properties or {})
    # The host name only has to be unique and ASCII; the instance name carries the real name.
    server = f"tcs-{hashlib.sha256(label.encode()).hexdigest()[:12]}.local."
    try:
        info = ServiceInfo(
            stype, f"{label}.{stype}", addresses=[packed], port=port, properties=txt, server=server
        )
    except BadTypeInNameException as exc:
        raise ValidationError("name", str(exc)) from None
    zc = zeroconf or _zeroconf(interfaces if interfaces is not None else [host])
    try:
        try:
            # The first await starts probing; the second waits until the name is ours.
            await (await zc.async_register_service(info, allow_name_change=allow_name_change))
        except NonUniqueNameException:
            raise AlreadyExists(f"another device already advertises {info.name!r}") from None
        ad = Advertisement(info.name, stype, info, zc)
        try:
            yield ad
        finally:
            await (await zc.async_unregister_service(ad.info))  # goodbye packets
    finally:
        if zeroconf is None:
            await zc.async_close()
