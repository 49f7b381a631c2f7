"""Serial line-protocol source: text records by regex, or fixed binary frames."""

from edgetwin.sources.registry import SourceSpec
from edgetwin.sources.serial.config import SerialConfig
from edgetwin.sources.serial.driver import SerialSource

PLUGIN = SourceSpec("serial", SerialConfig, SerialSource)

__all__ = ["PLUGIN", "SerialConfig", "SerialSource"]
