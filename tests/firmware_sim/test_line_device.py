"""plcsim's serial scale on a pty, read with pyserial as a gateway would (no mocks)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import serial

from plcsim.line_device import LineDevice, scale_record
from plcsim.plant import TANK_CAPACITY_M3
from plcsim.sim import Sim
from tests.firmware_sim.conftest import cancel_while_stopping

pytestmark = pytest.mark.sim
RATE_HZ = 20.0


@pytest.fixture
def sim(ticking_sim: Sim) -> Sim:
    """These faces follow the plant live: the ticking simulation."""
    return ticking_sim


@pytest.fixture
async def scale(sim: Sim) -> AsyncIterator[tuple[LineDevice, dict[str, Any]]]:
    """A started scale streaming at 20 Hz, and its listening description."""
    device = LineDevice(sim, rate_hz=RATE_HZ)
    listening = await device.start()
    yield device, listening
    await device.stop()


@pytest.fixture
async def port(scale: tuple[LineDevice, dict[str, Any]]) -> AsyncIterator[serial.Serial]:
    """The pty opened with pyserial, as a gateway opens a serial port."""
    opened = serial.Serial(scale[1]["device"], baudrate=9600, timeout=0.5)
    yield opened
    opened.close()


async def read_lines(port: serial.Serial, duration_s: float) -> list[tuple[float, bytes]]:
    """Lines read for ``duration_s`` (in a thread: the scale writes from this loop)."""
    def read() -> list[tuple[float, bytes]]:
        lines = []
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            line = port.readline()
            if line:
                lines.append((time.monotonic(), line))
        return lines
    return await asyncio.to_thread(read)


def parse(fmt: str, line: bytes) -> float | None:
    """The weight of a record line, or None when the line does not match the format."""
    match = re.fullmatch(fmt, line.decode("latin-1"))
    return float(match.group(2)) if match else None


def tank_kg(sim: Sim) -> float:
    return sim.plant.tank_level_pct / 100 * TANK_CAPACITY_M3 * 1000


def test_record_format() -> None:
    """Sign, four integer digits, three decimals; flags for motion and overload."""
    assert scale_record(12.345, 12.3) == b"ST,GS,+0012.345 kg\r\n"
    assert scale_record(-3.0, None) == b"ST,GS,-0003.000 kg\r\n"
    assert scale_record(1001.0, 1000.0) == b"US,GS,+1001.000 kg\r\n"
    assert scale_record(12345.0, 12345.0) == b"OL,GS,+9999.999 kg\r\n"


async def test_records_at_rate_follow_the_tank(
    sim: Sim, scale: tuple[LineDevice, dict[str, Any]], port: serial.Serial
) -> None:
    """About 20 records a second, all matching the advertised format, weighing the tank."""
    device, listening = scale
    assert listening == {"protocol": "line", "device": device.device, "rate_hz": RATE_HZ,
                         "format": listening["format"]}
    assert listening["device"].startswith("/dev/pts/")
    lines = await read_lines(port, 1.0)
    weights = [parse(listening["format"], line) for _, line in lines]
    assert 14 <= len(weights) <= 26
    assert None not in weights
    assert all(abs(w - tank_kg(sim)) < 2.0 for w in weights if w is not None)

    sim.plant.tank_level_pct = 30.0  # the tank drains: 600 kg
    lines = await read_lines(port, 0.5)
    assert abs((parse(listening["format"], lines[-1][1]) or 0.0) - 600.0) < 2.0
    assert device.dropped == 0


async def test_garbage_corrupts_some_lines_then_records_parse_again(
    sim: Sim, scale: tuple[LineDevice, dict[str, Any]], port: serial.Serial
) -> None:
    """Injected bytes break the lines they land on; the stream recovers by itself."""
    device, listening = scale
    fault = sim.faults.add("garbage", "line", rate_hz=10, size=8)
    noisy = await read_lines(port, 1.0)
    sim.faults.clear(fault.id)
    await read_lines(port, 0.2)  # a line that was already under way
    clean = await read_lines(port, 0.5)
    assert device.garbage_bytes >= 8
    assert any(parse(listening["format"], line) is None for _, line in noisy)
    assert any(parse(listening["format"], line) is not None for _, line in noisy)
    assert clean and all(parse(listening["format"], line) is not None for _, line in clean)


async def test_dropout_silences_and_latency_delays(
    sim: Sim, scale: tuple[LineDevice, dict[str, Any]], port: serial.Serial
) -> None:
    """A dropout sends nothing; a latency fault delivers records ``delay_s`` late."""
    _, listening = scale
    dropout = sim.faults.add("dropout", "line")
    await read_lines(port, 0.1)  # at most a record already written
    assert await read_lines(port, 0.5) == []
    sim.faults.clear(dropout.id)
    assert len(await read_lines(port, 0.5)) >= 5

    latency = sim.faults.add("latency", "line", delay_s=0.6)
    started = time.monotonic()
    lines = await read_lines(port, 1.2)
    sim.faults.clear(latency.id)
    assert lines
    assert lines[0][0] - started >= 0.5  # the first late record
    assert all(parse(listening["format"], line) is not None for _, line in lines)


async def test_nobody_reading_does_not_block_the_loop(sim: Sim) -> None:
    """A full pty drops records instead of blocking; a reader then gets fresh ones."""
    device = LineDevice(sim, rate_hz=1000.0)
    listening = await device.start()
    try:
        worst_lag_s = 0.0
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.5
        while loop.time() < end:  # about 30 kB of records against a 16 kB pty buffer
            before = loop.time()
            await asyncio.sleep(0.01)
            worst_lag_s = max(worst_lag_s, loop.time() - before - 0.01)
        assert device.dropped > 0
        assert worst_lag_s < 0.2
        with serial.Serial(listening["device"], timeout=0.5) as port:  # open discards the backlog
            lines = await read_lines(port, 0.2)
        assert sum(parse(listening["format"], line) is not None for _, line in lines) > 50
    finally:
        await device.stop()


async def test_a_cancel_of_stop_itself_goes_through(sim: Sim) -> None:
    """stop() waits for its stream task without swallowing a cancel aimed at the caller."""
    device = LineDevice(sim, rate_hz=RATE_HZ)
    await device.start()
    assert await cancel_while_stopping(device)
