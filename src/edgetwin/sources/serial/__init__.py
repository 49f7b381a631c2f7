"""Serial line-protocol source: configuration only until the driver lands."""

from edgetwin.sources.registry import SourceSpec
from edgetwin.sources.serial.config import SerialConfig

PLUGIN = SourceSpec("serial", SerialConfig)

__all__ = ["PLUGIN", "SerialConfig"]
