"""Modbus TCP and RTU sources (only TCP has a driver so far)."""

from edgetwin.sources.modbus.config import ModbusRtuConfig, ModbusTcpConfig
from edgetwin.sources.modbus.driver import ModbusSource
from edgetwin.sources.registry import SourceSpec

MODBUS_TCP = SourceSpec("modbus_tcp", ModbusTcpConfig, ModbusSource)
MODBUS_RTU = SourceSpec("modbus_rtu", ModbusRtuConfig, ModbusSource)

__all__ = [
    "MODBUS_RTU",
    "MODBUS_TCP",
    "ModbusRtuConfig",
    "ModbusSource",
    "ModbusTcpConfig",
]
