"""SMS subscribers as devices: one ``sms_subscriber`` device per phone number, in its area.

The area's subscribers are its *subscriber group*: a broadcast targeting the area on the ``sms``
channel reaches them through the usual target resolution (area subtree at the instant → devices
serving the channel), and ``Targets(groups=…)`` narrows to named lists when needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tcs_core.domain.values import DeviceKind
from tcs_core.errors import ValidationError
from transports.sms.phone import mask, normalise_vn

__all__ = ["subscriber_specs"]


def subscriber_specs(
    rows: Iterable[Mapping[str, Any]],
    *,
    area: str | None = None,
    transport: str = "sms",
    gateway: str | None = None,
) -> list[dict[str, Any]]:
    """``register_devices`` specifications for subscribers, every number checked first.

    Each row has ``number`` and optionally ``area`` (else the ``area`` argument), ``name``,
    ``groups`` and ``gateway``. Numbers are normalised to ``+84…``; a bad number or a number
    listed twice raises ValidationError naming the row, so nothing is registered."""
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        try:
            number = normalise_vn(str(row.get("number", "")), f"subscribers[{i}].number")
        except ValidationError as exc:
            raise ValidationError(exc.field, f"row {i}: {exc.reason}") from None
        if number in seen:
            raise ValidationError(
                f"subscribers[{i}].number", f"{mask(number)} is also row {seen[number]}"
            )
        seen[number] = i
        where = row.get("area") or area
        if not where:
            raise ValidationError(f"subscribers[{i}].area", "give the subscriber's area code")
        settings = {}
        gw = row.get("gateway") or gateway
        if gw:
            settings["gateway"] = str(gw)
        out.append(
            {
                "name": str(row.get("name") or f"Thuê bao {mask(number)}"),
                "kind": DeviceKind.SMS_SUBSCRIBER,
                "area": str(where),
                "transport": transport,
                "address": number,
                "channels": ["sms"],
                "settings": settings,
                "groups": list(row.get("groups", ())),
            }
        )
    return out
