"""Modbus TCP face specifics: listening, unit ids, connections, raw frames, mbpoll."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from plcsim import Sim, SimProcess
from plcsim.control import call
from plcsim.faults import FaultError
from plcsim.modbus_tcp import ModbusTcpFace
from tests.firmware_sim.conftest import tcp_client_for
from tests.firmware_sim.modbus_peer import decode, mbpoll, mbpoll_values, step

pytestmark = pytest.mark.sim
TcpFace = tuple[ModbusTcpFace, dict[str, Any]]


async def until(check: Any, timeout_s: float = 2.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110  # polls a client's state; no event to wait on
            await asyncio.sleep(0.01)


async def test_listening_description(tcp_face: TcpFace) -> None:
    """start() reports protocol, host and the port actually bound."""
    face, listening = tcp_face
    assert listening == {"protocol": "modbus", "host": "127.0.0.1", "port": face.port}
    assert face.port > 0
    assert face.name == "modbus_tcp"


@pytest.mark.parametrize("unit", [0, 3, 7, 247, 255])
async def test_other_unit_ids_get_gateway_exception(
    tcp_client: AsyncModbusTcpClient, unit: int
) -> None:
    """A unit id not served answers 0x0B, like a TCP-to-RTU gateway."""
    response = await tcp_client.read_holding_registers(0, count=2, device_id=unit)
    assert (response.isError(), response.exception_code) == (True, 11)


async def test_unit_ids_are_configurable(sim: Sim) -> None:
    """The PLC answers on the first unit id, the vibration module on the second."""
    face = ModbusTcpFace(sim, unit_ids=(5,))
    listening = await face.start()
    client = tcp_client_for(listening)
    try:
        assert await client.connect()
        assert (await client.read_holding_registers(0, count=2, device_id=5)).registers == [0, 1]
        missing = await client.read_holding_registers(0, count=1, device_id=1)
        assert missing.exception_code == 11
    finally:
        client.close()
        await face.stop()
    with pytest.raises(ValueError, match="unit"):
        ModbusTcpFace(sim, unit_ids=(1, 1))
    with pytest.raises(ValueError, match="unit"):
        ModbusTcpFace(sim, unit_ids=(256,))


async def test_unit_0_answers_every_other_unit_id(sim: Sim) -> None:
    """unit_ids=(0, 2): the vibration module on 2, the PLC on any other unit id."""
    face = ModbusTcpFace(sim, unit_ids=(0, 2))
    listening = await face.start()
    client = tcp_client_for(listening)
    try:
        assert await client.connect()
        for unit in (0, 1, 9, 255):
            response = await client.read_holding_registers(200, count=1, device_id=unit)
            assert response.registers == [1450], unit
        vibration = await client.read_input_registers(0, count=1, device_id=2)
        assert vibration.registers == [4096]
        assert not (await client.write_register(200, 800, device_id=9)).isError()
    finally:
        client.close()
        await face.stop()
    assert [r.target for r in sim.writes.query()] == ["holding 200"]


async def test_state_counts_connections_and_requests_by_unit(tcp_face: TcpFace, sim: Sim) -> None:
    """state()["faces"] says how many connections the face accepted and what each unit got."""
    face, listening = tcp_face
    first, second = tcp_client_for(listening), tcp_client_for(listening)
    try:
        assert await first.connect() and await second.connect()
        for unit in (1, 1, 2):
            assert not (await first.read_holding_registers(0, count=1, device_id=unit)).isError()
        await second.read_holding_registers(0, count=1, device_id=9)  # 0x0B, still a request
        assert sim.state()["faces"]["modbus_tcp"] == {
            "connections_open": 2, "connections_total": 2, "requests": {"1": 2, "2": 1, "9": 1}}
    finally:
        first.close()
        second.close()
    await until(lambda: face.connections == 0)
    assert sim.state()["faces"]["modbus_tcp"]["connections_total"] == 2


async def test_control_api_reports_the_face(client: AsyncModbusTcpClient,
                                            modbus_sim: SimProcess) -> None:
    """GET /state of a plcsim process shows its TCP face's connections and requests."""
    await client.read_holding_registers(0, count=2, device_id=1)
    assert modbus_sim.control is not None
    state = await asyncio.to_thread(call, modbus_sim.control, "GET", "/state")
    assert state["faces"]["modbus_tcp"] == {
        "connections_open": 1, "connections_total": 1, "requests": {"1": 1}}


