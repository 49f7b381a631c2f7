"""Record parsers: typed values from regex groups and binary layouts; garbage never raises."""

from __future__ import annotations

import itertools
import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.sources.serial.config import SerialConfig
from edgetwin.sources.serial.framing import FixedSplitter, LineSplitter
from edgetwin.sources.serial.parse import (
    BAD_CHECKSUM,
    NO_MATCH,
    UNDECODABLE,
    BinaryParser,
    LineParser,
    PointError,
    Record,
    Rejected,
    checksum,
    encode_frame,
)

SCALE_PATTERN = r"(?P<status>ST|US|OL),GS,(?P<weight>[+-]\d{4}\.\d{3}) kg"


def scale_config(**extra: Any) -> SerialConfig:
    return SerialConfig.model_validate({
        "name": "scale1", "type": "serial", "port": "/dev/ttyUSB0", "pattern": SCALE_PATTERN,
        "points": [
            {"id": "tank1/weight", "field": "weight", "type": "float64", "unit": "kg"},
            {"id": "tank1/weight_status", "field": "status", "type": "string"},
        ],
        **extra,
    })


LAYOUT = [
    {"name": "a", "offset": 1, "type": "int8"},
    {"name": "b", "offset": 2, "type": "uint8"},
    {"name": "c", "offset": 3, "type": "int16", "byte_order": "little"},
    {"name": "d", "offset": 5, "type": "uint16"},
    {"name": "e", "offset": 7, "type": "int32"},
    {"name": "f", "offset": 11, "type": "uint32", "byte_order": "little"},
    {"name": "g", "offset": 15, "type": "float32", "scale": 1.0},
]


def binary_config(kind: str | None = "crc16_modbus", sync: int | None = 0xAA) -> SerialConfig:
    return SerialConfig.model_validate({
        "name": "bin1", "type": "serial", "port": "/dev/ttyUSB1", "protocol": "fixed",
        "frame_length": 21, "sync": sync, "layout": LAYOUT,
        "checksum": None if kind is None else {"type": kind, "start": 1},
        "points": [{"id": f"m1/{f['name']}", "field": f["name"],
                    "type": "float64" if f["type"] == "float32" else "int64"} for f in LAYOUT],
    })


def test_scale_record_parses_to_typed_values() -> None:
    """A plcsim record gives a float weight and a string status; CR before LF is dropped."""
    result = LineParser(scale_config()).parse(b"ST,GS,+1000.026 kg\r")
    assert result == Record({"tank1/weight": 1000.026, "tank1/weight_status": "ST"}, ())


@pytest.mark.parametrize(("frame", "code"), [
    (b"ST,GS,+1000.026 kg trailing", NO_MATCH),
    (b"\x93\x01ST,GS,+1000.026 kg", UNDECODABLE),
    (b"", NO_MATCH),
])
def test_garbage_lines_are_rejected_with_a_code(frame: bytes, code: str) -> None:
    """A line that does not match the whole pattern, or is not ASCII, is rejected."""
    result = LineParser(scale_config()).parse(frame)
    assert isinstance(result, Rejected) and result.code == code


def test_a_bad_value_fails_only_its_point() -> None:
    """An integer group holding a float, a bool word, or NaN fails that point alone."""
    config = SerialConfig.model_validate({
        "name": "s", "type": "serial", "port": "/dev/x",
        "pattern": r"(?P<n>\S+) (?P<b>\S+) (?P<x>\S+)(?: (?P<opt>\d+))?",
        "points": [{"id": "a/n", "field": "n", "type": "int32"},
                   {"id": "a/b", "field": "b", "type": "bool"},
                   {"id": "a/x", "field": "x", "type": "float32"},
                   {"id": "a/opt", "field": "opt", "type": "int64"}],
    })
    parser = LineParser(config)
    assert parser.parse(b"-12 on 0.5 7") == Record({"a/n": -12, "a/b": True, "a/x": 0.5,
                                                    "a/opt": 7})
    result = parser.parse(b"1.5 maybe nan")
    assert isinstance(result, Record)
    assert result.values == {}
    assert [(e.point, e.code) for e in result.errors] == [
        ("a/n", "bad_value"), ("a/b", "bad_value"), ("a/x", "not_finite"),
        ("a/opt", "missing_field"),
    ]
    big = parser.parse(b"99999999999 0 1e39")
    assert isinstance(big, Record)
    assert big.errors == (
        PointError("a/n", "out_of_range", "'99999999999' is outside int32"),
        PointError("a/x", "out_of_range", "'1e39' is outside float32"),
        PointError("a/opt", "missing_field", "group 'opt' is empty"),
    )


