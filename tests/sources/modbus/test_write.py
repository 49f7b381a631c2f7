"""Source.write against firmware-sim: encode, write, read back, and the device's own refusal."""

import asyncio
from typing import Any

from edgetwin.core.types import Quality
from edgetwin.sources.modbus import ModbusSource
from plcsim import SimProcess
from plcsim.control import call
from tests.sources.modbus.test_driver import every, running, skid_config

WRITABLE: list[dict[str, Any]] = [
    {"id": "pump1/speed_setpoint", "address": 200, "type": "uint16", "writable": True},
    {"id": "pump1/valve", "address": 201, "type": "uint16", "scale": 0.1, "writable": True},
    {"id": "pump1/run", "kind": "coil", "address": 0, "type": "bool", "writable": True},
    {"id": "pump1/motor_temp", "address": 100, "type": "float32"},
]


async def sim_writes(sim: SimProcess) -> list[dict[str, Any]]:
    assert sim.control is not None
    result: list[dict[str, Any]] = await asyncio.to_thread(
        call, sim.control, "GET", "/writes?face=modbus_tcp")
    return result


async def test_write_is_confirmed_by_read_back(
    modbus_sim: SimProcess, batches: Any, health: Any
) -> None:
    """A setpoint, a scaled value and a coil are written, read back equal, and reached the PLC."""
    source = ModbusSource(skid_config(modbus_sim.port, WRITABLE))
    async with running(source, batches, health):
        await batches.wait_for(every(Quality.GOOD))
        setpoint = await source.write("pump1/speed_setpoint", 1500)
        valve = await source.write("pump1/valve", 42.5)
        stop = await source.write("pump1/run", False)
    assert (setpoint.ok, setpoint.read_back) == (True, 1500)
    assert valve.ok
    assert abs(valve.read_back - 42.5) < 1e-9
    assert (stop.ok, stop.read_back) == (True, False)
    reached = [(w["name"], w["value"], w["accepted"]) for w in await sim_writes(modbus_sim)]
    assert reached == [("speed_setpoint_rpm", 1500, True), ("valve_position_pct", 42.5, True),
                       ("run", False, True)]


async def test_device_refusal_and_bad_requests_are_outcomes_not_exceptions(
    modbus_sim: SimProcess, batches: Any, health: Any
) -> None:
    """Exception 4, a wrong type, half a scaled step, a read-only point: ok=False with why."""
    source = ModbusSource(skid_config(modbus_sim.port, WRITABLE))
    async with running(source, batches, health):
        await batches.wait_for(every(Quality.GOOD))
        too_fast = await source.write("pump1/speed_setpoint", 5000)
        wrong_type = await source.write("pump1/run", 1.5)
        between_steps = await source.write("pump1/valve", 42.55)  # scale 0.1: 42.5 or 42.6
        read_only = await source.write("pump1/motor_temp", 20.0)
        unknown = await source.write("pump9/x", 1)
        still_polling = await batches.wait_for(every(Quality.GOOD), after=len(batches.batches))
    assert not too_fast.ok
    assert "exception 4 (server device failure)" in (too_fast.reason or "")
    assert not wrong_type.ok
    assert "takes true or false" in (wrong_type.reason or "")
    assert not between_steps.ok
    assert between_steps.reason == (
        f"modbus source 'skid1' (tcp 127.0.0.1:{modbus_sim.port}, unit 1): pump1/valve: 42.55 "
        "falls between two steps of the register (scale 0.1, offset 0): it holds 42.5 or 42.6, "
        "nothing between")
    assert not read_only.ok
    assert "not writable" in (read_only.reason or "")
    assert not unknown.ok
    assert still_polling  # a refused write disturbs nothing
    refused = [w for w in await sim_writes(modbus_sim) if not w["accepted"]]
    assert [w["value"] for w in refused] == [5000]  # only the one that reached the device


async def test_write_while_not_running_is_refused(modbus_sim: SimProcess) -> None:
    """No link, no write: the outcome says so instead of raising."""
    source = ModbusSource(skid_config(modbus_sim.port, WRITABLE))
    outcome = await source.write("pump1/speed_setpoint", 1500)
    assert not outcome.ok
    assert "not running" in (outcome.reason or "")


BLOCKS: list[dict[str, Any]] = [
    {"id": "pump1/setpoints", "address": 200, "type": "uint16", "count": 2, "writable": True},
    {"id": "pump1/coils", "kind": "coil", "address": 0, "type": "bool", "count": 2,
     "writable": True},
]


async def test_blocks_are_written_in_one_request(
    modbus_sim: SimProcess, batches: Any, health: Any
) -> None:
    """Two registers in one FC 16, two coils in one FC 15, both read back."""
    source = ModbusSource(skid_config(modbus_sim.port, BLOCKS))
    async with running(source, batches, health):
        await batches.wait_for(every(Quality.GOOD))
        registers = await source.write("pump1/setpoints", [1510, 430])
        coils = await source.write("pump1/coils", [False, False])
        short = await source.write("pump1/setpoints", [1510])
    assert (registers.ok, registers.read_back) == (True, [1510, 430])
    assert (coils.ok, coils.read_back) == (True, [False, False])
    assert not short.ok
    assert "takes 2 values, not 1" in (short.reason or "")
    names = [w["name"] for w in await sim_writes(modbus_sim)]
    assert names == ["speed_setpoint_rpm", "valve_position_pct", "run", "reset_trip"]
