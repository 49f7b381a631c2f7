"""Register words <-> values for every Modbus data type and byte order; pure, no I/O.

Each register is big-endian on the wire. For a value with bytes A B C D (A most
significant) the byte orders lay the registers out as (reference FACTS section 3.3):

- ABCD: ``[AB, CD]``, big-endian, the Modbus default;
- CDAB: ``[CD, AB]``, word swap; for 64-bit values all four words reverse (GH EF CD AB);
- BADC: ``[BA, DC]``, bytes swapped inside each register;
- DCBA: ``[DC, BA]``, little-endian.

A 16-bit value has no second word: ABCD and CDAB read it as AB, BADC and DCBA as BA.
64-bit values take the eight-letter orders (ABCDEFGH ... HGFEDCBA): each pair of letters is
one register on the wire, so CDABGHEF swaps the words inside each 32-bit half and EFGHABCD
swaps the halves. An order is reduced to a word permutation plus a byte-swap flag.
Strings are two characters per register, first character in the high byte (BADC/DCBA:
in the low byte), NUL-padded.

We do the swapping ourselves with ``struct`` and numpy because pymodbus's converters
have no byte-order argument and reverse lists in place.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgetwin.core.errors import DecodeError
from edgetwin.sources.modbus.config import ByteOrder, DataType, ModbusPoint

Number = int | float

_STRUCT = {
    DataType.INT16: "h", DataType.UINT16: "H",
    DataType.INT32: "i", DataType.UINT32: "I", DataType.FLOAT32: "f",
    DataType.INT64: "q", DataType.UINT64: "Q", DataType.FLOAT64: "d",
}
_NUMPY = {dt: np.dtype(">" + code) for dt, code in _STRUCT.items()}
_FLOATS = (DataType.FLOAT32, DataType.FLOAT64)
# How far from a whole step a scaled value may land on an integer register and still be that
# step: float arithmetic errs far less (15.3 / 0.1 = 152.99999999999997), a real value
# between two steps far more.
_STEP_TOLERANCE = 1e-6


_WIDEN = {
    ByteOrder.ABCD: ByteOrder.ABCDEFGH, ByteOrder.CDAB: ByteOrder.GHEFCDAB,
    ByteOrder.BADC: ByteOrder.BADCFEHG, ByteOrder.DCBA: ByteOrder.HGFEDCBA,
}
_NARROW = {(False, False): "ABCD", (True, False): "CDAB", (False, True): "BADC",
           (True, True): "DCBA"}


@functools.cache
def _layout(order: ByteOrder, words: int) -> tuple[tuple[int, ...], bool]:
    """(significance of the value word each wire register holds, bytes swapped in a register).

    A four-letter order on a 64-bit value widens as documented (CDAB -> GHEFCDAB); an
    eight-letter source default on a 32-bit point narrows to its layout inside a half.
    """
    name = order.value
    if words == 4 and len(name) == 4:
        name = _WIDEN[order].value
    pairs = [name[i:i + 2] for i in range(0, len(name), 2)]
    swapped = pairs[0][0] > pairs[0][1]
    perm = tuple((ord(min(pair)) - ord("A")) // 2 for pair in pairs)
    if words == 1:
        return (0,), swapped
    if words == 2 and len(name) == 8:
        name = _NARROW[(perm[0] % 2 == 1, swapped)]
        return _layout(ByteOrder(name), 2)
    return perm, swapped


def _struct_code(data_type: DataType) -> str:
    try:
        return _STRUCT[data_type]
    except KeyError:
        raise ValueError(f"{data_type.value} is a bit, not a register type") from None


def decode_value(words: Sequence[int], data_type: DataType, byte_order: ByteOrder) -> Number:
    """The raw (unscaled) value held in ``words``.

    Raises:
        DecodeError: wrong number of words, a word outside 0..65535, NaN or infinity.
    """
    code = _struct_code(data_type)
    if len(words) != data_type.registers:
        raise DecodeError(
            f"{data_type.value} needs {data_type.registers} registers, got {len(words)}"
        )
    perm, swapped = _layout(byte_order, len(words))
    ordered = [0] * len(words)
    for wire_index, word in enumerate(words):
        ordered[perm[wire_index]] = word
    try:
        # Packing each register little-endian is exactly the byte swap inside a register.
        raw = struct.pack(f"{'<' if swapped else '>'}{len(ordered)}H", *ordered)
    except struct.error as err:
        raise DecodeError(f"register words {list(words)} are not all 16-bit: {err}") from None
    (value,) = struct.unpack(f">{code}", raw)
    if data_type in _FLOATS and not math.isfinite(value):
        raise DecodeError(f"{data_type.value} is {value} (words {list(words)}), not a number")
    return int(value) if isinstance(value, int) else float(value)


def encode_value(value: Number, data_type: DataType, byte_order: ByteOrder) -> list[int]:
    """The registers that hold raw ``value``; the inverse of ``decode_value``.

    Raises:
        ValueError: the value does not fit the type (range, NaN, a fraction for an integer).
    """
    code = _struct_code(data_type)
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a bool; {data_type.value} takes a number")
    if data_type in _FLOATS:
        number: Number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
    else:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value!r} is not an integer; {data_type.value} holds whole numbers")
        number = int(value)
    try:
        raw = struct.pack(f">{code}", number)
    except (struct.error, OverflowError) as err:
        raise ValueError(f"{value!r} does not fit {data_type.value}: {err}") from None
    perm, swapped = _layout(byte_order, len(raw) // 2)
    ordered = struct.unpack(f"{'<' if swapped else '>'}{len(raw) // 2}H", raw)
    return [ordered[perm[wire_index]] for wire_index in range(len(ordered))]


def scale_value(raw: Number, scale: float, offset: float) -> Number:
    """``raw * scale + offset``; an integer stays an integer when nothing changes it."""
    if scale == 1 and offset == 0:
        return raw
    return raw * scale + offset


def unscale_value(value: Number, scale: float, offset: float, data_type: DataType) -> Number:
    """The raw value that ``scale_value`` maps to ``value``.

    An integer register holds whole steps of ``scale``: a value between two steps is refused,
    never rounded, so a write puts on the device exactly what was asked or nothing.

    Raises:
        ValueError: the result is not finite, or falls between two steps of an integer register.
    """
    if scale == 1 and offset == 0:
        return value
    raw = (value - offset) / scale
    if not math.isfinite(raw):
        raise ValueError(f"{value!r} with scale {scale} and offset {offset} is not finite")
    if data_type in _FLOATS:
        return raw
    steps = round(raw)
    if abs(raw - steps) > _STEP_TOLERANCE + abs(raw) * 1e-12:  # beyond float rounding
        below, above = math.floor(raw), math.ceil(raw)
        raise ValueError(
            f"{value!r} falls between two steps of the register (scale {scale:g}, offset "
            f"{offset:g}): it holds {scale_value(below, scale, offset):.10g} or "
            f"{scale_value(above, scale, offset):.10g}, nothing between")
    return steps


def decode_array(
    words: Sequence[int], data_type: DataType, byte_order: ByteOrder, count: int
) -> npt.NDArray[np.float64]:
    """``count`` raw values of ``data_type`` from consecutive registers, vectorised.

    64-bit integers beyond 2**53 lose precision in float64.

    Raises:
        DecodeError: wrong number of words, a word outside 0..65535, NaN or infinity.
    """
    _struct_code(data_type)  # refuses bool early, with a clear message
    width = data_type.registers
    if len(words) != width * count:
        raise DecodeError(
            f"{count} x {data_type.value} need {width * count} registers, got {len(words)}"
        )
    try:
        grid = np.asarray(words, dtype=np.int64).reshape(count, width)
    except (OverflowError, ValueError) as err:
        raise DecodeError(f"register words are not integers: {err}") from None
    if grid.size and (grid.min() < 0 or grid.max() > 0xFFFF):
        raise DecodeError("register words are not all 16-bit")
    grid = grid.astype(np.uint16)
    perm, swapped = _layout(byte_order, width)
    inverse = [0] * width
    for wire_index, significance in enumerate(perm):
        inverse[significance] = wire_index
    grid = grid[:, inverse]
    if swapped:
        grid = grid.byteswap()
    raw = np.ascontiguousarray(grid).astype(">u2").tobytes()
    values = np.frombuffer(raw, dtype=_NUMPY[data_type]).astype(np.float64)
    if data_type in _FLOATS:
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DecodeError(
                f"{data_type.value} sample {int(bad[0])} of {count} is {values[bad[0]]}, "
                f"not a number ({bad.size} such samples)"
            )
    return values


def encode_array(
    values: Sequence[Number] | npt.NDArray[Any], data_type: DataType, byte_order: ByteOrder
) -> list[int]:
    """Registers holding raw ``values`` one after another; the inverse of ``decode_array``.

    Raises:
        ValueError: a value does not fit the type.
    """
    # A list stays a list: numpy would turn large uint64 values into inexact floats.
    items = values.ravel().tolist() if isinstance(values, np.ndarray) else list(values)
    words: list[int] = []
    for value in items:
        words.extend(encode_value(value, data_type, byte_order))
    return words


def decode_point(
    point: ModbusPoint, data: Sequence[int] | Sequence[bool], default_order: ByteOrder
) -> Any:
    """The engineering value of ``point`` from exactly its registers (or bits).

    A single value is a bool, an int (when scale is 1 and offset 0) or a float. A block
    (``count`` > 1) is a read-only numpy array: bools for bits, otherwise float64 scaled by
    ``waveform.scale`` when the point is a waveform, else by the point's scale and offset.

    Raises:
        DecodeError: the data cannot be a value of this point (length, NaN, infinity).
    """
    if len(data) != point.width:
        raise DecodeError(f"{point.id}: expected {point.width} values, got {len(data)}")
    if point.table.is_bit:
        if point.count == 1:
            return bool(data[0])
        bits = np.asarray(data, dtype=bool)
        bits.flags.writeable = False
        return bits
    order = point.byte_order or default_order
    words = [int(w) for w in data]
    if point.bit is not None:
        return bool((words[0] >> point.bit) & 1)
    if point.type is DataType.STRING:
        return decode_string(words, order)
    if point.count == 1:
        return scale_value(decode_value(words, point.type, order), point.scale, point.offset)
    values = decode_array(words, point.type, order, point.count)
    if point.waveform is not None:
        values = values * point.waveform.scale
    elif point.scale != 1 or point.offset != 0:
        values = values * point.scale + point.offset
    values.flags.writeable = False  # samples are shared downstream; nobody edits them
    return values


def encode_point(
    point: ModbusPoint, value: Any, default_order: ByteOrder
) -> list[int] | list[bool]:
    """What to write for ``value`` at ``point``: registers, or one bit for a coil.

    Raises:
        ValueError: the value does not fit the point.
    """
    if point.count != 1:
        return _encode_block(point, value, default_order)
    if point.table.is_bit:
        if not isinstance(value, bool | np.bool_):
            raise ValueError(f"{point.id}: a {point.kind} takes true or false, not {value!r}")
        return [bool(value)]
    if point.type is DataType.STRING:
        if not isinstance(value, str):
            raise ValueError(f"{point.id}: a string takes text, not {value!r}")
        return encode_string(value, point.width, point.byte_order or default_order)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{point.id}: {point.type.value} takes a number, not {value!r}")
    try:
        raw = unscale_value(value, point.scale, point.offset, point.type)
    except ValueError as err:
        raise ValueError(f"{point.id}: {err}") from None
    return encode_value(raw, point.type, point.byte_order or default_order)


def decode_string(words: Sequence[int], byte_order: ByteOrder) -> str:
    """Text held two characters per register; NUL padding and trailing blanks removed.

    Raises:
        DecodeError: a word outside 0..65535.
    """
    _perm, swapped = _layout(byte_order, 1)
    try:
        raw = struct.pack(f"{'<' if swapped else '>'}{len(words)}H", *words)
    except struct.error as err:
        raise DecodeError(f"register words {list(words)} are not all 16-bit: {err}") from None
    return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").rstrip(" ")


def encode_string(text: str, registers: int, byte_order: ByteOrder) -> list[int]:
    """The registers holding ``text``, NUL-padded; the inverse of ``decode_string``.

    Raises:
        ValueError: not ASCII, holds a NUL, or longer than two characters per register.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{text!r} is not ASCII") from None
    if b"\x00" in raw or len(raw) > 2 * registers:
        raise ValueError(f"{text!r} does not fit {registers} registers ({2 * registers} chars)")
    _perm, swapped = _layout(byte_order, 1)
    padded = raw.ljust(2 * registers, b"\x00")
    return list(struct.unpack(f"{'<' if swapped else '>'}{registers}H", padded))


def _encode_block(
    point: ModbusPoint, value: Any, default_order: ByteOrder
) -> list[int] | list[bool]:
    """A block point's ``count`` values, written together (FC 15 for coils, FC 16 otherwise)."""
    items = value.tolist() if isinstance(value, np.ndarray) else value
    if isinstance(items, str | bytes) or not hasattr(items, "__len__"):
        raise ValueError(f"{point.id}: a block takes a list of {point.count} values")
    if len(items) != point.count:
        raise ValueError(f"{point.id}: a block takes {point.count} values, not {len(items)}")
    if point.table.is_bit:
        if not all(isinstance(v, bool | np.bool_) for v in items):
            raise ValueError(f"{point.id}: a coil block takes true or false values")
        return [bool(v) for v in items]
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in items):
        raise ValueError(f"{point.id}: {point.type.value} values must be numbers")
    try:
        raw = [unscale_value(v, point.scale, point.offset, point.type) for v in items]
    except ValueError as err:
        raise ValueError(f"{point.id}: {err}") from None
    return encode_array(raw, point.type, point.byte_order or default_order)
