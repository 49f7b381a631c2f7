"""Fixtures for the simulator tests: plcsim as a subprocess and a pymodbus client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient

from plcsim import SimProcess


@pytest.fixture
async def client(modbus_sim: SimProcess) -> AsyncIterator[AsyncModbusTcpClient]:
    """A connected pymodbus client (no reconnect, no retries)."""
    modbus = AsyncModbusTcpClient(modbus_sim.host, port=modbus_sim.port, timeout=2,
                                  retries=0, reconnect_delay=0)
    assert await modbus.connect()
    try:
        yield modbus
    finally:
        modbus.close()
