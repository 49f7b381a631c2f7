"""Register decode/encode: known vectors, Hypothesis round-trips for every type and order."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.core.errors import DecodeError
from edgetwin.sources.modbus.config import ByteOrder, DataType, ModbusPoint
from edgetwin.sources.modbus.decode import (
    decode_array,
    decode_point,
    decode_value,
    encode_array,
    encode_point,
    encode_value,
)

REGISTER_TYPES = [t for t in DataType if t not in (DataType.BOOL, DataType.STRING)]
# 32 type x order combinations, each its own test: fewer examples each keeps the run short.
PER_COMBINATION = settings(max_examples=30, deadline=None)
ORDERS = list(ByteOrder)
_INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1), DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1), DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1), DataType.UINT64: (0, 2**64 - 1),
}


def values_of(data_type: DataType) -> st.SearchStrategy[Any]:
    if data_type is DataType.FLOAT32:
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if data_type is DataType.FLOAT64:
        return st.floats(allow_nan=False, allow_infinity=False)
    low, high = _INT_RANGES[data_type]
    return st.integers(low, high)


def point(**fields: Any) -> ModbusPoint:
    return ModbusPoint.model_validate({"id": "pump1/p", "address": 0, **fields})


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: o.value)
@pytest.mark.parametrize("data_type", REGISTER_TYPES, ids=lambda t: t.value)
@PER_COMBINATION
@given(data=st.data())
def test_decode_inverts_encode(data_type: DataType, order: ByteOrder, data: st.DataObject) -> None:
    """decode(encode(v)) == v for every register type and byte order."""
    value = data.draw(values_of(data_type))
    words = encode_value(value, data_type, order)
    assert len(words) == data_type.registers
    assert all(0 <= w <= 0xFFFF for w in words)
    decoded = decode_value(words, data_type, order)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: o.value)
@pytest.mark.parametrize("data_type", REGISTER_TYPES, ids=lambda t: t.value)
@PER_COMBINATION
@given(data=st.data())
def test_encode_inverts_decode(data_type: DataType, order: ByteOrder, data: st.DataObject) -> None:
    """Any register words either decode and re-encode to themselves, or are NaN/infinity."""
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=data_type.registers,
                               max_size=data_type.registers))
    try:
        value = decode_value(words, data_type, order)
    except DecodeError:
        assert data_type in (DataType.FLOAT32, DataType.FLOAT64)
        return
    assert encode_value(value, data_type, order) == words


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: o.value)
@pytest.mark.parametrize("data_type", REGISTER_TYPES, ids=lambda t: t.value)
@PER_COMBINATION
@given(data=st.data())
def test_array_decode_inverts_encode(
    data_type: DataType, order: ByteOrder, data: st.DataObject
) -> None:
    """The vectorised block decoder agrees with the scalar one, sample for sample."""
    values = data.draw(st.lists(values_of(data_type), min_size=1, max_size=40))
    words = encode_array(values, data_type, order)
    decoded = decode_array(words, data_type, order, len(values))
    assert decoded.dtype == np.float64
    assert decoded.tolist() == [float(v) for v in values]


KNOWN_VECTORS = [
    (DataType.FLOAT32, ByteOrder.ABCD, 1.0, [0x3F80, 0x0000]),
    (DataType.FLOAT32, ByteOrder.CDAB, 1.0, [0x0000, 0x3F80]),
    (DataType.FLOAT32, ByteOrder.BADC, 1.0, [0x803F, 0x0000]),
    (DataType.FLOAT32, ByteOrder.DCBA, 1.0, [0x0000, 0x803F]),
    (DataType.FLOAT32, ByteOrder.ABCD, -2.5, [0xC020, 0x0000]),
    (DataType.UINT32, ByteOrder.ABCD, 0x12345678, [0x1234, 0x5678]),
    (DataType.UINT32, ByteOrder.CDAB, 0x12345678, [0x5678, 0x1234]),
    (DataType.UINT32, ByteOrder.BADC, 0x12345678, [0x3412, 0x7856]),
    (DataType.UINT32, ByteOrder.DCBA, 0x12345678, [0x7856, 0x3412]),
    (DataType.INT32, ByteOrder.ABCD, -2, [0xFFFF, 0xFFFE]),
    (DataType.INT16, ByteOrder.ABCD, -1, [0xFFFF]),
    (DataType.UINT16, ByteOrder.ABCD, 0x1234, [0x1234]),
    (DataType.UINT16, ByteOrder.CDAB, 0x1234, [0x1234]),
    (DataType.UINT16, ByteOrder.BADC, 0x1234, [0x3412]),
    (DataType.UINT16, ByteOrder.DCBA, 0x1234, [0x3412]),
    (DataType.UINT64, ByteOrder.ABCD, 0x0102030405060708, [0x0102, 0x0304, 0x0506, 0x0708]),
    (DataType.UINT64, ByteOrder.CDAB, 0x0102030405060708, [0x0708, 0x0506, 0x0304, 0x0102]),
    (DataType.UINT64, ByteOrder.BADC, 0x0102030405060708, [0x0201, 0x0403, 0x0605, 0x0807]),
    (DataType.UINT64, ByteOrder.DCBA, 0x0102030405060708, [0x0807, 0x0605, 0x0403, 0x0201]),
    (DataType.INT64, ByteOrder.ABCD, -1, [0xFFFF] * 4),
    (DataType.FLOAT64, ByteOrder.ABCD, 1.0, [0x3FF0, 0, 0, 0]),
    (DataType.FLOAT64, ByteOrder.CDAB, 1.0, [0, 0, 0, 0x3FF0]),
    (DataType.FLOAT64, ByteOrder.DCBA, 1.0, [0, 0, 0, 0xF03F]),
]


@pytest.mark.parametrize(("data_type", "order", "value", "words"), KNOWN_VECTORS)
def test_known_vectors(
    data_type: DataType, order: ByteOrder, value: float, words: list[int]
) -> None:
    """Byte orders lay the bytes out as FACTS section 3.3 defines."""
    assert encode_value(value, data_type, order) == words
    assert decode_value(words, data_type, order) == value
    assert decode_array(words, data_type, order, 1).tolist() == [float(value)]


@pytest.mark.parametrize(
    ("data_type", "words"),
    [
        (DataType.FLOAT32, [0x7FC0, 0x0000]),  # NaN
        (DataType.FLOAT32, [0x7F80, 0x0000]),  # +inf
        (DataType.FLOAT32, [0xFF80, 0x0000]),  # -inf
        (DataType.FLOAT64, [0x7FF8, 0, 0, 0]),  # NaN
    ],
)
def test_nan_and_infinity_raise(data_type: DataType, words: list[int]) -> None:
    """A float register holding NaN or infinity is unusable, not a value."""
    with pytest.raises(DecodeError, match="not a number"):
        decode_value(words, data_type, ByteOrder.ABCD)
    with pytest.raises(DecodeError, match="not a number"):
        decode_array([0x3F80, 0, *words] if data_type is DataType.FLOAT32 else words,
                     data_type, ByteOrder.ABCD, 2 if data_type is DataType.FLOAT32 else 1)


def test_wrong_number_of_words_raises() -> None:
    """A short answer is a DecodeError, not an IndexError."""
    with pytest.raises(DecodeError, match="float32 needs 2 registers, got 1"):
        decode_value([0x3F80], DataType.FLOAT32, ByteOrder.ABCD)
    with pytest.raises(DecodeError, match="need 6 registers, got 5"):
        decode_array([0] * 5, DataType.UINT32, ByteOrder.ABCD, 3)
    with pytest.raises(DecodeError, match="16-bit"):
        decode_value([0x1_0000], DataType.UINT16, ByteOrder.ABCD)


@pytest.mark.parametrize(
    ("value", "data_type", "message"),
    [
        (70000, DataType.UINT16, "does not fit uint16"),
        (-1, DataType.UINT32, "does not fit uint32"),
        (1.5, DataType.INT16, "not an integer"),
        (math.nan, DataType.FLOAT32, "not a finite number"),
        (1e39, DataType.FLOAT32, "does not fit float32"),
        (True, DataType.UINT16, "is a bool"),
    ],
)
def test_encode_refuses_what_does_not_fit(value: Any, data_type: DataType, message: str) -> None:
    """Encoding never wraps or truncates silently."""
    with pytest.raises(ValueError, match=message):
        encode_value(value, data_type, ByteOrder.ABCD)


def test_point_scale_and_offset() -> None:
    """Value = raw * scale + offset; integers stay integers when scale is 1 and offset 0."""
    assert decode_point(point(type="uint16"), [1450], ByteOrder.ABCD) == 1450
    assert isinstance(decode_point(point(type="uint16"), [1450], ByteOrder.ABCD), int)
    level = decode_point(point(type="uint16", scale=0.1), [505], ByteOrder.ABCD)
    assert level == pytest.approx(50.5)
    assert decode_point(point(type="int16", scale=0.5, offset=-10), [0xFFFE], ByteOrder.ABCD) == -11
    assert encode_point(point(type="uint16", scale=0.1), 50.5, ByteOrder.ABCD) == [505]
    assert encode_point(point(type="int16", scale=0.5, offset=-10), -11, ByteOrder.ABCD) == [0xFFFE]


def test_a_scaled_integer_register_takes_whole_steps_only() -> None:
    """Float arithmetic's error is a step still; half a step is refused, never rounded."""
    level = point(type="uint16", scale=0.1)
    assert encode_point(level, 15.3, ByteOrder.ABCD) == [153]  # 15.3 / 0.1 = 152.99999999999997
    assert encode_point(level, 0.3, ByteOrder.ABCD) == [3]
    with pytest.raises(ValueError, match=r"15.35 falls between two steps of the register "
                                         r"\(scale 0.1, offset 0\): it holds 15.3 or 15.4"):
        encode_point(level, 15.35, ByteOrder.ABCD)
    temp = point(type="int16", scale=0.5, offset=-10)
    assert encode_point(temp, -10.5, ByteOrder.ABCD) == [0xFFFF]
    with pytest.raises(ValueError, match=r"it holds -10\.5 or -10, nothing between"):
        encode_point(temp, -10.25, ByteOrder.ABCD)
    assert encode_point(point(type="float32", scale=0.1), 15.35, ByteOrder.ABCD) == (
        encode_point(point(type="float32"), 153.5, ByteOrder.ABCD))


