"""OPC UA source: configuration only until the driver lands."""

from edgetwin.sources.opcua.config import OpcuaConfig
from edgetwin.sources.registry import SourceSpec

PLUGIN = SourceSpec("opcua", OpcuaConfig)

__all__ = ["PLUGIN", "OpcuaConfig"]
