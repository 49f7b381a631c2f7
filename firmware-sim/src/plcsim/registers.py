"""A register image of the four Modbus tables, and the word encoders the maps use.

The image is what the server answers from: the plant renders into it on every tick and
writes from clients land in the plant first, then in the image. Encoders are written
here rather than borrowed from a gateway so that plcsim stays an independent peer.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable


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


_FORMATS = {"uint16": "H", "int16": "h", "uint32": "I", "int32": "i", "float32": "f"}


def to_words(value: float, data_type: str, order: WordOrder = WordOrder.ABCD) -> list[int]:
    """``value`` as the registers a device with this byte/word order would hold.

    Raises:
        ValueError: unknown ``data_type`` or a value that does not fit it.
    """
    try:
        fmt = _FORMATS[data_type]
    except KeyError:
        raise ValueError(f"unknown data type {data_type!r}") from None
    number: float = value if fmt == "f" else round(value)
    try:
        raw = struct.pack(f">{fmt}", number)
    except (struct.error, OverflowError) as err:
        raise ValueError(f"{value!r} does not fit {data_type}: {err}") from None
    words = list(struct.unpack(f">{len(raw) // 2}H", raw))
    if order in (WordOrder.CDAB, WordOrder.DCBA):
        words.reverse()
    if order in (WordOrder.BADC, WordOrder.DCBA):
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


class RegisterImage:
    """Current contents of the four tables; an address that was never set does not exist."""

    def __init__(self) -> None:
        self._tables: dict[Table, dict[int, int]] = {table: {} for table in Table}

    def set(self, table: Table, address: int, values: Iterable[int | bool]) -> None:
        """Store consecutive values from ``address`` (registers 0..65535, bits as 0/1)."""
        cells = self._tables[table]
        for i, value in enumerate(values):
            word = int(value)
            if not 0 <= word <= (1 if table.is_bit else 0xFFFF):
                raise ValueError(f"{table.value} {address + i}: {value!r} out of range")
            cells[address + i] = word

    def get(self, table: Table, address: int, count: int = 1) -> list[int]:
        """``count`` values from ``address``.

        Raises:
            KeyError: an address in the range is not part of the image.
        """
        cells = self._tables[table]
        return [cells[a] for a in range(address, address + count)]

    def items(self, table: Table) -> list[tuple[int, int]]:
        """Every (address, value) of ``table``, in address order."""
        return sorted(self._tables[table].items())

    def __contains__(self, key: tuple[Table, int]) -> bool:
        table, address = key
        return address in self._tables[table]
