"""Device profiles (how a speaker is told to answer by itself, how an emergency barges in) and
multicast paging zones (where RTP goes for each priority level).

A speaker's ``profile`` setting picks one (default ``generic``). Vendors disagree on the
auto-answer header, so each profile names the form its devices understand:

========================  ======================================================================
profile                   what the INVITE carries
========================  ======================================================================
``generic``               ``Call-Info: <sip:HOST>;answer-after=0`` and
                          ``Alert-Info: <http://127.0.0.1>;info=alert-autoanswer`` (most phones,
                          Grandstream, Yealink, Algo, Gigaset)
``call-info``             ``Call-Info: <sip:HOST>;answer-after=0`` only
``alert-info``            ``Alert-Info: info=alert-autoanswer`` (Cisco SPA / Linksys form)
``intercom``              ``;intercom=true`` on the Request-URI (and Call-Info answer-after=0)
``answer-mode``           RFC 5373 ``Answer-Mode: Auto``; emergencies barge with
                          ``Priv-Answer-Mode: Auto`` (overrides the device's busy/DND state)
``polycom``               ``Alert-Info: Ring-Answer`` (for paging, give the priority and
                          emergency groups as zones)
``none``                  no header (the speaker is configured to answer every call itself,
                          like baresip with ``answermode=auto``)
========================  ======================================================================

Every emergency INVITE also carries ``Priority: emergency`` (RFC 3261 §20.26).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tcs_core.domain.values import Priority
from transports.sip.audio import g722_available

__all__ = ["PROFILES", "Profile", "Zone", "parse_zones", "profile_of"]


@dataclass(frozen=True)
class Zone:
    """A multicast paging zone: where RTP goes for one priority level."""

    group: str
    port: int
    priority: Priority = Priority.NORMAL

    @property
    def addr(self) -> tuple[str, int]:
        """``(group, port)``."""
        return self.group, self.port


@dataclass(frozen=True)
class Profile:
    """How one family of speakers is called."""

    name: str
    headers: tuple[tuple[str, str], ...] = ()
    uri_params: str = ""
    #: Headers that make a busy device take the call anyway (None: the device has no such way;
    #: an emergency then retries quickly).
    barge_headers: tuple[tuple[str, str], ...] | None = None
    #: Codecs offered, best first. G.722 only where a device's ``codecs`` setting asks for it.
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    #: SDP direction offered (``sendrecv`` plays on the most devices; ``sendonly`` is exact).
    direction: str = "sendrecv"

    def invite_headers(self, host: str) -> list[tuple[str, str]]:
        """The auto-answer headers for a speaker at ``host``."""
        return [(k, v.replace("{host}", host)) for k, v in self.headers]


_CALL_INFO = ("Call-Info", "<sip:{host}>;answer-after=0")

PROFILES: Mapping[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "generic",
            (_CALL_INFO, ("Alert-Info", "<http://127.0.0.1>;info=alert-autoanswer")),
        ),
        Profile("call-info", (_CALL_INFO,)),
        Profile("alert-info", (("Alert-Info", "info=alert-autoanswer"),)),
        Profile("intercom", (_CALL_INFO,), uri_params=";intercom=true"),
        Profile(
            "answer-mode",
            (("Answer-Mode", "Auto"),),
            barge_headers=(("Priv-Answer-Mode", "Auto"),),
        ),
        Profile("polycom", (("Alert-Info", "Ring-Answer"),)),
        Profile("none"),
    )
}


def profile_of(settings: Mapping[str, str]) -> Profile:
    """The profile named by a device's ``profile`` setting (``ValueError`` naming the choices)."""
    name = settings.get("profile", "generic").strip().lower() or "generic"
    found = PROFILES.get(name)
    if found is None:
        raise ValueError(f"unknown profile {name!r} (choose one of: {', '.join(sorted(PROFILES))})")
    direction = settings.get("sdp_direction", found.direction).strip().lower()
    if direction not in ("sendrecv", "sendonly"):
        raise ValueError(f"sdp_direction {direction!r}: give sendrecv or sendonly")
    codecs = settings.get("codecs")
    wanted = found.codecs
    if codecs:
        wanted = tuple(c.strip().upper() for c in codecs.split(",") if c.strip())
        bad = [c for c in wanted if c not in ("PCMU", "PCMA", "G722")]
        if bad or not wanted:
            raise ValueError(f"codecs {codecs!r}: give PCMU, PCMA and/or G722, best first")
        if "G722" in wanted and not g722_available():
            raise ValueError(
                "codec G722 needs the g722 package (pip install 'g722>=1.2.8,<2'); "
                "or give PCMU/PCMA only"
            )
    if wanted != found.codecs or direction != found.direction:
        found = Profile(
            found.name, found.headers, found.uri_params, found.barge_headers, wanted, direction
        )
    return found


def parse_zones(value: str) -> dict[Priority, Zone]:
    """``"normal=239.0.1.1:5004, emergency=239.0.1.9:5004"`` → zones by priority."""
    zones: dict[Priority, Zone] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        level, eq, where = part.partition("=")
        try:
            priority = Priority(level.strip().lower())
        except ValueError:
            raise ValueError(
                f"zone {part!r}: priority must be normal, priority or emergency"
            ) from None
        host, colon, port = where.strip().rpartition(":")
        if not eq or not colon or not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise ValueError(f"zone {part!r}: give LEVEL=GROUP:PORT")
        zones[priority] = Zone(host, int(port), priority)
    if not zones:
        raise ValueError("zones setting is empty: give LEVEL=GROUP:PORT[,...]")
    return zones
