"""Record parsers for serial frames: pure, never raising for anything a device sends.

A frame is either a record (one value or one error per configured point) or rejected
as a whole with an error code:

- ``undecodable``: the bytes are not valid in the configured encoding;
- ``no_match``: the text does not match ``pattern`` (``re.fullmatch``: the whole line);
- ``bad_checksum`` / ``bad_length``: a binary frame failed verification.

A record whose frame is fine can still carry per-point errors (``bad_value``,
``missing_field``, ``out_of_range``, ``not_finite``); the other points keep their values.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce

from edgetwin.core.types import Value
from edgetwin.sources.serial.config import (
    Checksum,
    LayoutField,
    SerialConfig,
    SerialPoint,
    checksum_end,
    checksum_offset,
)

UNDECODABLE = "undecodable"
NO_MATCH = "no_match"
BAD_CHECKSUM = "bad_checksum"
BAD_LENGTH = "bad_length"

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "f", "n"})


@dataclass(frozen=True, slots=True)
class PointError:
    """One point of an otherwise good record has no usable value."""

    point: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Record:
    """A frame that parsed: values by point id, and the points that failed."""

    values: Mapping[str, Value]
    errors: Sequence[PointError] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame that is garbage as a whole: dropped and counted."""

    code: str
    reason: str


ParseResult = Record | Rejected


def checksum(kind: str, data: bytes) -> bytes:
    """The checksum bytes of ``data`` as they appear in a frame."""
    if kind == "sum8":
        return bytes([sum(data) & 0xFF])
    if kind == "xor8":
        return bytes([reduce(lambda acc, b: acc ^ b, data, 0)])
    if kind == "crc16_modbus":
        crc = 0xFFFF
        for byte in data:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        return crc.to_bytes(2, "little")  # Modbus RTU sends the low byte first
    raise ValueError(f"unknown checksum {kind!r}")


def _preview(frame: bytes, limit: int = 40) -> str:
    text = repr(frame[:limit])
    return text + ("..." if len(frame) > limit else "")


def _convert(point: SerialPoint, raw: str | int | float) -> Value | PointError:
    """``raw`` (a matched group or a scaled layout value) as the point's type."""
    kind = point.type
    try:
        if kind == "string":
            return str(raw)
        if kind == "bool":
            if isinstance(raw, str):
                word = raw.strip().lower()
                if word in _TRUE or word in _FALSE:
                    return word in _TRUE
                return PointError(point.id, "bad_value", f"{raw!r} is not a boolean")
            return raw != 0
        if kind in _INT_RANGES:
            number = int(raw.strip(), 10) if isinstance(raw, str) else raw
            if isinstance(number, float):
                if not number.is_integer():
                    return PointError(point.id, "bad_value", f"{raw!r} is not an integer")
                number = int(number)
            low, high = _INT_RANGES[kind]
            if not low <= number <= high:
                return PointError(point.id, "out_of_range", f"{raw!r} is outside {kind}")
            return number
        value = float(raw)
    except (ValueError, OverflowError):
        return PointError(point.id, "bad_value", f"{raw!r} is not a {kind}")
    if not math.isfinite(value):
        return PointError(point.id, "not_finite", f"{raw!r} is not a finite number")
    if kind == "float32":
        try:
            (value,) = struct.unpack("<f", struct.pack("<f", value))  # as a device's float32
        except OverflowError:
            return PointError(point.id, "out_of_range", f"{raw!r} is outside float32")
    return value


def _record(pairs: Sequence[tuple[SerialPoint, str | int | float | None]]) -> Record:
    values: dict[str, Value] = {}
    errors: list[PointError] = []
    for point, raw in pairs:
        if raw is None:
            errors.append(PointError(point.id, "missing_field", f"group {point.field!r} is empty"))
            continue
        converted = _convert(point, raw)
        if isinstance(converted, PointError):
            errors.append(converted)
        else:
            values[point.id] = converted
    return Record(values, tuple(errors))


