"""Waveform blocks read in many requests stay whole: the capture counter brackets the read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from edgetwin.core.types import Quality
from edgetwin.sources.modbus import ModbusSource, ModbusTcpConfig
from plcsim import Sim
from plcsim.modbus_tcp import ModbusTcpFace
from tests.helpers.recording import RecordingHealth
from tests.sources.modbus.conftest import BatchRecorder
from tests.sources.modbus.test_driver import running

SAMPLES = 4096


@pytest.fixture
async def fast_captures() -> AsyncIterator[tuple[Sim, int, dict[int, np.ndarray]]]:
    """A sensor making a new capture every ~20 ms of real time, each one recorded."""
    sim = Sim(seed=4, tick_s=0.01, speedup=50.0)  # 0.5 s of plant time per 10 ms tick
    captures: dict[int, np.ndarray] = {}
    advance = sim.vibration.advance

    def recording_advance(*args: Any, **kwargs: Any) -> None:
        advance(*args, **kwargs)
        captures[sim.vibration.capture_counter] = sim.vibration.capture.copy()

    sim.vibration.advance = recording_advance  # type: ignore[method-assign]  # test probe
    face = ModbusTcpFace(sim, port=0)
    port = (await face.start())["port"]
    ticking = asyncio.create_task(sim.run())
    yield sim, port, captures
    ticking.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticking
    await face.stop()


def whole(value: np.ndarray, captures: dict[int, np.ndarray]) -> bool:
    """Whether ``value`` (in g) is exactly one recorded capture as the device serves it."""
    counts = np.rint(np.asarray(value) / 0.001)
    return any(np.array_equal(counts, np.clip(np.rint(c / 0.001), -32768, 32767))
               for c in captures.values())


async def test_counter_bracketed_reads_deliver_whole_captures(
    fast_captures: tuple[Sim, int, dict[int, np.ndarray]],
) -> None:
    """Every GOOD waveform equals one capture; reads torn by a new capture are repeated."""
    _sim, port, captures = fast_captures
    config = ModbusTcpConfig.model_validate({
        "name": "vib", "type": "modbus_tcp", "host": "127.0.0.1", "port": port,
        "poll_interval": 0.01, "timeout": 1.0,
        "points": [{"id": "pump1/vib_de", "address": 1000, "type": "int16", "count": SAMPLES,
                    "waveform": {"sample_rate": 12000, "scale": 0.001,
                                 "counter_address": 900, "counter_type": "uint32"}}],
    })
    source = ModbusSource(config)
    batches, health = BatchRecorder(), RecordingHealth()
    async with running(source, batches, health):
        await batches.wait_for(lambda _b: len(batches.batches) >= 40 and source.torn_reads > 0,
                               timeout_s=20)
    good = [b["pump1/vib_de"].value for b in batches.batches
            if b["pump1/vib_de"].quality is Quality.GOOD]
    assert len(good) >= 10
    assert all(whole(v, captures) for v in good)
    assert source.torn_reads > 0  # tears happened and were caught
    assert all(e.error_code == "waveform_torn" for e in health.events if e.kind == "point_error")