async def test_dropout_of_one_unit_silences_only_that_unit(
    tcp_client: AsyncModbusTcpClient, sim: Sim
) -> None:
    """A dropout with unit=2 leaves unit 2 unanswered while unit 1 answers on the same link."""
    sim.faults.add("dropout", "modbus_tcp", unit=2)
    with pytest.raises(ModbusIOException):
        await tcp_client.read_holding_registers(0, count=1, device_id=2)
    answer = await tcp_client.read_holding_registers(200, count=1, device_id=1)
    assert answer.registers == [1450]
    assert sim.faults.silent("modbus_tcp", 2) and not sim.faults.silent("modbus_tcp")
    sim.faults.clear()
    assert (await tcp_client.read_input_registers(0, count=1, device_id=2)).registers == [4096]
    with pytest.raises(FaultError, match="unit id"):
        sim.faults.add("dropout", "modbus_tcp", unit="two")


async def test_latency_of_one_unit_delays_only_its_answers(
    tcp_client: AsyncModbusTcpClient, sim: Sim
) -> None:
    """A latency with unit=2 makes unit 2 late; unit 1 only queues behind that one answer."""
    sim.faults.add("latency", "modbus_tcp", delay_s=0.5, unit=2)
    assert (sim.faults.delay_s("modbus_tcp", 2), sim.faults.delay_s("modbus_tcp", 1)) == (0.5, 0)
    with pytest.raises(ModbusIOException):  # the client gives up after 0.3 s
        await tcp_client.read_holding_registers(0, count=1, device_id=2)
    # Unit 2's late answer comes while this request waits: its stale transaction id is skipped.
    answer = await tcp_client.read_holding_registers(200, count=1, device_id=1)
    assert answer.registers == [1450]


async def test_disconnect_fault_cuts_open_connections(
    tcp_face: TcpFace, tcp_client: AsyncModbusTcpClient, sim: Sim
) -> None:
    """A disconnect fault closes every open connection of this face; a new one works at once."""
    face, listening = tcp_face
    other = tcp_client_for(listening)
    assert await other.connect()
    assert face.connections == 2
    sim.faults.add("disconnect", "modbus_rtu")  # another face: nothing happens here
    assert face.connections == 2
    sim.faults.add("disconnect", "modbus_tcp")
    assert face.connections == 0
    await until(lambda: not tcp_client.connected and not other.connected)
    other.close()
    again = tcp_client_for(listening)
    try:
        assert await again.connect()
        assert (await again.read_holding_registers(0, count=2, device_id=1)).registers == [0, 1]
    finally:
        again.close()


async def test_reboot_cuts_connections(
    tcp_face: TcpFace, tcp_client: AsyncModbusTcpClient, sim: Sim
) -> None:
    """A reboot closes every connection; new ones are accepted but unanswered until it ends."""
    face, _ = tcp_face
    sim.faults.add("reboot", duration_s=0.5)
    assert face.connections == 0
    await until(lambda: not tcp_client.connected)
    step(sim, 0.5)
    assert not sim.rebooting


async def test_stop_closes_connections_and_frees_the_port(sim: Sim) -> None:
    """After stop() the client is disconnected and a new face binds the same port."""
    face = ModbusTcpFace(sim)
    listening = await face.start()
    client = tcp_client_for(listening)
    assert await client.connect()
    await face.stop()
    await until(lambda: not client.connected)
    client.close()
    again = ModbusTcpFace(sim, port=listening["port"])
    try:
        assert (await again.start())["port"] == listening["port"]
    finally:
        await again.stop()


async def test_busy_port_raises_oserror(tcp_face: TcpFace, sim: Sim) -> None:
    """A port already in use fails start() with OSError (the CLI's exit 69)."""
    with pytest.raises(OSError, match="cannot listen"):
        await ModbusTcpFace(sim, port=tcp_face[0].port).start()


async def test_counter_follows_the_running_sim(
    tcp_client: AsyncModbusTcpClient, sim: Sim
) -> None:
    """With Sim.run() ticking in real time, the counter grows 1 per 100 ms."""
    runner = asyncio.create_task(sim.run())
    try:
        first = decode((await tcp_client.read_holding_registers(0, count=2)).registers,
                       "I", "ABCD")
        await asyncio.sleep(0.55)
        later = decode((await tcp_client.read_holding_registers(0, count=2)).registers,
                       "I", "ABCD")
    finally:
        runner.cancel()
    assert 4 <= later - first <= 7


