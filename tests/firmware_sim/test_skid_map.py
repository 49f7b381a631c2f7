"""The register maps and word encoders, without a server."""

from __future__ import annotations

import math
import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import plcsim.skid_map as skid_map
from plcsim import Sim
from plcsim.modbus_server import ModbusDevice, decode, encode
from plcsim.registers import Table, WordOrder, from_words, to_words
from plcsim.skid_map import SKID_MAP, VIBRATION_MAP, MapEntry, skid_plc_map
from tests.firmware_sim.modbus_peer import decode as reference_decode

FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
           "int64": "q", "uint64": "Q", "float64": "d"}


@pytest.mark.parametrize(
    ("order", "words"),
    [
        (WordOrder.ABCD, [0x3F80, 0x0000]),
        (WordOrder.CDAB, [0x0000, 0x3F80]),
        (WordOrder.BADC, [0x803F, 0x0000]),
        (WordOrder.DCBA, [0x0000, 0x803F]),
    ],
)
def test_float_words_in_every_order(order: WordOrder, words: list[int]) -> None:
    """1.0 as float32 lands in the registers as each byte order lays it out."""
    assert to_words(1.0, "float32", order) == words
    assert from_words(words, "float32", order) == 1.0


@pytest.mark.parametrize(
    ("order", "words"),
    [
        (WordOrder.ABCD, [0x0102, 0x0304, 0x0506, 0x0708]),
        (WordOrder.CDAB, [0x0708, 0x0506, 0x0304, 0x0102]),
        (WordOrder.BADC, [0x0201, 0x0403, 0x0605, 0x0807]),
        (WordOrder.DCBA, [0x0807, 0x0605, 0x0403, 0x0201]),
    ],
)
def test_64_bit_orders(order: WordOrder, words: list[int]) -> None:
    """64-bit values: a word swap reverses all four registers (FACTS §3.3)."""
    assert to_words(0x0102030405060708, "uint64", order) == words


@given(data=st.data(), data_type=st.sampled_from(sorted(FORMATS)),
       order=st.sampled_from(list(WordOrder)))
def test_words_round_trip_and_match_the_reference(
    data: st.DataObject, data_type: str, order: WordOrder
) -> None:
    """to_words/from_words agree with each other and with the tests' own struct decoder."""
    fmt = FORMATS[data_type]
    if fmt in "fd":
        value: float = data.draw(st.floats(allow_nan=False, width=32 if fmt == "f" else 64))
    else:
        bits = struct.calcsize(fmt) * 8
        signed = fmt.islower()
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        value = data.draw(st.integers(low, high))
    words = to_words(value, data_type, order)
    assert from_words(words, data_type, order) == value
    assert reference_decode(words, fmt, order.value) == value


def test_words_refuse_what_does_not_fit() -> None:
    """Out-of-range integers and unknown types are ValueErrors."""
    with pytest.raises(ValueError, match="does not fit"):
        to_words(70000, "uint16")
    with pytest.raises(ValueError, match="unknown"):
        to_words(1, "int8")
    with pytest.raises(ValueError, match="needs 2 registers"):
        from_words([1], "float32")


