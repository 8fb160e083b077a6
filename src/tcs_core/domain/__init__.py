"""Event-sourced aggregates and value types of the grassroots information system."""

from tcs_core.domain.area import Area, area_id
from tcs_core.domain.broadcast import Broadcast
from tcs_core.domain.device import Device, LivenessTracker
from tcs_core.domain.dispatch import Dispatch, dispatch_id
from tcs_core.domain.facility import Facility, Station
from tcs_core.domain.feedback import Feedback
from tcs_core.domain.principal import Principal, principal_id
from tcs_core.domain.values import *  # noqa: F403
from tcs_core.domain.values import __all__ as _values_all

AGGREGATES = (Area, Device, Station, Facility, Broadcast, Dispatch, Feedback, Principal)

__all__ = [
    "AGGREGATES",
    "Area",
    "Broadcast",
    "Device",
    "Dispatch",
    "Facility",
    "Feedback",
    "LivenessTracker",
    "Principal",
    "Station",
    "area_id",
    "dispatch_id",
    "principal_id",
    *_values_all,
]
