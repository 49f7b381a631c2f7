"""What the Modbus TCP and RTU faces share, checked on both with real pymodbus clients.

The Sim runs in the test's loop and only moves when a test steps it, so every value read
is compared exactly with ``sim.signal`` (or the vibration capture) at that moment.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymodbus.exceptions import ModbusException

from plcsim import Sim
from plcsim.plant import LOW_LEVEL_PCT
from tests.firmware_sim.conftest import Peer
from tests.firmware_sim.modbus_peer import (
    CAPTURE_SAMPLES,
    UNIT1_COILS,
    UNIT1_DISCRETES,
    UNIT1_VALUES,
    decode,
    expected_value,
    read_all,
    step,
    waveform,
)

pytestmark = pytest.mark.sim


async def read(peer: Peer, kind: str, address: int, count: int, unit: int = 1) -> list[int]:
    method = (peer.client.read_holding_registers if kind == "holding"
              else peer.client.read_input_registers)
    response = await method(address, count=count, device_id=unit)
    assert not response.isError(), response
    return list(response.registers)


async def exception_code(peer: Peer, function: str, *args: object, unit: int = 1,
                         **kwargs: object) -> int:
    response = await getattr(peer.client, function)(*args, device_id=unit, **kwargs)
    assert response.isError(), response
    return int(response.exception_code)


def moving(sim: Sim) -> None:
    """Put the plant mid-ramp so no value sits on a round default."""
    sim.plant.speed_setpoint_rpm = 1000.0
    step(sim, 0.7)


# -- reads ---------------------------------------------------------------------------------

async def test_every_value_decodes_to_the_signal(peer: Peer, sim: Sim) -> None:
    """Each documented value, in its type and byte order, equals sim.signal now."""
    moving(sim)
    for item in UNIT1_VALUES:
        words = await read(peer, item.kind, item.address, item.registers)
        assert decode(words, item.fmt, item.order) == expected_value(sim, item), item
    assert 1000 < sim.signal("speed") < 1450  # really mid-ramp


async def test_pymodbus_decoders_agree_on_word_orders(peer: Peer, sim: Sim) -> None:
    """A second, independent decoder (pymodbus's client helpers) reads ABCD and CDAB."""
    moving(sim)
    client, types = peer.client, peer.client.DATATYPE
    temp = client.convert_from_registers(await read(peer, "holding", 100, 2), types.FLOAT32)
    flow = client.convert_from_registers(await read(peer, "holding", 300, 2), types.FLOAT32,
                                         word_order="little")
    centi = client.convert_from_registers(await read(peer, "holding", 404, 2), types.INT32,
                                          word_order="little")
    double = client.convert_from_registers(await read(peer, "holding", 406, 4), types.FLOAT64)
    assert temp == pytest.approx(sim.signal("motor_temp"), rel=1e-6)
    assert flow == pytest.approx(sim.signal("flow"), rel=1e-6)
    assert centi == round(sim.signal("motor_temp") * 100)
    assert double == sim.signal("flow")


async def test_one_read_spans_adjacent_values(peer: Peer, sim: Sim) -> None:
    """Holding 400-409 in one request is speed, current, pressure, temp, flow back to back."""
    moving(sim)
    words = await read(peer, "holding", 400, 10)
    singles = [await read(peer, "holding", a, n) for a, n in ((400, 1), (401, 1), (402, 2),
                                                                (404, 2), (406, 4))]
    assert words == [w for chunk in singles for w in chunk]
    assert await read(peer, "holding", 101, 1) == words[:0] + (await read(
        peer, "holding", 100, 2))[1:]  # half a float is a legal read


async def test_bits(peer: Peer, sim: Sim) -> None:
    """Coils and discrete inputs are the PLC's bits; reset_trip reads false."""
    sim.plant.tank_level_pct = 20.0  # below the 25 % alarm
    sim.plant.tripped = True
    coils = await peer.client.read_coils(0, count=2, device_id=1)
    discretes = await peer.client.read_discrete_inputs(0, count=3, device_id=1)
    assert coils.bits[:2] == [bool(sim.signal(UNIT1_COILS[0])), False]
    assert discretes.bits[:3] == [bool(sim.signal(UNIT1_DISCRETES[i])) for i in range(3)]
    assert discretes.bits[:3] == [True, True, False]


@pytest.mark.parametrize(
    ("function", "address", "count"),
    [
        ("read_holding_registers", 50, 1),  # between mapped values
        ("read_holding_registers", 0, 3),  # runs past the counter
        ("read_holding_registers", 102, 2),  # right after motor_temp
        ("read_holding_registers", 5096, 1),  # after the vibration block
        ("read_holding_registers", 5000, 125),  # runs past it
        ("read_holding_registers", 65535, 1),
        ("read_input_registers", 1, 1),
        ("read_input_registers", 100, 3),
        ("read_coils", 2, 1),
        ("read_coils", 0, 3),  # runs into unmapped bits
        ("read_coils", 40, 1),
        ("read_discrete_inputs", 3, 1),
        ("read_discrete_inputs", 0, 16),
    ],
)
async def test_unmapped_address_answers_exception_2(
    peer: Peer, function: str, address: int, count: int
) -> None:
    """Anything outside the register map is Illegal Data Address, bits included."""
    assert await exception_code(peer, function, address, count=count) == 2


async def test_unit_2_serves_the_capture(peer: Peer, sim: Sim) -> None:
    """Unit 2: counter at holding 0, samples from 1, description in input registers."""
    head = await read(peer, "holding", 0, 125, unit=2)
    assert head[0] == sim.vibration.capture_counter % 65536
    assert np.array_equal(np.array(head[1:], dtype=np.uint16).view(np.int16),
                          waveform(sim)[:124])
    info = await read(peer, "input", 0, 4, unit=2)
    assert info == [CAPTURE_SAMPLES, 0, 12000, 1000]
    assert await exception_code(peer, "read_holding_registers", 4097, count=1, unit=2) == 2
    assert await exception_code(peer, "read_input_registers", 4, count=1, unit=2) == 2


# -- the waveform ----------------------------------------------------------------------------

async def test_waveform_block_is_the_capture(peer: Peer, sim: Sim) -> None:
    """33 reads give the whole capture as int16 counts of 0.001 g; a new one moves the counter."""
    described = await read(peer, "holding", 900, 6)
    assert decode(described[0:2], "I", "ABCD") == sim.vibration.capture_counter
    assert decode(described[2:4], "f", "ABCD") == 12000.0
    assert described[4:] == [CAPTURE_SAMPLES, 1000]
    first_counter = sim.vibration.capture_counter
    block = await read_all(peer.client, 1000, CAPTURE_SAMPLES, device_id=1)
    assert len(range(1000, 1000 + CAPTURE_SAMPLES, 125)) == 33
    assert np.array_equal(np.array(block, dtype=np.uint16).view(np.int16), waveform(sim))
    assert np.ptp(waveform(sim)) > 10  # a real signal, not zeros

    step(sim, sim.vibration.capture_interval_s)
    counter = decode(await read(peer, "holding", 900, 2), "I", "ABCD")
    assert counter == first_counter + 1 == sim.vibration.capture_counter
    again = await read_all(peer.client, 1000, CAPTURE_SAMPLES, device_id=1)
    assert again != block
    assert np.array_equal(np.array(again, dtype=np.uint16).view(np.int16), waveform(sim))
    unit2 = await read_all(peer.client, 1, CAPTURE_SAMPLES, device_id=2)
    assert unit2 == again
    assert (await read(peer, "holding", 0, 1, unit=2))[0] == counter


async def test_waveform_rounds_and_clips(peer: Peer, sim: Sim) -> None:
    """Counts are rint(g / 0.001), clipped to int16 (+-32.767 g)."""
    capture = np.zeros(CAPTURE_SAMPLES)
    capture[:6] = [0.0014, -0.0016, 40.0, -40.0, 32.767, 1e9]
    sim.vibration.capture = capture
    sim.vibration.capture_counter += 1
    words = await read(peer, "holding", 1000, 6)
    assert np.array(words, dtype=np.uint16).view(np.int16).tolist() == [
        1, -2, 32767, -32768, 32767, 32767]


# -- writes ----------------------------------------------------------------------------------

async def test_accepted_setpoints_change_the_plant(peer: Peer, sim: Sim) -> None:
    """speed_setpoint and valve_position writes reach the PLC, the log and the physics."""
    assert not (await peer.client.write_register(200, 900, device_id=1)).isError()
    assert not (await peer.client.write_register(201, 505, device_id=1)).isError()
    assert sim.plant.speed_setpoint_rpm == 900
    assert sim.plant.valve_position_pct == 50.5
    assert await read(peer, "holding", 200, 2) == [900, 505]
    records = sim.writes.query(face=peer.name)
    assert [(r.target, r.name, r.value, r.accepted) for r in records] == [
        ("holding 200", "speed_setpoint_rpm", 900, True),
        ("holding 201", "valve_position_pct", 50.5, True),
    ]
    step(sim, 1.0)
    assert (await read(peer, "holding", 400, 1))[0] == round(sim.signal("speed")) < 1450


async def test_multiple_register_write_applies_each_value(peer: Peer, sim: Sim) -> None:
    """FC16 over both setpoints: each value is decided alone; one refusal answers 4."""
    assert not (await peer.client.write_registers(200, [1200, 300], device_id=1)).isError()
    assert (sim.plant.speed_setpoint_rpm, sim.plant.valve_position_pct) == (1200, 30.0)
    code = await exception_code(peer, "write_registers", 200, [1100, 2000])
    assert code == 4
    assert (sim.plant.speed_setpoint_rpm, sim.plant.valve_position_pct) == (1100, 30.0)
    last = sim.writes.query(face=peer.name)[-2:]
    assert [(r.name, r.accepted) for r in last] == [("speed_setpoint_rpm", True),
                                                    ("valve_position_pct", False)]


async def test_write_refused_by_the_plc_answers_exception_4(peer: Peer, sim: Sim) -> None:
    """run=true below the low level: the PLC interlock refuses; logged with its reason."""
    assert not (await peer.client.write_coil(0, False, device_id=1)).isError()
    sim.plant.tank_level_pct = LOW_LEVEL_PCT - 5
    assert await exception_code(peer, "write_coil", 0, True) == 4
    assert sim.plant.run is False
    refused = sim.writes.query(face=peer.name, name="run", accepted=False)
    assert len(refused) == 1
    assert refused[0].target == "coil 0"
    assert refused[0].value is True
    assert "interlock" in (refused[0].reason or "")
    assert await exception_code(peer, "write_register", 200, 2000) == 4  # above 1800 rpm
    assert sim.plant.speed_setpoint_rpm == 1450


async def test_write_to_read_only_or_unmapped_answers_exception_2(peer: Peer, sim: Sim) -> None:
    """Read-only values and unmapped addresses refuse writes with 2, logged as refused."""
    assert await exception_code(peer, "write_register", 0, 7) == 2  # counter
    assert await exception_code(peer, "write_registers", 100, [1, 2]) == 2  # motor_temp
    assert await exception_code(peer, "write_register", 50, 1) == 2  # nothing there
    assert await exception_code(peer, "write_coil", 5, True) == 2
    assert await exception_code(peer, "write_register", 0, 1, unit=2) == 2  # vib counter
    refused = sim.writes.query(face=peer.name)
    assert [(r.target, r.name, r.value, r.accepted) for r in refused] == [
        ("holding 0", "", 7, False),
        ("holding 100-101", "", [1, 2], False),
        ("holding 50", "", 1, False),
        ("coil 5", "", True, False),
        ("unit 2 holding 0", "", 1, False),
    ]
    assert refused[0].reason == "read-only: counter"
    assert refused[2].reason == "no such address"
    assert sim.plant.counter == 1


async def test_reset_trip_push_button(peer: Peer, sim: Sim) -> None:
    """Coil 1 resets a trip once the motor cooled; false does nothing; it reads false."""
    sim.plant.tripped, sim.plant.trip_reason, sim.plant.run = True, "test", False
    sim.plant.motor_temp_c = 90.0
    assert await exception_code(peer, "write_coil", 1, True) == 4  # still too hot
    assert sim.plant.tripped
    sim.plant.motor_temp_c = 70.0
    assert not (await peer.client.write_coil(1, False, device_id=1)).isError()
    assert sim.plant.tripped
    response = await peer.client.write_coil(1, True, device_id=1)
    assert not response.isError()
    assert response.bits[0] is True  # the echo of the request
    assert not sim.plant.tripped
    assert (await peer.client.read_coils(1, count=1, device_id=1)).bits[0] is False
    assert [(r.value, r.accepted) for r in sim.writes.query(name="reset_trip")] == [
        (True, False), (False, True), (True, True)]


# -- faults ----------------------------------------------------------------------------------

async def test_dropout_times_out_then_recovers(peer: Peer, sim: Sim) -> None:
    """No answer at all during a dropout of this face; another face's dropout is harmless."""
    other = "modbus_rtu" if peer.name == "modbus_tcp" else "modbus_tcp"
    elsewhere = sim.faults.add("dropout", other)
    assert await read(peer, "holding", 0, 2) == [0, 1]
    sim.faults.clear(elsewhere.id)
    fault = sim.faults.add("dropout", peer.name)
    started = time.monotonic()
    with pytest.raises(ModbusException):
        await peer.client.read_holding_registers(0, count=2, device_id=1)
    assert time.monotonic() - started >= 0.25  # the client's 0.3 s timeout
    sim.faults.clear(fault.id)
    client = peer.new_client()
    try:
        assert await client.connect()
        response = await client.read_holding_registers(0, count=2, device_id=1)
        assert response.registers == [0, 1]
    finally:
        client.close()


async def test_latency_delays_every_answer(peer: Peer, sim: Sim) -> None:
    """A latency fault adds at least its delay to each answer, errors included."""
    client = peer.new_client(timeout_s=2.0)
    assert await client.connect()
    try:
        started = time.monotonic()
        await client.read_holding_registers(0, count=2, device_id=1)
        quick = time.monotonic() - started
        sim.faults.add("latency", peer.name, delay_s=0.25)
        for address, count in ((0, 2), (50, 1)):
            started = time.monotonic()
            response = await client.read_holding_registers(address, count=count, device_id=1)
            assert time.monotonic() - started >= 0.25 > quick
        assert response.exception_code == 2
    finally:
        client.close()


async def test_exception_fault(peer: Peer, sim: Sim) -> None:
    """An exception fault answers its code, for every address or only for its own."""
    fault = sim.faults.add("exception", peer.name, code=6)
    assert await exception_code(peer, "read_holding_registers", 0, count=2) == 6
    assert await exception_code(peer, "write_register", 200, 1000) == 6
    assert sim.plant.speed_setpoint_rpm == 1450  # the write never happened
    sim.faults.clear(fault.id)
    sim.faults.add("exception", peer.name, code=4, address=101)
    assert await exception_code(peer, "read_holding_registers", 100, count=2) == 4
    assert await read(peer, "holding", 0, 2) == [0, 1]


async def test_reboot_silences_then_counter_restarts(peer: Peer, sim: Sim) -> None:
    """During a reboot nothing answers; after it the counter has restarted from 0."""
    step(sim, 2.0)
    assert decode(await read(peer, "holding", 0, 2), "I", "ABCD") == 21
    sim.faults.add("reboot", duration_s=1.0)
    client = peer.new_client()
    try:
        assert await client.connect()  # TCP accepts; RTU is just a line
        with pytest.raises(ModbusException):
            await client.read_holding_registers(0, count=2, device_id=1)
    finally:
        client.close()
    step(sim, 1.0)  # plant time: the reboot is over
    assert not sim.rebooting
    fresh = peer.new_client()
    try:
        assert await fresh.connect()
        words = (await fresh.read_holding_registers(0, count=2, device_id=1)).registers
    finally:
        fresh.close()
    assert decode(words, "I", "ABCD") == sim.plant.counter == 10
    assert sim.plant.run is False  # a reboot stops the pump
