"""Modbus tables and the word encoders the register maps use.

Written here rather than borrowed from a gateway (or from pymodbus's client helpers) so that
plcsim stays an independent peer: a gateway that decodes a byte order wrongly must not be
"confirmed" by a simulator that shares its code.

Byte and word order of a multi-register value, A the most significant byte (FACTS §3.3):

| order | 32-bit registers | 64-bit registers        |
|-------|------------------|-------------------------|
| ABCD  | AB CD            | AB CD EF GH (big-endian) |
| CDAB  | CD AB            | GH EF CD AB (word swap)  |
| BADC  | BA DC            | BA DC FE HG (byte swap)  |
| DCBA  | DC BA            | HG FE DC BA (little-endian) |
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence


class Table(enum.Enum):
    """The four Modbus tables."""

    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def is_bit(self) -> bool:
        """Coils and discrete inputs hold bits; the other two hold 16-bit registers."""
        return self in (Table.COIL, Table.DISCRETE)


class WordOrder(enum.Enum):
    """Byte and word order of a multi-register value; A is the most significant byte."""

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


# struct format and registers per value
_FORMATS: dict[str, tuple[str, int]] = {
    "int16": ("h", 1), "uint16": ("H", 1),
    "int32": ("i", 2), "uint32": ("I", 2), "float32": ("f", 2),
    "int64": ("q", 4), "uint64": ("Q", 4), "float64": ("d", 4),
}
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1),
}
DATA_TYPES = frozenset({*_FORMATS, "bool"})


def width(data_type: str) -> int:
    """Registers one value of ``data_type`` spans (1 for ``bool``: one bit)."""
    if data_type == "bool":
        return 1
    try:
        return _FORMATS[data_type][1]
    except KeyError:
        raise ValueError(f"unknown data type {data_type!r}") from None


def is_float(data_type: str) -> bool:
    """float32 and float64."""
    return data_type in ("float32", "float64")


def swap_bytes(words: Sequence[int]) -> list[int]:
    """Swap the two bytes of every register."""
    return [((w & 0xFF) << 8) | (w >> 8) for w in words]


def to_words(value: float, data_type: str, order: WordOrder = WordOrder.ABCD) -> list[int]:
    """``value`` as the registers a device with this byte/word order would hold.

    Raises:
        ValueError: unknown ``data_type`` or a value that does not fit it.
    """
    try:
        fmt, _ = _FORMATS[data_type]
    except KeyError:
        raise ValueError(f"unknown data type {data_type!r}") from None
    number: float = value if is_float(data_type) else round(value)
    try:
        raw = struct.pack(f">{fmt}", number)
    except (struct.error, OverflowError) as err:
        raise ValueError(f"{value!r} does not fit {data_type}: {err}") from None
    words = list(struct.unpack(f">{len(raw) // 2}H", raw))
    return _reorder(words, order)


def from_words(words: Sequence[int], data_type: str,
               order: WordOrder = WordOrder.ABCD) -> int | float:
    """The value ``words`` hold; the inverse of ``to_words``.

    Raises:
        ValueError: unknown ``data_type`` or the wrong number of registers.
    """
    try:
        fmt, count = _FORMATS[data_type]
    except KeyError:
        raise ValueError(f"unknown data type {data_type!r}") from None
    if len(words) != count:
        raise ValueError(f"{data_type} needs {count} registers, got {len(words)}")
    ordered = _reorder(list(words), order)  # every reordering is its own inverse
    value: int | float = struct.unpack(f">{fmt}", struct.pack(f">{count}H", *ordered))[0]
    return value


def _reorder(words: list[int], order: WordOrder) -> list[int]:
    if order in (WordOrder.CDAB, WordOrder.DCBA):
        words.reverse()
    if order in (WordOrder.BADC, WordOrder.DCBA):
        words = swap_bytes(words)
    return words
