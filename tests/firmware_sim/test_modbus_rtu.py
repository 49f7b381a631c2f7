"""Modbus RTU face specifics: the pty line, raw frames and CRC, line faults, mbpoll."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient

from plcsim import Sim
from plcsim.modbus_rtu import ModbusRtuFace, crc16_modbus, rtu_frame
from tests.firmware_sim.conftest import cancel_while_stopping, rtu_client_for
from tests.firmware_sim.modbus_peer import (
    RawLine,
    crc_ok,
    frame,
    mbpoll,
    mbpoll_values,
)
from tests.firmware_sim.modbus_peer import (
    crc16_modbus as reference_crc,
)

pytestmark = pytest.mark.sim
RtuFace = tuple[ModbusRtuFace, dict[str, Any]]


@pytest.fixture
async def line(rtu_face: RtuFace) -> Any:
    """The gateway's end of the line, raw."""
    raw = RawLine(rtu_face[1]["device"])
    try:
        yield raw
    finally:
        raw.close()


async def test_listening_description(rtu_face: RtuFace) -> None:
    """start() returns the gateway's pty and the line settings."""
    face, listening = rtu_face
    assert listening == {"protocol": "modbus_rtu", "device": face.device, "baudrate": 19200,
                         "parity": "N", "bytesize": 8, "stopbits": 1, "unit_ids": [1, 2]}
    assert listening["device"].startswith("/dev/pts/")
    fd = os.open(listening["device"], os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)


def test_crc_check_values() -> None:
    """CRC-16/MODBUS: the spec's check values, from plcsim and from the bitwise reference."""
    for crc in (reference_crc, crc16_modbus):
        assert crc(b"123456789") == 0x4B37
        assert crc(bytes.fromhex("01030000000A")).to_bytes(2, "little") == bytes.fromhex("C5CD")
    assert rtu_frame(1, bytes.fromhex("030000000A")) == bytes.fromhex("01030000000AC5CD")


async def test_raw_exchange_framing_and_crc(line: RawLine, sim: Sim) -> None:
    """Hand-built frames in, well-formed frames with a correct CRC out."""
    request = frame(1, bytes.fromhex("030000000A"))
    assert request == bytes.fromhex("01030000000AC5CD")
    line.write(request)  # holding 2..9 are not mapped: exception 2
    assert await line.read(5) == bytes.fromhex("018302C0F1")

    line.write(frame(1, bytes.fromhex("0300000002")))
    answer = await line.read(9)
    assert len(answer) == 9
    assert crc_ok(answer)
    assert answer[:3] == bytes([1, 3, 4])
    assert int.from_bytes(answer[3:7], "big") == sim.plant.counter

    write = frame(1, bytes.fromhex("0600C803E8"))  # holding 200 = 1000
    line.write(write)
    assert await line.read(8) == write  # FC6 answers with the echo of the request
    assert sim.plant.speed_setpoint_rpm == 1000
    assert await line.read(timeout_s=0.05) == b""  # nothing else on the line


async def test_bad_crc_is_ignored(line: RawLine) -> None:
    """A frame with a wrong CRC gets no answer; the next good one does."""
    good = frame(1, bytes.fromhex("0300000002"))
    line.write(good[:-1] + bytes([good[-1] ^ 0xFF]))
    assert await line.read(timeout_s=0.2) == b""
    line.write(good)
    assert crc_ok(await line.read(9))


async def test_frame_in_two_pieces(line: RawLine) -> None:
    """A frame arriving in two chunks (a gap shorter than t3.5) is one request."""
    request = frame(1, bytes.fromhex("0300C80001"))
    line.write(request[:3])
    await asyncio.sleep(0.001)
    line.write(request[3:])
    answer = await line.read(7)
    assert crc_ok(answer)
    assert answer[3:5] == (1450).to_bytes(2, "big")


async def test_units_on_the_bus(line: RawLine) -> None:
    """Unit 2 answers; an address nobody has stays silent (no 0x0B on a serial line)."""
    line.write(frame(2, bytes.fromhex("0400000001")))  # sample count
    answer = await line.read(7)
    assert crc_ok(answer)
    assert answer[:5] == bytes([2, 4, 2]) + (4096).to_bytes(2, "big")
    line.write(frame(7, bytes.fromhex("0300000002")))
    assert await line.read(timeout_s=0.2) == b""


async def test_broadcast_write_is_done_but_not_answered(line: RawLine, sim: Sim) -> None:
    """Address 0: every device on the line takes the write; nobody answers."""
    line.write(frame(0, bytes.fromhex("0600C80320")))  # holding 200 = 800
    assert await line.read(timeout_s=0.2) == b""
    assert sim.plant.speed_setpoint_rpm == 800
    assert [(r.target, r.accepted) for r in sim.writes.query(face="modbus_rtu")] == [
        ("holding 200", True), ("unit 2 holding 200", False)]


async def test_garbage_reaches_the_gateway_and_the_bus_recovers(
    rtu_face: RtuFace, sim: Sim
) -> None:
    """A garbage fault sends random bytes to the gateway; clean requests work afterwards."""
    face, listening = rtu_face
    assert face.bridge is not None
    line = RawLine(listening["device"])
    try:
        fault = sim.faults.add("garbage", "modbus_rtu", rate_hz=40, size=8)
        noise = await line.read(timeout_s=0.3)
        assert len(noise) >= 16
        assert len(noise) % 8 == 0
        assert face.bridge.stats["injected"] >= len(noise)
        sim.faults.clear(fault.id)
        await line.drain()
        line.write(frame(1, bytes.fromhex("0300000002")))
        assert crc_ok(await line.read(9))
    finally:
        line.close()
    client = rtu_client_for(listening)
    try:
        assert await client.connect()
        assert (await client.read_holding_registers(0, count=2, device_id=1)).registers == [0, 1]
    finally:
        client.close()


