"""Faults injected through firmware-sim's control API: BAD within a poll, back without restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edgetwin.core.types import Quality
from edgetwin.sources.modbus import ModbusSource
from plcsim import SimProcess
from plcsim.control import call
from tests.helpers.recording import RecordingHealth
from tests.sources.modbus.conftest import BatchRecorder
from tests.sources.modbus.test_driver import FAST_RECONNECT, every, running, skid_config
from tests.sources.modbus.test_rtu import PLC, VIBRATION, line, rtu  # noqa: F401  # fixture


async def fault(sim: SimProcess, kind: str, **body: Any) -> dict[str, Any]:
    assert sim.control is not None
    result: dict[str, Any] = await asyncio.to_thread(
        call, sim.control, "POST", "/faults", {"kind": kind, **body})
    return result


async def clear(sim: SimProcess) -> None:
    assert sim.control is not None
    await asyncio.to_thread(call, sim.control, "DELETE", "/faults")


@pytest.mark.parametrize(("kind", "body", "code"), [
    ("exception", {"target": "modbus_tcp", "params": {"code": 6}}, "modbus_exception_6"),
    ("dropout", {"target": "modbus_tcp"}, "timeout"),
    ("reboot", {}, None),
    ("disconnect", {"target": "modbus_tcp"}, None),
])
async def test_tcp_faults_turn_points_bad_and_they_recover(
    modbus_sim: SimProcess, kind: str, body: dict[str, Any], code: str | None
) -> None:
    """Each fault kind: BAD soon after it starts (with its reason), GOOD again once it ends."""
    source = ModbusSource(skid_config(modbus_sim.port), **FAST_RECONNECT)
    batches, health = BatchRecorder(), RecordingHealth()
    async with running(source, batches, health):
        await batches.wait_for(every(Quality.GOOD))
        at = len(batches.batches)
        await fault(modbus_sim, kind, **body)
        if kind != "disconnect":  # a cut connection is re-made at once; nothing to see BAD
            await batches.wait_for(every(Quality.BAD), after=at)
        await clear(modbus_sim)
        await batches.wait_for(every(Quality.GOOD), after=len(batches.batches))
    if code is not None:
        codes = {e.error_code for e in health.events if e.kind in ("down", "point_error")}
        assert code in codes


async def test_rtu_garbage_and_dropout_on_the_line(line: tuple[Any, str]) -> None:  # noqa: F811
    """Line noise costs at most a few reads; a dropout turns both slaves BAD; both recover."""
    sim, device = line
    plc = ModbusSource(rtu(device, "plc", 1, PLC))
    vib = ModbusSource(rtu(device, "vib", 2, VIBRATION))
    plc_batches, vib_batches = BatchRecorder(), BatchRecorder()
    async with running(plc, plc_batches, RecordingHealth()), \
            running(vib, vib_batches, RecordingHealth()):
        await plc_batches.wait_for(every(Quality.GOOD))
        sim.faults.add("garbage", "modbus_rtu", rate_hz=20, size=6)
        start = len(plc_batches.batches)
        await plc_batches.wait_for(lambda _b: True, after=start + 20)
        good = sum(all(s.quality is Quality.GOOD for s in b.values())
                   for b in plc_batches.batches[start:])
        assert good >= 10  # noise hits some exchanges, never the whole bus
        sim.faults.clear()
        # Both back to GOOD first: an outage the noise began would simply go on (BAD is
        # reported once per outage), and the dropout's own BAD batch would never come.
        await plc_batches.wait_for(every(Quality.GOOD), after=len(plc_batches.batches))
        await vib_batches.wait_for(every(Quality.GOOD), after=len(vib_batches.batches))
        plc_at, vib_at = len(plc_batches.batches), len(vib_batches.batches)
        sim.faults.add("dropout", "modbus_rtu")
        await plc_batches.wait_for(every(Quality.BAD), after=plc_at)
        await vib_batches.wait_for(every(Quality.BAD), after=vib_at)
        plc_at, vib_at = len(plc_batches.batches), len(vib_batches.batches)
        sim.faults.clear()
        await plc_batches.wait_for(every(Quality.GOOD), after=plc_at)
        await vib_batches.wait_for(every(Quality.GOOD), after=vib_at)


async def test_a_block_read_before_the_link_died_in_the_same_cycle_is_kept() -> None:
    """A device answers the first block, then drops the connection: that value still counts.

    It used to go with the failed cycle (the HIL soak lost counter 4372 that way, read
    0.7 s before a PLC reboot).
    """
    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(7)  # MBAP: tid, pid, length, unit
                pdu = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
                if int.from_bytes(pdu[1:3], "big") != 0:  # the second block: the device dies
                    break
                reply = bytes([3, 2]) + (4372).to_bytes(2, "big")
                writer.write(header[:4] + (len(reply) + 1).to_bytes(2, "big") + header[6:7]
                             + reply)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    points = [{"id": "dev/first", "address": 0}, {"id": "dev/second", "address": 1000}]
    source = ModbusSource(skid_config(port, points), **FAST_RECONNECT)
    batches, health = BatchRecorder(), RecordingHealth()
    try:
        async with running(source, batches, health):
            await batches.wait_for(
                lambda b: "dev/first" in b and b["dev/first"].quality is Quality.GOOD
                and b["dev/first"].value == 4372)
    finally:
        server.close()
        await server.wait_closed()
