"""OPC UA source: an asyncua client that subscribes (or polls) nodes of one server."""

from edgetwin.sources.opcua.config import OpcuaConfig, OpcuaPoint
from edgetwin.sources.opcua.driver import OpcuaSource
from edgetwin.sources.registry import SourceSpec

PLUGIN = SourceSpec("opcua", OpcuaConfig, OpcuaSource)

__all__ = ["PLUGIN", "OpcuaConfig", "OpcuaPoint", "OpcuaSource"]
