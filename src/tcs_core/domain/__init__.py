"""Event-sourced aggregates and value types of the grassroots information system."""

from tcs_core.domain.area import Area, area_id
from tcs_core.domain.broadcast import Broadcast
from tcs_core.domain.device import Device, LivenessTracker
from tcs_core.domain.discovered import (
    DiscoveredDevice,
    DiscoveredService,
    DiscoveryRecord,
    DiscoveryStatus,
    RecordOutcome,
    discovered_id,
)
from tcs_core.domain.dispatch import Dispatch, dispatch_id
from tcs_core.domain.facility import Facility, Station
from tcs_core.domain.feedback import Feedback
from tcs_core.domain.principal import Principal, principal_id
from tcs_core.domain.values import *  # noqa: F403
from tcs_core.domain.values import __all__ as _values_all

AGGREGATES = (
    Area,
    Device,
    Station,
    Facility,
    Broadcast,
    Dispatch,
    Feedback,
    Principal,
    DiscoveredDevice,
)

__all__ = [
    "AGGREGATES",
    "Area",
    "Broadcast",
    "Device",
    "DiscoveredDevice",
    "DiscoveredService",
    "DiscoveryRecord",
    "DiscoveryStatus",
    "Dispatch",
    "Facility",
    "Feedback",
    "LivenessTracker",
    "Principal",
    "RecordOutcome",
    "Station",
    "area_id",
    "discovered_id",
    "dispatch_id",
    "principal_id",
    *_values_all,
]