def test_point_byte_order_overrides_the_source_default() -> None:
    """A point's byte_order wins over the source's."""
    flow = point(type="float32", byte_order="CDAB")
    assert decode_point(flow, [0x0000, 0x3F80], ByteOrder.ABCD) == 1.0
    assert decode_point(point(type="float32"), [0x0000, 0x3F80], ByteOrder.CDAB) == 1.0
    assert encode_point(flow, 1.0, ByteOrder.ABCD) == [0x0000, 0x3F80]


def test_bits_decode_to_bools() -> None:
    """Coils and discrete inputs are bools; a block of them a read-only bool array."""
    assert decode_point(point(kind="coil", type="bool"), [True], ByteOrder.ABCD) is True
    block = decode_point(point(kind="discrete", type="bool", count=3), [1, 0, 1], ByteOrder.ABCD)
    assert block.dtype == np.bool_
    assert block.tolist() == [True, False, True]
    assert encode_point(point(kind="coil", type="bool"), False, ByteOrder.ABCD) == [False]
    with pytest.raises(ValueError, match="true or false"):
        encode_point(point(kind="coil", type="bool"), 1, ByteOrder.ABCD)


def test_waveform_block_scales_by_waveform_scale() -> None:
    """A waveform is a read-only float64 array times waveform.scale (point scale ignored)."""
    wave = point(type="int16", count=4, scale=5.0,
                 waveform={"sample_rate": 1000, "scale": 0.001, "unit": "g"})
    value = decode_point(wave, [1000, 0xFFFF, 0, 500], ByteOrder.ABCD)
    assert value.tolist() == pytest.approx([1.0, -0.001, 0.0, 0.5])
    assert value.dtype == np.float64
    assert not value.flags.writeable
    plain = point(type="uint16", count=2, scale=2.0, offset=1.0)
    assert decode_point(plain, [1, 2], ByteOrder.ABCD).tolist() == [3.0, 5.0]


def test_waveform_with_nan_raises() -> None:
    """One NaN sample makes the whole float block unusable, with its index in the message."""
    wave = point(type="float32", count=2, waveform={"sample_rate": 100})
    with pytest.raises(DecodeError, match="sample 1 of 2"):
        decode_point(wave, [0x3F80, 0, 0x7FC0, 0], ByteOrder.ABCD)


def test_point_with_the_wrong_amount_of_data_raises() -> None:
    """decode_point checks the slice it was given."""
    with pytest.raises(DecodeError, match="expected 2 values, got 1"):
        decode_point(point(type="float32"), [0x3F80], ByteOrder.ABCD)
