"""Serial line-protocol source configuration: every check, no I/O."""

from __future__ import annotations

import codecs
import re
import struct
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edgetwin.config.model import Model, PointConfig, SourceConfig

FieldType = Literal["int8", "uint8", "int16", "uint16", "int32", "uint32", "float32"]
STRUCT_CODES: dict[str, str] = {
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
    "int32": "i", "uint32": "I", "float32": "f",
}
ChecksumKind = Literal["sum8", "xor8", "crc16_modbus"]
CHECKSUM_WIDTH: dict[str, int] = {"sum8": 1, "xor8": 1, "crc16_modbus": 2}


class SerialPoint(PointConfig):
    """One value of a parsed record: a named group of ``pattern`` or a ``layout`` field."""

    field: str = Field(min_length=1)
    type: Literal["float32", "float64", "int32", "int64", "bool", "string"] = "float64"


class LayoutField(Model):
    """One value at a fixed place in a binary frame; engineering value = raw x scale."""

    name: str = Field(min_length=1)
    offset: int = Field(ge=0)  # bytes from the start of the frame (the sync byte is byte 0)
    type: FieldType
    byte_order: Literal["big", "little"] = "big"
    scale: float = 1.0

    @property
    def size(self) -> int:
        """Bytes the field takes."""
        return struct.calcsize(STRUCT_CODES[self.type])

    @property
    def struct_format(self) -> str:
        """The ``struct`` format of the field, with its byte order."""
        return (">" if self.byte_order == "big" else "<") + STRUCT_CODES[self.type]


class Checksum(Model):
    """A checksum over ``start``..``end`` (exclusive) stored at ``offset`` of each frame.

    ``end`` defaults to ``offset`` and ``offset`` to the last bytes of the frame.
    crc16_modbus is stored low byte first, as Modbus RTU sends it.
    """

    type: ChecksumKind
    start: int = Field(default=0, ge=0)
    end: int | None = Field(default=None, ge=1)
    offset: int | None = Field(default=None, ge=0)

    @property
    def width(self) -> int:
        """Bytes the checksum takes in the frame."""
        return CHECKSUM_WIDTH[self.type]


