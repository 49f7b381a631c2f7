"""plcsim's Modbus TCP server, driven by a plain pymodbus client (plcsim knows no edgetwin)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

import pytest
from pymodbus.client import AsyncModbusTcpClient

from plcsim import SimProcess, SimStartError
from plcsim.skid_map import (
    COIL_RUN,
    DISCRETE_LEVEL_LOW,
    HOLDING_CAPTURE_COUNTER,
    HOLDING_COUNTER,
    HOLDING_FLOW,
    HOLDING_MOTOR_TEMP,
    HOLDING_SPEED_SETPOINT,
    HOLDING_VIBRATION,
    INPUT_TANK_LEVEL,
)

pytestmark = pytest.mark.sim
WAIT_S = 5.0


def uint32_abcd(words: list[int]) -> int:
    return int(words[0] << 16 | words[1])


def float32(words: list[int], *, word_swap: bool = False) -> float:
    high, low = (words[1], words[0]) if word_swap else (words[0], words[1])
    return float(struct.unpack(">f", struct.pack(">HH", high, low))[0])


async def eventually(read: Callable[[], Awaitable[float]], check: Callable[[float], bool]) -> float:
    """Poll the device until ``check`` holds (the plant ticks every 100 ms)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            value = await read()
            if check(value):
                return value
            await asyncio.sleep(0.05)


async def holding(client: AsyncModbusTcpClient, address: int, count: int) -> list[int]:
    response = await client.read_holding_registers(address, count=count, device_id=1)
    assert not response.isError(), response
    return list(response.registers)


async def flow(client: AsyncModbusTcpClient) -> float:
    return float32(await holding(client, HOLDING_FLOW, 2), word_swap=True)


async def test_listening_json(modbus_sim: SimProcess) -> None:
    """The one stdout line names protocol, host and the port actually bound."""
    listening = dict(modbus_sim.listening)
    assert listening.pop("control").startswith("http://127.0.0.1:")
    assert listening == {
        "event": "listening", "protocol": "modbus", "host": "127.0.0.1", "port": modbus_sim.port,
    }
    assert modbus_sim.port > 0


async def test_values_move_over_time(client: AsyncModbusTcpClient) -> None:
    """The counter ticks, a new vibration capture arrives, values stay in their bands."""
    first_counter = uint32_abcd(await holding(client, HOLDING_COUNTER, 2))
    first_capture = uint32_abcd(await holding(client, HOLDING_CAPTURE_COUNTER, 2))
    first_vib = await holding(client, HOLDING_VIBRATION, 100)

    async def counter() -> float:
        return uint32_abcd(await holding(client, HOLDING_COUNTER, 2))

    async def captures() -> float:
        return uint32_abcd(await holding(client, HOLDING_CAPTURE_COUNTER, 2))

    await eventually(counter, lambda value: value >= first_counter + 2)
    await eventually(captures, lambda value: value > first_capture)  # one per second
    temp = float32(await holding(client, HOLDING_MOTOR_TEMP, 2))
    assert 54.0 <= temp <= 66.0
    assert await holding(client, HOLDING_VIBRATION, 100) != first_vib


async def test_flow_is_word_swapped_and_level_scaled(client: AsyncModbusTcpClient) -> None:
    """Flow is a CDAB float near 12 m3/h; tank level is 200..800 tenths of a percent."""
    assert 11.0 <= await flow(client) <= 13.0
    level = await client.read_input_registers(INPUT_TANK_LEVEL, count=1, device_id=1)
    assert 200 <= level.registers[0] <= 800
    run = await client.read_coils(COIL_RUN, count=1, device_id=1)
    assert run.bits[0] is True
    low = await client.read_discrete_inputs(DISCRETE_LEVEL_LOW, count=1, device_id=1)
    assert low.bits[0] is False  # the level starts at 50 %


@pytest.mark.parametrize(
    ("function", "address", "count"),
    [
        ("read_holding_registers", 50, 1),  # between mapped values
        ("read_holding_registers", 0, 3),  # runs past the counter
        ("read_holding_registers", 5096, 1),  # after the vibration block
        ("read_holding_registers", 65535, 1),
        ("read_input_registers", 1, 1),
        ("read_coils", 2, 1),
        ("read_coils", 16, 1),
        ("read_discrete_inputs", 7, 1),
    ],
)
async def test_unmapped_address_answers_exception_2(
    client: AsyncModbusTcpClient, function: str, address: int, count: int
) -> None:
    """Anything outside the register map is Illegal Data Address."""
    response = await getattr(client, function)(address, count=count, device_id=1)
    assert response.isError()
    assert response.exception_code == 2


async def test_speed_setpoint_write_changes_flow(client: AsyncModbusTcpClient) -> None:
    """Writing speed_setpoint reads back and scales the flow; read-only registers refuse."""
    written = await client.write_register(HOLDING_SPEED_SETPOINT, 725, device_id=1)
    assert not written.isError()
    assert await holding(client, HOLDING_SPEED_SETPOINT, 1) == [725]
    await eventually(lambda: flow(client), lambda m3h: m3h <= 7.0)
    refused = await client.write_register(HOLDING_COUNTER, 1, device_id=1)
    assert (refused.isError(), refused.exception_code) == (True, 2)


async def test_stopping_the_pump_stops_the_flow(client: AsyncModbusTcpClient) -> None:
    """run=false on coil 0 takes the flow to zero on the next tick."""
    assert not (await client.write_coil(COIL_RUN, False, device_id=1)).isError()
    await eventually(lambda: flow(client), lambda m3h: m3h == 0.0)
    assert (await client.read_coils(COIL_RUN, count=1, device_id=1)).bits[0] is False


async def test_other_unit_ids_get_gateway_exception(client: AsyncModbusTcpClient) -> None:
    """A unit id the simulator does not serve answers 0x0B, like a TCP-to-RTU gateway."""
    response = await client.read_holding_registers(HOLDING_COUNTER, count=2, device_id=7)
    assert (response.isError(), response.exception_code) == (True, 11)


async def test_sigterm_exits_0_and_the_port_can_be_reused(modbus_sim: SimProcess) -> None:
    """SIGTERM ends the simulator cleanly; a new one binds the same port right away."""
    assert await modbus_sim.stop() == 0
    again = await SimProcess.start("modbus", "--port", str(modbus_sim.port))
    try:
        assert again.port == modbus_sim.port
    finally:
        assert await again.stop() == 0


async def test_busy_port_fails_with_exit_69(modbus_sim: SimProcess) -> None:
    """A port already in use ends the start with a clear error, not a hang."""
    with pytest.raises(SimStartError, match="exit status 69"):
        await SimProcess.start("modbus", "--port", str(modbus_sim.port))