# -- raw frames ------------------------------------------------------------------------------

def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


async def exchange(port: int, data: bytes, answers: int) -> list[tuple[int, int, bytes]]:
    """Send raw bytes; collect ``answers`` responses as (transaction id, unit, PDU)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        out = []
        for _ in range(answers):
            head = await asyncio.wait_for(reader.readexactly(7), 1.0)
            tid, protocol, length, unit = struct.unpack(">HHHB", head)
            assert protocol == 0
            out.append((tid, unit, await reader.readexactly(length - 1)))
        return out
    finally:
        writer.close()


async def test_back_to_back_requests_are_all_answered(tcp_face: TcpFace) -> None:
    """Several requests in one TCP segment are answered in order, each with its own tid."""
    requests = b"".join(mbap(tid, 1, struct.pack(">BHH", 3, address, count))
                        for tid, address, count in ((7, 0, 2), (8, 200, 1), (9, 50, 1)))
    answers = await exchange(tcp_face[0].port, requests, 3)
    assert answers == [
        (7, 1, bytes([3, 4, 0, 0, 0, 1])),
        (8, 1, bytes([3, 2]) + (1450).to_bytes(2, "big")),
        (9, 1, bytes([0x83, 2])),
    ]


@pytest.mark.parametrize(
    ("pdu", "answer"),
    [
        (struct.pack(">BHH", 3, 1000, 126), bytes([0x83, 3])),  # more than 125 registers
        (struct.pack(">BHH", 3, 1000, 0), bytes([0x83, 3])),
        (struct.pack(">BHH", 1, 0, 2001), bytes([0x81, 3])),  # more than 2000 bits
        (bytes([0x41, 0, 0]), bytes([0xC1, 1])),  # a function nobody knows
        (bytes([0x08, 0, 0, 0x12, 0x34]), bytes([0x88, 1])),  # diagnostics: not served
        (bytes([0x2B, 0x0E, 1, 0]), bytes([0xAB, 1])),  # device identification: neither
        (struct.pack(">BHH", 4, 0xFFFF, 2), bytes([0x84, 2])),  # past address 65535
    ],
)
async def test_protocol_errors(tcp_face: TcpFace, pdu: bytes, answer: bytes) -> None:
    """Quantities beyond the spec's limits answer 3, unknown functions 1."""
    assert await exchange(tcp_face[0].port, mbap(1, 1, pdu), 1) == [(1, 1, answer)]


async def test_read_write_multiple_registers(tcp_face: TcpFace, sim: Sim) -> None:
    """FC23 writes first, then reads (here the setpoint it just wrote)."""
    pdu = struct.pack(">BHHHHBH", 23, 200, 1, 200, 1, 2, 1234)
    answers = await exchange(tcp_face[0].port, mbap(3, 1, pdu), 1)
    assert answers == [(3, 1, bytes([23, 2]) + (1234).to_bytes(2, "big"))]
    assert sim.plant.speed_setpoint_rpm == 1234


# -- mbpoll ----------------------------------------------------------------------------------

async def test_mbpoll_reads_and_writes(tcp_face: TcpFace, sim: Sim) -> None:
    """Mbpoll (libmodbus): a big-endian float, a word-swapped int32, a 16-bit write."""
    port = str(tcp_face[0].port)
    base = ("-m", "tcp", "-p", port, "-a", "1", "-0", "-1", "-o", "1")
    code, out = await mbpoll(*base, "-r", "100", "-t", "4:float", "-B", "127.0.0.1")
    assert code == 0, out
    assert float(mbpoll_values(out)[100]) == pytest.approx(sim.signal("motor_temp"), rel=1e-5)
    code, out = await mbpoll(*base, "-r", "404", "-t", "4:int", "127.0.0.1")  # CDAB default
    assert code == 0, out
    assert int(mbpoll_values(out)[404]) == round(sim.signal("motor_temp") * 100)
    code, out = await mbpoll(*base, "-r", "0", "-t", "3", "127.0.0.1")
    assert int(mbpoll_values(out)[0]) == round(sim.signal("tank_level") * 10)
    code, out = await mbpoll(*base, "-r", "200", "-t", "4", "127.0.0.1", "975")
    assert code == 0, out
    assert "Written 1 references" in out
    assert sim.plant.speed_setpoint_rpm == 975
    assert [(r.target, r.value) for r in sim.writes.query(face="modbus_tcp")] == [
        ("holding 200", 975)]

