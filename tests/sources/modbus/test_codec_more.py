"""The codec beyond plain numbers: the eight 64-bit orders, strings, bits inside registers."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.sources.modbus.config import ByteOrder, DataType, ModbusPoint
from edgetwin.sources.modbus.decode import (
    decode_point,
    decode_string,
    decode_value,
    encode_point,
    encode_string,
    encode_value,
)

WIDE = 0x0102030405060708
WIDE_VECTORS = {
    "ABCDEFGH": [0x0102, 0x0304, 0x0506, 0x0708],
    "BADCFEHG": [0x0201, 0x0403, 0x0605, 0x0807],
    "CDABGHEF": [0x0304, 0x0102, 0x0708, 0x0506],
    "DCBAHGFE": [0x0403, 0x0201, 0x0807, 0x0605],
    "EFGHABCD": [0x0506, 0x0708, 0x0102, 0x0304],
    "FEHGBADC": [0x0605, 0x0807, 0x0201, 0x0403],
    "GHEFCDAB": [0x0708, 0x0506, 0x0304, 0x0102],
    "HGFEDCBA": [0x0807, 0x0605, 0x0403, 0x0201],
}


@pytest.mark.parametrize(("order", "words"), WIDE_VECTORS.items())
def test_eight_64_bit_orders_lay_out_the_bytes_they_name(order: str, words: list[int]) -> None:
    """Each eight-letter order puts the bytes where its letters say, both ways."""
    assert encode_value(WIDE, DataType.UINT64, ByteOrder(order)) == words
    assert decode_value(words, DataType.UINT64, ByteOrder(order)) == WIDE


@pytest.mark.parametrize(("short", "wide"), [("ABCD", "ABCDEFGH"), ("CDAB", "GHEFCDAB"),
                                             ("BADC", "BADCFEHG"), ("DCBA", "HGFEDCBA")])
def test_four_letter_orders_widen_as_documented(short: str, wide: str) -> None:
    """A four-letter order on a 64-bit value means its documented eight-letter twin."""
    assert encode_value(WIDE, DataType.UINT64, ByteOrder(short)) == WIDE_VECTORS[wide]


@pytest.mark.parametrize(("wide", "short"), [("CDABGHEF", "CDAB"), ("EFGHABCD", "ABCD"),
                                             ("FEHGBADC", "BADC"), ("HGFEDCBA", "DCBA")])
def test_wide_source_default_narrows_for_32_bit_points(wide: str, short: str) -> None:
    """A 32-bit point under an eight-letter default uses that order's layout inside a half."""
    value = 0x01020304
    assert encode_value(value, DataType.UINT32, ByteOrder(wide)) == encode_value(
        value, DataType.UINT32, ByteOrder(short))


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
       st.sampled_from(list(ByteOrder)))
def test_strings_round_trip(text: str, order: ByteOrder) -> None:
    """Property: printable ASCII written into 10 registers reads back identical."""
    assert decode_string(encode_string(text, 10, order), order) == text


def test_string_layout_and_limits() -> None:
    """High byte first (low byte first for BADC), NUL padded; too long or non-ASCII refused."""
    assert encode_string("ABC", 2, ByteOrder.ABCD) == [0x4142, 0x4300]
    assert encode_string("ABC", 2, ByteOrder.BADC) == [0x4241, 0x0043]
    assert decode_string([0x4142, 0x4320], ByteOrder.ABCD) == "ABC"
    with pytest.raises(ValueError, match="does not fit 2 registers"):
        encode_string("ABCDE", 2, ByteOrder.ABCD)
    with pytest.raises(ValueError, match="not ASCII"):
        encode_string("Grüße", 4, ByteOrder.ABCD)


def point(**keys: Any) -> ModbusPoint:
    return ModbusPoint.model_validate({"id": "a/b", "address": 10, **keys})


def test_bits_inside_a_register() -> None:
    """A bool can be one bit of a holding or input register."""
    word = 0b1000_0000_0000_0010
    assert decode_point(point(type="bool", bit=1), [word], ByteOrder.ABCD) is True
    assert decode_point(point(type="bool", bit=0), [word], ByteOrder.ABCD) is False
    assert decode_point(point(type="bool", bit=15, kind="input"), [word], ByteOrder.ABCD)


def test_string_point_reads_and_writes_through_one_codec() -> None:
    """A string point decodes what encode_point wrote."""
    spec = point(type="string", length=4, writable=True)
    words = encode_point(spec, "PUMP-1", ByteOrder.ABCD)
    assert spec.width == 4
    assert decode_point(spec, words, ByteOrder.ABCD) == "PUMP-1"


@pytest.mark.parametrize(("keys", "message"), [
    ({"type": "bool", "bit": 3, "writable": True}, "cannot be written"),
    ({"type": "uint16", "bit": 3}, "needs type bool"),
    ({"type": "string"}, "a string needs length"),
    ({"type": "uint16", "length": 3}, "length goes only with type string"),
    ({"type": "float32", "byte_order": "EFGHABCD"}, "is for 64-bit types"),
])
def test_inconsistent_points_are_refused(keys: dict[str, Any], message: str) -> None:
    """Bits, strings and wide orders only where they make sense."""
    with pytest.raises(ValueError, match=message):
        point(**keys)
