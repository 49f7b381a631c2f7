"""Southbound drivers, one folder per protocol, registered in one explicit list."""

from edgetwin.sources import modbus, opcua, serial
from edgetwin.sources.registry import SourceSpec

BUILTIN_SOURCES: tuple[SourceSpec, ...] = (
    modbus.MODBUS_TCP,
    modbus.MODBUS_RTU,
    opcua.PLUGIN,
    serial.PLUGIN,
)


def source_configs(specs: tuple[SourceSpec, ...] = BUILTIN_SOURCES) -> tuple[type, ...]:
    """The config classes of the registered sources, for ``config.load_config``."""
    return tuple(spec.config for spec in specs)


__all__ = ["BUILTIN_SOURCES", "SourceSpec", "source_configs"]
