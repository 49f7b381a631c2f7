"""Fixtures for the simulator tests.

``client`` talks to ``plcsim`` as a subprocess (the CLI). The ``sim``/``tcp_*``/``rtu_*``
fixtures run a ``Sim`` and its Modbus faces in the test's own event loop: the plant only
moves when a test steps it, so every value read can be compared exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from plcsim import Sim, SimProcess
from plcsim.modbus_rtu import ModbusRtuFace
from plcsim.modbus_tcp import ModbusTcpFace

TIMEOUT_S = 0.3


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


@pytest.fixture
def sim() -> Sim:
    """A seeded simulation, one tick in (so a first vibration capture exists)."""
    simulation = Sim(seed=11)
    simulation.step(simulation.tick_s)
    return simulation


@pytest.fixture
async def tcp_face(sim: Sim) -> AsyncIterator[tuple[ModbusTcpFace, dict[str, Any]]]:
    """A Modbus TCP face on an ephemeral loopback port, and its listening description."""
    face = ModbusTcpFace(sim, host="127.0.0.1", port=0)
    listening = await face.start()
    try:
        yield face, listening
    finally:
        await face.stop()


def tcp_client_for(listening: dict[str, Any], timeout_s: float = TIMEOUT_S
                   ) -> AsyncModbusTcpClient:
    """A pymodbus TCP client for a face (no retries, no reconnect), not yet connected."""
    return AsyncModbusTcpClient(listening["host"], port=listening["port"], timeout=timeout_s,
                                retries=0, reconnect_delay=0)


@pytest.fixture
async def tcp_client(tcp_face: tuple[ModbusTcpFace, dict[str, Any]]
                     ) -> AsyncIterator[AsyncModbusTcpClient]:
    """A connected pymodbus TCP client on ``tcp_face``."""
    modbus = tcp_client_for(tcp_face[1])
    assert await modbus.connect()
    try:
        yield modbus
    finally:
        modbus.close()


@pytest.fixture
async def rtu_face(sim: Sim) -> AsyncIterator[tuple[ModbusRtuFace, dict[str, Any]]]:
    """A Modbus RTU face on its own pty line, and its listening description."""
    face = ModbusRtuFace(sim, unit_ids=(1, 2), baudrate=19200, parity="N")
    listening = await face.start()
    try:
        yield face, listening
    finally:
        await face.stop()


def rtu_client_for(listening: dict[str, Any], timeout_s: float = TIMEOUT_S
                   ) -> AsyncModbusSerialClient:
    """A pymodbus RTU client on a face's line (parity N: pyserial cannot set it on a pty)."""
    return AsyncModbusSerialClient(listening["device"], framer=FramerType.RTU,
                                   baudrate=listening["baudrate"], parity="N", stopbits=1,
                                   bytesize=8, timeout=timeout_s, retries=0, reconnect_delay=0)


@pytest.fixture
async def rtu_client(rtu_face: tuple[ModbusRtuFace, dict[str, Any]]
                     ) -> AsyncIterator[AsyncModbusSerialClient]:
    """A connected pymodbus RTU client on ``rtu_face``."""
    modbus = rtu_client_for(rtu_face[1])
    assert await modbus.connect()
    try:
        yield modbus
    finally:
        modbus.close()


class Peer:
    """A face under test and a connected pymodbus client on it (TCP or RTU)."""

    def __init__(self, face: ModbusTcpFace | ModbusRtuFace, listening: dict[str, Any],
                 client: AsyncModbusTcpClient | AsyncModbusSerialClient) -> None:
        self.face = face
        self.name = face.name
        self.listening = listening
        self.client = client

    def new_client(self, timeout_s: float = TIMEOUT_S
                   ) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """Another client for the same face (not connected).

        RTU: one master per line (pyserial locks the port), so the fixture's client closes.
        """
        if isinstance(self.face, ModbusTcpFace):
            return tcp_client_for(self.listening, timeout_s)
        self.client.close()
        return rtu_client_for(self.listening, timeout_s)


@pytest.fixture(params=["modbus_tcp", "modbus_rtu"])
async def peer(request: pytest.FixtureRequest, sim: Sim) -> AsyncIterator[Peer]:
    """Each face in turn, with a connected client: for behaviour both must share."""
    face: ModbusTcpFace | ModbusRtuFace = (
        ModbusTcpFace(sim) if request.param == "modbus_tcp" else ModbusRtuFace(sim))
    listening = await face.start()
    modbus = (tcp_client_for(listening) if isinstance(face, ModbusTcpFace)
              else rtu_client_for(listening))
    try:
        assert await modbus.connect()
        yield Peer(face, listening, modbus)
    finally:
        modbus.close()
        await face.stop()


async def cancel_while_stopping(device: Any) -> bool:
    """Cancel a ``device.stop()`` while it waits for its task; True if the cancel went through.

    The device is then stopped for good (a second ``stop()`` finishes the job).
    """
    stopping = asyncio.create_task(device.stop())
    await asyncio.sleep(0)  # one turn: stop() is now waiting for its task to end
    stopping.cancel()
    await asyncio.wait([stopping])
    await device.stop()
    return stopping.cancelled()
