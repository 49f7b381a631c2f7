"""Modbus RTU against firmware-sim's serial line (a pty pair): one bus, several slaves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edgetwin.config import InvalidConfig, parse_config
from edgetwin.core.types import Quality
from edgetwin.sources import source_configs
from edgetwin.sources.modbus import MODBUS_RTU, ModbusRtuConfig, ModbusSource
from edgetwin.sources.modbus.connection import _SHARED
from plcsim import Sim
from plcsim.modbus_rtu import ModbusRtuFace
from tests.helpers.recording import RecordingHealth
from tests.sources.modbus.conftest import BatchRecorder
from tests.sources.modbus.test_driver import every, running


@pytest.fixture
async def line() -> AsyncIterator[tuple[Sim, str]]:
    """A ticking plant behind an RTU line with the PLC (unit 1) and vibration module (unit 2)."""
    sim = Sim(seed=3, tick_s=0.05)
    ticking = asyncio.create_task(sim.run())
    face = ModbusRtuFace(sim, unit_ids=(1, 2), baudrate=19200, parity="N")
    listening = await face.start()
    yield sim, listening["device"]
    await face.stop()
    ticking.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticking


def rtu(device: str, name: str, unit: int, points: list[dict[str, Any]]) -> ModbusRtuConfig:
    return ModbusRtuConfig.model_validate({
        "name": name, "type": "modbus_rtu", "port": device, "baudrate": 19200, "parity": "N",
        "unit_id": unit, "poll_interval": 0.05, "timeout": 0.2, "points": points,
    })


PLC = [{"id": "pump1/counter", "address": 0, "type": "uint32"},
       {"id": "pump1/speed_setpoint", "address": 200, "type": "uint16", "writable": True}]
VIBRATION = [{"id": "pump1/captures", "address": 0, "type": "uint16"},
             {"id": "pump1/samples", "address": 0, "kind": "input", "type": "uint16"}]
ABSENT = [{"id": "pump9/x", "address": 0, "type": "uint16"}]


async def test_two_slaves_share_one_bus(line: tuple[Sim, str]) -> None:
    """The PLC and the vibration module on one port: one client, both read, and a write."""
    sim, device = line
    assert MODBUS_RTU.factory is ModbusSource
    plc = ModbusSource(rtu(device, "plc", 1, PLC))
    vib = ModbusSource(rtu(device, "vib", 2, VIBRATION))
    plc_batches, vib_batches = BatchRecorder(), BatchRecorder()
    async with running(plc, plc_batches, RecordingHealth()), \
            running(vib, vib_batches, RecordingHealth()):
        await plc_batches.wait_for(every(Quality.GOOD))
        _, later = await plc_batches.wait_for(lambda b: b["pump1/counter"].value > 0)
        _, vib_first = await vib_batches.wait_for(every(Quality.GOOD))
        assert list(_SHARED) == [f"serial:{device}"]
        assert _SHARED[f"serial:{device}"].users == 2
        outcome = await plc.write("pump1/speed_setpoint", 1520)
    assert vib_first["pump1/samples"].value == sim.vibration.capture_samples
    assert later["pump1/counter"].quality is Quality.GOOD
    assert outcome.ok, outcome.reason
    assert sim.plant.speed_setpoint_rpm == 1520
    assert _SHARED == {}  # the last source closed the port


async def test_a_silent_slave_does_not_stall_the_others(line: tuple[Sim, str]) -> None:
    """Unit 7 never answers: its points go BAD and it backs off; unit 1 keeps its rate."""
    _sim, device = line
    plc = ModbusSource(rtu(device, "plc", 1, PLC))
    ghost = ModbusSource(rtu(device, "ghost", 7, ABSENT), reconnect_initial_s=0.2)
    plc_batches, ghost_batches = BatchRecorder(), BatchRecorder()
    ghost_health = RecordingHealth()
    async with running(plc, plc_batches, RecordingHealth()), \
            running(ghost, ghost_batches, ghost_health):
        await ghost_batches.wait_for(every(Quality.BAD))
        start = len(plc_batches.batches)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await plc_batches.wait_for(lambda _b: True, after=start + 10)
        elapsed = loop.time() - began
    assert any(e.kind == "down" and e.error_code == "timeout" for e in ghost_health.events)
    assert all(s.quality is Quality.GOOD for b in plc_batches.batches[start:] for s in b.values())
    # 11 cycles at 0.05 s; a stalled bus would add the ghost's 0.2 s timeout to every one.
    assert elapsed < 11 * 0.05 + 1.2


async def test_port_that_vanishes_is_reopened(line: tuple[Sim, str], tmp_path: Any) -> None:
    """No device at the path: BAD and down; the line appears (symlink): read again, no restart."""
    _sim, device = line
    link = tmp_path / "ttyUSB-skid"
    source = ModbusSource(rtu(str(link), "plc", 1, PLC), reconnect_initial_s=0.05,
                          reconnect_max_s=0.2)
    batches, health = BatchRecorder(), RecordingHealth()
    async with running(source, batches, health):
        await health.wait_for("down")
        link.symlink_to(device)
        await batches.wait_for(every(Quality.GOOD))
    assert next(e.error_code for e in health.events if e.kind == "down") == "connect_failed"


GATEWAY = """\
gateway: {id: gw1, group: g, state_dir: /tmp/x}
sync: {mqtt: {host: 127.0.0.1}}
sources:
"""


def source_yaml(name: str, unit: int, baudrate: int = 19200, kind: str = "modbus_rtu",
                timeout: float = 1.0) -> str:
    if kind == "serial":
        return (f"  - {{name: {name}, type: serial, port: /dev/ttyUSB0, pattern: '(?P<w>.*)',"
                f" points: [{{id: s/w{unit}, field: w}}]}}\n")
    return (f"  - {{name: {name}, type: modbus_rtu, port: /dev/ttyUSB0, baudrate: {baudrate},"
            f" timeout: {timeout}, unit_id: {unit}, points: [{{id: a{unit}/x, address: 0}}]}}\n")


def test_bus_sharing_rules_in_the_config() -> None:
    """Distinct unit ids with equal line settings and timeout share a port; else refused."""
    ok = GATEWAY + source_yaml("a", 1) + source_yaml("b", 2)
    assert len(parse_config(ok, "gw.yaml", source_configs()).sources) == 2
    for clash in (source_yaml("b", 1), source_yaml("b", 2, baudrate=9600),
                  source_yaml("b", 2, timeout=0.5), source_yaml("b", 2, kind="serial")):
        with pytest.raises(InvalidConfig, match="serial:/dev/ttyUSB0 is already used"):
            parse_config(GATEWAY + source_yaml("a", 1) + clash, "gw.yaml", source_configs())
