"""Modbus TCP and RTU sources."""

from edgetwin.sources.modbus.config import ModbusRtuConfig, ModbusTcpConfig
from edgetwin.sources.registry import SourceSpec

MODBUS_TCP = SourceSpec("modbus_tcp", ModbusTcpConfig)
MODBUS_RTU = SourceSpec("modbus_rtu", ModbusRtuConfig)

__all__ = ["MODBUS_RTU", "MODBUS_TCP", "ModbusRtuConfig", "ModbusTcpConfig"]