async def test_garbage_during_requests_confuses_but_does_not_break_a_client(
    rtu_client: AsyncModbusSerialClient, sim: Sim
) -> None:
    """With noise on the line some reads fail; once it stops, every read works."""
    fault = sim.faults.add("garbage", "modbus_rtu", rate_hz=100, size=4)
    results = []
    for _ in range(10):
        try:
            response = await rtu_client.read_holding_registers(0, count=2, device_id=1)
            results.append(not response.isError())
        except Exception:  # a corrupted answer: any client error is fine
            results.append(False)
    sim.faults.clear(fault.id)
    await asyncio.sleep(0.1)
    for _ in range(3):
        if not rtu_client.connected:
            assert await rtu_client.connect()
        response = await rtu_client.read_holding_registers(0, count=2, device_id=1)
        assert response.registers == [0, 1]
    assert len(results) == 10


async def test_dropout_discards_requests_at_the_bridge(
    rtu_face: RtuFace, line: RawLine, sim: Sim
) -> None:
    """A dropout (or a reboot) swallows what the gateway sends: no answer, nothing done."""
    face, _ = rtu_face
    assert face.bridge is not None
    fault = sim.faults.add("dropout", "modbus_rtu")
    line.write(frame(1, bytes.fromhex("0600C803E8")))
    assert await line.read(timeout_s=0.2) == b""
    assert face.bridge.stats["dropped"] == 8
    assert sim.plant.speed_setpoint_rpm == 1450
    sim.faults.clear(fault.id)
    line.write(frame(1, bytes.fromhex("0300000002")))
    assert crc_ok(await line.read(9))


async def test_disconnect_fault_is_a_glitch(rtu_face: RtuFace, line: RawLine, sim: Sim) -> None:
    """There is no connection to cut on a line: a disconnect only drops what is in flight."""
    sim.faults.add("latency", "modbus_rtu", delay_s=0.2)
    line.write(frame(1, bytes.fromhex("0300000002")))
    await asyncio.sleep(0.05)
    sim.faults.add("disconnect", "modbus_rtu")  # the delayed answer is lost
    assert await line.read(timeout_s=0.35) == b""
    sim.faults.clear()
    line.write(frame(1, bytes.fromhex("0300000002")))
    assert crc_ok(await line.read(9))


async def test_paced_bus_takes_wire_time(sim: Sim) -> None:
    """pace=True: a 125-register answer (255 bytes at 10 bits each) takes 133 ms at 19200."""
    face = ModbusRtuFace(sim, baudrate=19200, pace=True)
    listening = await face.start()
    client = rtu_client_for(listening, timeout_s=2.0)
    try:
        assert await client.connect()
        started = time.monotonic()
        response = await client.read_holding_registers(1000, count=125, device_id=1)
        elapsed = time.monotonic() - started
    finally:
        client.close()
        await face.stop()
    assert len(response.registers) == 125
    wire_s = (8 + 255) * 10 / 19200
    assert wire_s <= elapsed < wire_s + 0.5
    assert face.char_time_s == 10 / 19200
    assert ModbusRtuFace(sim, parity="E", stopbits=1).char_time_s == 11 / 19200


def test_serial_settings_are_checked(sim: Sim) -> None:
    """Unknown parity or stop bits are refused at construction."""
    with pytest.raises(ValueError, match="parity"):
        ModbusRtuFace(sim, parity="X")
    with pytest.raises(ValueError, match="stopbits"):
        ModbusRtuFace(sim, stopbits=3)


async def test_stop_removes_the_pty_pair(sim: Sim) -> None:
    """After stop() the face has no line; starting again makes a new one."""
    face = ModbusRtuFace(sim)
    first = (await face.start())["device"]
    await face.stop()
    assert face.device is None
    second = (await face.start())["device"]
    try:
        assert second.startswith("/dev/pts/")
        assert first.startswith("/dev/pts/")
    finally:
        await face.stop()


async def test_mbpoll_over_rtu(rtu_face: RtuFace, sim: Sim) -> None:
    """Mbpoll (libmodbus) on the pty (8E1 as it defaults to: a pty ignores parity)."""
    device = rtu_face[1]["device"]
    base = ("-m", "rtu", "-b", "19200", "-P", "even", "-a", "1", "-0", "-1", "-o", "1")
    code, out = await mbpoll(*base, "-r", "300", "-t", "4:float", device)  # CDAB by default
    assert code == 0, out
    assert float(mbpoll_values(out)[300]) == pytest.approx(sim.signal("flow"), rel=1e-5)
    code, out = await mbpoll(*base, "-r", "0", "-t", "4:int", "-B", device)
    assert code == 0, out
    assert int(mbpoll_values(out)[0]) == sim.plant.counter
    code, out = await mbpoll(*base, "-r", "401", "-c", "1", "-t", "4", device)
    assert int(mbpoll_values(out)[401]) == round(sim.signal("current") * 100)
    code, out = await mbpoll(*base, "-r", "201", "-t", "4", device, "250")
    assert code == 0, out
    assert sim.plant.valve_position_pct == 25.0
    assert [(r.target, r.name, r.value) for r in sim.writes.query(face="modbus_rtu")] == [
        ("holding 201", "valve_position_pct", 25.0)]


async def test_a_cancel_of_stop_itself_goes_through(sim: Sim) -> None:
    """stop() waits for its garbage task without swallowing a cancel aimed at the caller."""
    face = ModbusRtuFace(sim)
    await face.start()
    assert await cancel_while_stopping(face)
    assert face.bridge is None
