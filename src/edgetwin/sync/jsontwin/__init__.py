"""The JSON twin scheme encoder."""

from edgetwin.sync.jsontwin.encoder import JsonTwinEncoder

__all__ = ["JsonTwinEncoder"]
