"""ModbusSource against a real plcsim pump skid in a subprocess, with injected faults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetwin.core.types import Quality, Sample
from edgetwin.sources.modbus import MODBUS_TCP, ModbusSource, ModbusTcpConfig
from plcsim import SimProcess

pytestmark = pytest.mark.sim

SKID_POINTS: list[dict[str, Any]] = [
    {"id": "pump1/counter", "address": 0, "type": "uint32"},
    {"id": "pump1/motor_temp", "address": 100, "type": "float32", "unit": "degC"},
    {"id": "pump1/speed_setpoint", "address": 200, "type": "uint16", "unit": "rpm"},
    {"id": "pump1/flow", "address": 300, "type": "float32", "byte_order": "CDAB"},
    {"id": "tank1/level", "kind": "input", "address": 0, "scale": 0.1, "unit": "%"},
    {"id": "pump1/run", "kind": "coil", "address": 0, "type": "bool"},
    {"id": "tank1/level_low", "kind": "discrete", "address": 0, "type": "bool"},
]


def skid_config(
    port: int, points: list[dict[str, Any]] = SKID_POINTS, **extra: Any
) -> ModbusTcpConfig:
    return ModbusTcpConfig.model_validate({
        "name": "skid1", "type": "modbus_tcp", "host": "127.0.0.1", "port": port,
        "poll_interval": 0.05, "timeout": 0.3, "points": points, **extra,
    })


def every(quality: Quality) -> Callable[[dict[str, Sample]], bool]:
    return lambda batch: bool(batch) and all(s.quality is quality for s in batch.values())


@contextlib.asynccontextmanager
async def running(
    source: ModbusSource, batches: Any, health: Any
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run(batches, health), name="test.source")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


FAST_RECONNECT = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.5}


async def test_registry_builds_the_driver(modbus_sim: SimProcess) -> None:
    """The modbus_tcp spec's factory makes a ModbusSource named after the config."""
    assert MODBUS_TCP.factory is ModbusSource
    source = MODBUS_TCP.factory(skid_config(modbus_sim.port))
    assert source.name == "skid1"
    assert source.resources() == frozenset({f"modbus_tcp:127.0.0.1:{modbus_sim.port}"})


async def test_reads_plausible_skid_values(
    modbus_sim: SimProcess, batches: Any, health: Any
) -> None:
    """Every point decodes to a plausible value and the counter grows between batches."""
    source = ModbusSource(skid_config(modbus_sim.port))
    async with running(source, batches, health):
        first_index, first = await batches.wait_for(every(Quality.GOOD))
        _, later = await batches.wait_for(
            lambda b: b["pump1/counter"].value > first["pump1/counter"].value, after=first_index
        )
    assert set(first) == {p["id"] for p in SKID_POINTS}  # one sample per point, one batch
    counter = later["pump1/counter"].value
    assert isinstance(counter, int)
    assert 40.0 <= later["pump1/motor_temp"].value <= 80.0
    assert later["pump1/speed_setpoint"].value == 1450
    assert 0.0 <= later["tank1/level"].value <= 100.0
    assert later["pump1/run"].value is True
    assert isinstance(later["tank1/level_low"].value, bool)
    # CDAB decoded right is about 12 m3/h at 1450 rpm; read as ABCD it would be nonsense.
    assert 11.0 <= later["pump1/flow"].value <= 13.0
    assert len({s.ts_ns for s in later.values()}) >= 1
    assert [e.kind for e in health.events] == ["up"]
    assert health.cycles and all(d >= 0 for d in health.cycles)


async def test_unmapped_addresses_are_bad_while_neighbours_stay_good(
    modbus_sim: SimProcess, batches: Any, health: Any
) -> None:
    """Exception 2 marks only the unmapped points BAD, even inside a merged read block."""
    points = [
        *SKID_POINTS,
        {"id": "pump1/far_away", "address": 50, "type": "uint16"},  # its own block
        {"id": "pump1/next_door", "address": 103, "type": "uint16"},  # merged with 100-101
        {"id": "pump1/no_coil", "kind": "coil", "address": 40, "type": "bool"},
    ]
    unmapped = {"pump1/far_away", "pump1/next_door", "pump1/no_coil"}
    source = ModbusSource(skid_config(modbus_sim.port, points))
    async with running(source, batches, health):
        _, batch = await batches.wait_for(lambda b: len(b) == len(points))
    for point, sample in batch.items():
        if point in unmapped:
            assert (sample.quality, sample.value) == (Quality.BAD, None), point
        else:
            assert sample.quality is Quality.GOOD, point
    errors = {e.point: e for e in health.of("point_error")}
    assert set(errors) == unmapped
    assert {e.error_code for e in errors.values()} == {"modbus_exception_2"}
    assert errors["pump1/far_away"].error == (
        f"modbus source 'skid1' (tcp 127.0.0.1:{modbus_sim.port}, unit 1): "
        "read holding 50x1 failed: exception 2 (illegal data address)"
    )
    assert not health.of("down")


