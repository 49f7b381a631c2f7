"""The JSON twin scheme: the encoder and the inbound decoder."""

from edgetwin.sync.jsontwin.encoder import JsonTwinEncoder
from edgetwin.sync.jsontwin.inbound import (
    MAX_DESIRED_POINTS,
    MAX_PAYLOAD_BYTES,
    Decoded,
    JsonTwinDecoder,
    RejectCode,
    Rejection,
)

__all__ = [
    "MAX_DESIRED_POINTS",
    "MAX_PAYLOAD_BYTES",
    "Decoded",
    "JsonTwinDecoder",
    "JsonTwinEncoder",
    "RejectCode",
    "Rejection",
]