def test_checksums_match_known_values() -> None:
    """CRC-16/MODBUS of "123456789" is 0x4B37 (sent 37 4B); sum8 and xor8 are plain."""
    assert checksum("crc16_modbus", b"123456789") == b"\x37\x4b"
    assert checksum("sum8", b"\xff\x02") == b"\x01"
    assert checksum("xor8", b"\x0f\xf0\x01") == b"\xfe"


RAW_VALUES = st.fixed_dictionaries({
    "a": st.integers(-128, 127), "b": st.integers(0, 255), "c": st.integers(-(2**15), 2**15 - 1),
    "d": st.integers(0, 2**16 - 1), "e": st.integers(-(2**31), 2**31 - 1),
    "f": st.integers(0, 2**32 - 1),
    "g": st.floats(width=32, allow_nan=False, allow_infinity=False),
})


@given(raw=RAW_VALUES, kind=st.sampled_from(["sum8", "xor8", "crc16_modbus"]))
def test_binary_layout_round_trips_with_checksum(raw: dict[str, Any], kind: str) -> None:
    """encode_frame -> BinaryParser gives back every field, for every checksum."""
    config = binary_config(kind)
    frame = encode_frame(config, raw)
    result = BinaryParser(config).parse(frame)
    assert isinstance(result, Record)
    assert result.errors == ()
    assert result.values == {f"m1/{name}": value for name, value in raw.items()}


@given(raw=RAW_VALUES, kind=st.sampled_from(["sum8", "xor8", "crc16_modbus"]),
       position=st.integers(1, 20), flip=st.integers(1, 255))
def test_a_corrupted_byte_fails_the_checksum(
    raw: dict[str, Any], kind: str, position: int, flip: int
) -> None:
    """Any single corrupted byte in the checked range or the checksum is caught."""
    config = binary_config(kind)
    frame = bytearray(encode_frame(config, raw))
    frame[position] ^= flip
    result = BinaryParser(config).parse(bytes(frame))
    assert isinstance(result, Rejected) and result.code == BAD_CHECKSUM


def test_scaled_field_becomes_engineering_value() -> None:
    """Raw x scale, e.g. tenths of a degree."""
    config = SerialConfig.model_validate({
        "name": "t", "type": "serial", "port": "/dev/x", "protocol": "fixed", "frame_length": 3,
        "layout": [{"name": "t", "offset": 0, "type": "int16", "scale": 0.1}],
        "checksum": {"type": "sum8"},
        "points": [{"id": "oven/temp", "field": "t"}],
    })
    frame = struct.pack(">h", -253) + checksum("sum8", struct.pack(">h", -253))
    result = BinaryParser(config).parse(frame)
    assert isinstance(result, Record)
    temp = result.values["oven/temp"]
    assert isinstance(temp, float) and math.isclose(temp, -25.3)


def valid_record(record: Record) -> bool:
    weight = record.values.get("tank1/weight")
    status = record.values.get("tank1/weight_status")
    return (not record.errors and isinstance(weight, float) and abs(weight) < 10_000
            and status in ("ST", "US", "OL"))


WEIGHTS = st.floats(-9999.999, 9999.999, allow_nan=False)


@given(weights=st.lists(WEIGHTS, max_size=8), noise=st.lists(st.binary(max_size=40), max_size=8),
       cuts=st.lists(st.integers(0, 600), max_size=20))
def test_garbage_never_crashes_nor_yields_an_invalid_record(
    weights: list[float], noise: list[bytes], cuts: list[int]
) -> None:
    """Records interleaved with random bytes: everything parsed is valid; clean lines arrive."""
    parts = []
    for index, weight in enumerate(weights):
        if index < len(noise):
            parts.append(noise[index] + b"\r\n")
        parts.append(f"ST,GS,{weight:+09.3f} kg\r\n".encode())
    stream = b"".join(parts)
    splitter = LineSplitter(b"\n", 64)
    parser = LineParser(scale_config())
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    records = []
    for start, end in itertools.pairwise(points):
        for frame in splitter.feed(stream[start:end]):
            result = parser.parse(frame)
            if isinstance(result, Record):
                records.append(result)
    assert all(valid_record(r) for r in records)
    got = [r.values["tank1/weight"] for r in records]
    for weight in (round(w, 3) for w in weights):  # the clean records arrive, in order
        assert weight in got


@given(stream=st.binary(max_size=400))
def test_binary_garbage_never_yields_an_unchecked_frame(stream: bytes) -> None:
    """Random bytes through splitter and parser: every record passed its checksum."""
    config = binary_config("crc16_modbus")
    parser = BinaryParser(config)
    for frame in FixedSplitter(21, 0xAA).feed(stream):
        result = parser.parse(frame)
        if isinstance(result, Record):
            assert checksum("crc16_modbus", frame[1:19]) == frame[19:21]