async def test_server_killed_then_restarted_on_the_same_port(
    modbus_sim: SimProcess, batches: Any, health: Any
) -> None:
    """SIGKILL: all points BAD once and health down; restart: GOOD again and health up."""
    source = ModbusSource(skid_config(modbus_sim.port), **FAST_RECONNECT)
    async with running(source, batches, health):
        await batches.wait_for(every(Quality.GOOD))
        await modbus_sim.kill()
        bad_index, _ = await batches.wait_for(every(Quality.BAD))
        await health.wait_for("down")
        await health.wait_for("down", count=2)  # at least one reconnect attempt was refused
        restarted = await SimProcess.start("modbus", "--port", str(modbus_sim.port))
        try:
            good_index, _ = await batches.wait_for(every(Quality.GOOD), after=bad_index)
            await health.wait_for("up", count=2)
        finally:
            await restarted.stop()
    outage = batches.batches[bad_index:good_index]
    assert len(outage) == 1, "BAD is emitted once per outage, not once per cycle"
    codes = [e.error_code for e in health.of("down")]
    assert codes[0] in ("connection_lost", "timeout")
    assert "connect_failed" in codes[1:]
    assert f"tcp 127.0.0.1:{modbus_sim.port}" in health.of("down")[0].error


async def test_hung_device_times_out_and_recovers(
    modbus_sim: SimProcess, batches: Any, health: Any
) -> None:
    """A device that stops answering (SIGSTOP) reports timeout; SIGCONT brings it back."""
    source = ModbusSource(skid_config(modbus_sim.port), **FAST_RECONNECT)
    async with running(source, batches, health):
        await batches.wait_for(every(Quality.GOOD))
        modbus_sim.pause()
        try:
            bad_index, _ = await batches.wait_for(every(Quality.BAD))
            await health.wait_for("down")
        finally:
            modbus_sim.resume()
        await batches.wait_for(every(Quality.GOOD), after=bad_index)
        await health.wait_for("up", count=2)
    assert health.of("down")[0].error_code == "timeout"


async def test_unreachable_device_reports_bad_once_and_keeps_trying(
    batches: Any, health: Any
) -> None:
    """No server at all: one BAD batch, then connect_failed on every attempt."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    source = ModbusSource(skid_config(free_port), **FAST_RECONNECT)
    async with running(source, batches, health):
        await health.wait_for("down", count=3)
    assert {e.error_code for e in health.of("down")} == {"connect_failed"}
    assert len(batches.batches) == 1
    assert every(Quality.BAD)(batches.batches[0])


async def test_points_with_their_own_interval_poll_in_their_own_batches(
    modbus_sim: SimProcess, batches: Any, health: Any
) -> None:
    """A point with a slower poll_interval arrives in batches of its own loop."""
    points = [dict(p) for p in SKID_POINTS]
    points[3]["poll_interval"] = 0.2  # flow
    source = ModbusSource(skid_config(modbus_sim.port, points))
    async with running(source, batches, health):
        await batches.wait_for(lambda b: set(b) == {"pump1/flow"})
        await batches.wait_for(lambda b: "pump1/counter" in b)
    assert all(set(b) == {"pump1/flow"} or "pump1/flow" not in b for b in batches.batches)


def _established_to(port: int) -> int:
    """Open TCP connections from this process to 127.0.0.1:port (Linux /proc)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
            count += 1
    return count


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
async def test_cancellation_returns_promptly_and_closes(
    modbus_sim: SimProcess, batches: Any, health: Any
) -> None:
    """Cancelling run() returns within a second and leaves no connection open."""
    source = ModbusSource(skid_config(modbus_sim.port))
    task = asyncio.create_task(source.run(batches, health))
    await batches.wait_for(every(Quality.GOOD))
    assert _established_to(modbus_sim.port) == 1
    task.cancel()
    async with asyncio.timeout(1.0):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()
    async with asyncio.timeout(1.0):
        while True:  # the transport closes its socket on one of the next loop iterations
            if not _established_to(modbus_sim.port):
                break
            await asyncio.sleep(0)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t.get_name() for t in others if t.get_name().startswith("source[")]


async def test_waveform_block_larger_than_one_request(
    modbus_sim: SimProcess, batches: Any, health: Any
) -> None:
    """256 registers are read in three requests and arrive as one scaled float64 array."""
    points = [{
        "id": "pump1/vib_de", "address": 1000, "type": "int16", "count": 256,
        "waveform": {"sample_rate": 2560, "scale": 0.001, "unit": "g"},
    }]
    source = ModbusSource(skid_config(modbus_sim.port, points))
    assert [b.requests() for b in source.groups[0].blocks] == [
        ((1000, 125), (1125, 125), (1250, 6))
    ]
    async with running(source, batches, health):
        _, batch = await batches.wait_for(every(Quality.GOOD))
    value = batch["pump1/vib_de"].value
    assert isinstance(value, np.ndarray)
    assert (value.dtype, value.shape) == (np.float64, (256,))
    assert np.all(np.abs(value) <= 0.65)  # 1x 0.5 g + 3x 0.1 g + noise, scaled from counts
    assert np.ptp(value) > 0.05  # a real signal (healthy bearing: ~0.2 g p-p), not zeros
    assert not value.flags.writeable
