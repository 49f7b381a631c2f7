"""The JSON twin scheme: the encoder, the inbound decoder, pending desired values, results."""

from edgetwin.sync.jsontwin.desired import DesiredState, PendingDesired, same_value
from edgetwin.sync.jsontwin.encoder import JsonTwinEncoder
from edgetwin.sync.jsontwin.inbound import (
    MAX_DESIRED_POINTS,
    MAX_PAYLOAD_BYTES,
    Decoded,
    JsonTwinDecoder,
    RejectCode,
    Rejection,
)
from edgetwin.sync.jsontwin.result import command_result, rejection_result

__all__ = [
    "MAX_DESIRED_POINTS",
    "MAX_PAYLOAD_BYTES",
    "Decoded",
    "DesiredState",
    "JsonTwinDecoder",
    "JsonTwinEncoder",
    "PendingDesired",
    "RejectCode",
    "Rejection",
    "command_result",
    "rejection_result",
    "same_value",
]