class LineParser:
    """Text records: the whole line must match ``pattern``; named groups give the values.

    A CR right before the terminator is dropped when the terminator is LF alone, so the
    common CR LF devices work with the default terminator.
    """

    def __init__(self, config: SerialConfig) -> None:
        if config.pattern is None:
            raise ValueError("LineParser needs a config with a pattern")
        self._pattern = re.compile(config.pattern)
        self._encoding = config.encoding
        self._strip_cr = config.terminator == "\n"
        self._points = config.points

    def parse(self, frame: bytes) -> ParseResult:
        """The record in ``frame`` (without its terminator), or why it was rejected."""
        if self._strip_cr and frame.endswith(b"\r"):
            frame = frame[:-1]
        try:
            text = frame.decode(self._encoding)
        except UnicodeDecodeError as err:
            return Rejected(UNDECODABLE, f"not {self._encoding} at byte {err.start}: "
                                         f"{_preview(frame)}")
        match = self._pattern.fullmatch(text)
        if match is None:
            return Rejected(NO_MATCH, f"line does not match pattern: {_preview(frame)}")
        return _record([(p, match.group(p.field)) for p in self._points])


class BinaryParser:
    """Fixed-length binary frames: verify the checksum, then decode the layout fields."""

    def __init__(self, config: SerialConfig) -> None:
        if config.frame_length is None or not config.layout:
            raise ValueError("BinaryParser needs a config with frame_length and layout")
        self._length = config.frame_length
        self._sync = config.sync
        self._checksum = config.checksum
        fields = {item.name: item for item in config.layout}
        self._slots = [(point, fields[point.field]) for point in config.points]

    def parse(self, frame: bytes) -> ParseResult:
        """The record in ``frame``, or why it was rejected."""
        if len(frame) != self._length:
            return Rejected(BAD_LENGTH, f"{len(frame)} bytes, expected {self._length}")
        if self._checksum is not None:
            expected, found = _verify(self._checksum, frame)
            if expected != found:
                return Rejected(BAD_CHECKSUM, f"{self._checksum.type} {found.hex()} != "
                                              f"computed {expected.hex()}: {frame.hex()}")
        pairs: list[tuple[SerialPoint, str | int | float | None]] = []
        for point, item in self._slots:
            (raw,) = struct.unpack_from(item.struct_format, frame, item.offset)
            pairs.append((point, raw * item.scale if item.scale != 1.0 else raw))
        return _record(pairs)


def _verify(spec: Checksum, frame: bytes) -> tuple[bytes, bytes]:
    """(computed, found) checksum bytes of ``frame``."""
    offset = checksum_offset(spec, len(frame))
    computed = checksum(spec.type, frame[spec.start : checksum_end(spec, len(frame))])
    return computed, frame[offset : offset + spec.width]


def encode_frame(config: SerialConfig, raw: Mapping[str, int | float]) -> bytes:
    """A binary frame holding the raw (unscaled) layout values; unset bytes are zero.

    The inverse of ``BinaryParser`` for tests and simulators: sync byte, fields, checksum.

    Raises:
        ValueError: a field is missing, or ``struct.error`` for a value out of its range.
    """
    if config.frame_length is None or not config.layout:
        raise ValueError("encode_frame needs a config with frame_length and layout")
    frame = bytearray(config.frame_length)
    if config.sync is not None:
        frame[0] = config.sync
    for item in config.layout:
        _pack(frame, item, raw[item.name])
    if config.checksum is not None:
        spec = config.checksum
        offset = checksum_offset(spec, len(frame))
        frame[offset : offset + spec.width] = checksum(
            spec.type, bytes(frame[spec.start : checksum_end(spec, len(frame))])
        )
    return bytes(frame)


def _pack(frame: bytearray, item: LayoutField, value: int | float) -> None:
    struct.pack_into(item.struct_format, frame, item.offset, value)


def parser_for(config: SerialConfig) -> LineParser | BinaryParser:
    """The parser the config's protocol needs."""
    return LineParser(config) if config.protocol == "line" else BinaryParser(config)