def documented_rows(section: str) -> list[list[str]]:
    """The rows of one of skid_map's documentation tables."""
    doc = skid_map.__doc__ or ""
    lines = doc.split(section, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:  # after the header and its separator
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize(("section", "entries"),
                         [("Unit 1 - skid PLC", SKID_MAP),
                          ("Unit 2 - vibration module", VIBRATION_MAP)], ids=["unit1", "unit2"])
def test_documentation_table_is_the_map(section: str, entries: tuple[MapEntry, ...]) -> None:
    """Every documented row is an entry with that table, address range, type, order, access."""
    rows = documented_rows(section)
    assert len(rows) == len(entries)
    for row, entry in zip(rows, entries, strict=True):
        table, address, name, data_type, order, _unit, access, _notes = row
        first, _, last = address.partition("-")
        assert (table, name) == (entry.table.value, entry.name)
        assert (int(first), int(last or first)) == (entry.address, entry.end - 1), name
        assert re.split(r" x ", data_type)[0] == entry.data_type, name
        assert order == ("-" if entry.width == 1 or entry.count > 1 else entry.order.value), name
        assert access == ("w" if entry.writable else "r"), name


def test_map_sources_and_writes_are_real() -> None:
    """Sources are Sim.signal names (or the capture's), writes are plant inputs."""
    sim = Sim(seed=1)
    for entry in (*SKID_MAP, *VIBRATION_MAP):
        if not entry.source.startswith("@"):
            assert isinstance(sim.signal(entry.source), int | float), entry.name
    writable = {(e.table, e.address): e.write for e in SKID_MAP if e.writable}
    assert writable == {
        (Table.HOLDING, 200): "speed_setpoint_rpm", (Table.HOLDING, 201): "valve_position_pct",
        (Table.COIL, 0): "run", (Table.COIL, 1): "reset_trip",
    }
    assert not any(e.writable for e in VIBRATION_MAP)


def test_waveform_block_follows_the_capture_length() -> None:
    """The block spans the sensor's capture; one that cannot fit is refused."""
    block = next(e for e in skid_plc_map(8192) if e.name == "vib_de")
    assert (block.address, block.end) == (1000, 1000 + 8192)
    with pytest.raises(ValueError, match="does not fit"):
        skid_plc_map(65000)


def test_entries_are_validated() -> None:
    """A bool outside a bit table, a register type in one, or a range past 65535."""
    with pytest.raises(ValueError, match="table"):
        MapEntry("x", Table.HOLDING, 0, "bool", "run")
    with pytest.raises(ValueError, match="table"):
        MapEntry("x", Table.COIL, 0, "uint16", "run")
    with pytest.raises(ValueError, match="outside"):
        MapEntry("x", Table.HOLDING, 65535, "uint32", "counter")
    with pytest.raises(ValueError, match="overlap"):
        ModbusDevice(Sim(), 1, (MapEntry("a", Table.HOLDING, 0, "uint32", "counter"),
                                MapEntry("b", Table.HOLDING, 1, "uint16", "speed")))


def entry(name: str) -> MapEntry:
    return next(e for e in (*SKID_MAP, *VIBRATION_MAP) if e.name == name)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("tank_level", 50.0, [500]),
        ("tank_level", -3.0, [0]),  # a sensor saturates
        ("tank_level", 1e9, [65535]),
        ("tank_level", math.nan, [0]),
        ("speed", -40000.0, [0x8000]),
        ("current", 11.004, [1100]),
        ("motor_temp_i32", -12.5, to_words(-1250, "int32", WordOrder.CDAB)),
        ("capture_counter", 65537.0, [1]),  # unit 2's uint16 counter wraps
        ("counter", 2.0**32 + 5, [0, 5]),
    ],
)
def test_encode_scales_saturates_and_wraps(name: str, value: float, words: list[int]) -> None:
    """Integers are round(value / scale), saturated, except counters, which wrap."""
    candidates = [e for e in (*SKID_MAP, *VIBRATION_MAP) if e.name == name]
    chosen = candidates[-1] if name == "capture_counter" else candidates[0]
    assert encode(chosen, value) == words


def test_decode_writes_in_engineering_units() -> None:
    """A written count becomes the plant value: 505 at 0.1 % is exactly 50.5."""
    assert decode(entry("valve_position"), [505]) == 50.5
    assert decode(entry("speed_setpoint"), [725]) == 725
    assert decode(entry("run"), [True]) is True


def test_covering_finds_whole_runs_only() -> None:
    """covering() returns the entries of a fully mapped range, else None."""
    device = ModbusDevice(Sim(), 1, SKID_MAP)
    names = [e.name for e in device.covering(Table.HOLDING, 400, 10) or []]
    assert names == ["speed", "current", "pressure", "motor_temp_i32", "flow_f64"]
    assert device.covering(Table.HOLDING, 401, 2) is not None
    assert device.covering(Table.HOLDING, 400, 11) is None
    assert device.covering(Table.HOLDING, 1, 2) is None
    assert device.covering(Table.INPUT, 99, 1) is None
    assert device.target(Table.HOLDING, 200) == "holding 200"
    assert ModbusDevice(Sim(), 2, VIBRATION_MAP).target(Table.HOLDING, 0, 2) == (
        "unit 2 holding 0-1")
