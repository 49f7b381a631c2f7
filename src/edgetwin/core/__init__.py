"""The shared vocabulary of edgetwin: stdlib only, imported by every other package."""

from edgetwin.core.errors import (
    ConfigError,
    DecodeError,
    DeliveryError,
    EdgetwinError,
    SourceUnavailable,
    StoreError,
)
from edgetwin.core.ports import Emit, Outbox, Source, SourceHealth, TwinView
from edgetwin.core.types import (
    Delivery,
    Delta,
    OutboxEntry,
    PointSpec,
    PointState,
    Quality,
    Sample,
    Value,
    WriteOutcome,
    asset_of,
    point_name_of,
)

__all__ = [
    "ConfigError",
    "DecodeError",
    "Delivery",
    "DeliveryError",
    "Delta",
    "EdgetwinError",
    "Emit",
    "Outbox",
    "OutboxEntry",
    "PointSpec",
    "PointState",
    "Quality",
    "Sample",
    "Source",
    "SourceHealth",
    "SourceUnavailable",
    "StoreError",
    "TwinView",
    "Value",
    "WriteOutcome",
    "asset_of",
    "point_name_of",
]