class SerialConfig(SourceConfig):
    """A device that streams records: text lines parsed by a regex, or fixed binary frames.

    Checks run in field order so each problem is reported at its own key; the points are
    checked against the pattern or layout last (pydantic validates ``points`` first).
    """

    type: Literal["serial"]
    port: str = Field(min_length=1)  # prefer a stable /dev/serial/by-id/... name
    baudrate: int = Field(default=9600, ge=300, le=921600)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["none", "even", "odd", "mark", "space"] = "none"
    stopbits: float = 1  # 1 | 1.5 | 2
    protocol: Literal["line", "fixed"] = "line"
    max_frame_bytes: int = Field(default=512, ge=8, le=65536)
    # line framing
    terminator: str = Field(default="\n", min_length=1, max_length=8)
    encoding: str = "ascii"
    pattern: str | None = Field(default=None, validate_default=True)
    # fixed framing
    frame_length: int | None = Field(default=None, ge=1, le=65536, validate_default=True)
    sync: int | None = Field(default=None, ge=0, le=255)  # value of byte 0 of every frame
    layout: tuple[LayoutField, ...] | None = Field(default=None, validate_default=True)
    checksum: Checksum | None = None
    points: tuple[SerialPoint, ...] = Field(min_length=1)

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, stopbits: float) -> float:
        if stopbits not in (1, 1.5, 2):
            raise ValueError(f"stopbits must be 1, 1.5 or 2, not {stopbits:g}")
        return stopbits

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}, e.g. ascii, latin-1, utf-8") from None
        return encoding

    @field_validator("terminator")
    @classmethod
    def _one_byte_per_char(cls, terminator: str) -> str:
        if any(ord(char) > 0xFF for char in terminator):
            raise ValueError("terminator must be bytes 0x00-0xff, e.g. \"\\n\" or \"\\r\\n\"")
        return terminator

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None, info: ValidationInfo) -> str | None:
        fixed = info.data.get("protocol") == "fixed"
        if pattern is None:
            if fixed:
                return None
            raise ValueError("protocol line needs a pattern with named groups")
        if fixed:
            raise ValueError("only for protocol line")
        try:
            compiled = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"pattern is not a valid regular expression: {err}") from None
        if not compiled.groupindex:
            raise ValueError("pattern needs named groups, e.g. (?P<weight>...)")
        return pattern

    @field_validator("frame_length", "sync")
    @classmethod
    def _fixed_only(cls, value: int | None, info: ValidationInfo) -> int | None:
        fixed = info.data.get("protocol") == "fixed"
        if value is None:
            if fixed and info.field_name == "frame_length":
                raise ValueError("protocol fixed needs frame_length")
            return None
        if not fixed:
            raise ValueError("only for protocol fixed")
        most = info.data.get("max_frame_bytes")
        if info.field_name == "frame_length" and most is not None and value > most:
            raise ValueError(f"frame_length {value} exceeds max_frame_bytes {most}")
        return value

    @field_validator("layout")
    @classmethod
    def _layout_fits(
        cls, layout: tuple[LayoutField, ...] | None, info: ValidationInfo
    ) -> tuple[LayoutField, ...] | None:
        if info.data.get("protocol") != "fixed":
            if layout is not None:
                raise ValueError("only for protocol fixed")
            return None
        if not layout:
            raise ValueError("protocol fixed needs a layout with at least one field")
        length = info.data.get("frame_length")
        if length is None:
            return layout  # frame_length itself was refused
        names = [item.name for item in layout]
        if len(set(names)) != len(names):
            raise ValueError("layout field names must be unique")
        _taken(layout, info.data.get("sync"), length)  # raises for a misplaced field
        return layout

    @field_validator("checksum")
    @classmethod
    def _checksum_fits(cls, checksum: Checksum | None, info: ValidationInfo) -> Checksum | None:
        if checksum is None:
            return None
        if info.data.get("protocol") != "fixed":
            raise ValueError("only for protocol fixed")
        length = info.data.get("frame_length")
        layout = info.data.get("layout")
        if length is None or layout is None:
            return checksum  # refused already
        taken = _taken(layout, info.data.get("sync"), length)
        offset = checksum_offset(checksum, length)
        what = f"checksum {checksum.type} (at offset {offset})"
        if offset < 0 or offset + checksum.width > length:
            raise ValueError(f"{what} runs past frame_length {length}")
        _claim(taken, offset, checksum.width, what)
        end = checksum_end(checksum, length)
        if not checksum.start < end <= length:
            raise ValueError(f"checksum range {checksum.start}..{end} is empty or past the frame")
        if checksum.start < offset + checksum.width and offset < end:
            raise ValueError(f"checksum range {checksum.start}..{end} covers the checksum itself")
        return checksum

    @model_validator(mode="after")
    def _points_have_fields(self) -> SerialConfig:
        if self.protocol == "line":
            if self.pattern is None:
                return self  # refused already
            fields = set(re.compile(self.pattern).groupindex)
            where = "pattern"
            kind = "a group of pattern"
        else:
            if self.layout is None:
                return self
            fields = {item.name for item in self.layout}
            where = "layout"
            kind = "in layout"
        for point in self.points:
            if point.writable:
                raise ValueError(f"point {point.id}: serial line devices are read-only; "
                                 "writable must be false")
            if point.field not in fields:
                raise ValueError(
                    f"point {point.id}: field {point.field!r} is not {kind}"
                    f" ({'groups' if where == 'pattern' else 'fields'}:"
                    f" {', '.join(sorted(fields))})"
                )
            if point.type == "string" and self.protocol == "fixed":
                raise ValueError(f"point {point.id}: type string needs protocol line")
        return self

    def resources(self) -> frozenset[str]:
        """The serial port, which one source at a time may own."""
        return frozenset({f"serial:{self.port}"})


def _claim(taken: dict[int, str], offset: int, size: int, what: str) -> None:
    for byte in range(offset, offset + size):
        if byte in taken:
            raise ValueError(f"{what} overlaps {taken[byte]} at byte {byte}")
        taken[byte] = what


def _taken(layout: tuple[LayoutField, ...], sync: int | None, length: int) -> dict[int, str]:
    """Which thing owns each byte of the frame; refuses fields past the end or overlapping."""
    taken: dict[int, str] = {}
    if sync is not None:
        taken[0] = "the sync byte"
    for item in layout:
        what = f"layout field {item.name!r} ({item.type} at offset {item.offset})"
        if item.offset + item.size > length:
            raise ValueError(f"{what} runs past frame_length {length}")
        _claim(taken, item.offset, item.size, what)
    return taken


def checksum_offset(checksum: Checksum, frame_length: int) -> int:
    """Where the checksum sits: its ``offset``, or the last bytes of the frame."""
    return checksum.offset if checksum.offset is not None else frame_length - checksum.width


def checksum_end(checksum: Checksum, frame_length: int) -> int:
    """End (exclusive) of the checked range: ``end``, or where the checksum starts."""
    return checksum.end if checksum.end is not None else checksum_offset(checksum, frame_length)
