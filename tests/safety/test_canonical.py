"""The canonical command encoding: exact bytes, and no two commands that differ share them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.core.types import Command, CommandOrigin
from edgetwin.safety.canonical import NotSignable, canonical_bytes, command_bytes


def test_bytes_are_exactly_as_documented() -> None:
    """The format is fixed: prefix, sorted keys, no spaces, typed value (a golden vector)."""
    data = canonical_bytes("c7f1e4", "pump1/speed_setpoint", 1450, op="operate",
                           issued_at_ms=1763770000000, expires_at_ms=1763770030000)
    assert data == (
        b'edgetwin-command-v1\n{"expires_at":1763770030000,"id":"c7f1e4",'
        b'"issued_at":1763770000000,"op":"operate","point":"pump1/speed_setpoint",'
        b'"token":null,"value":{"int":"1450"}}'
    )


def test_one_one_point_zero_and_true_never_collide() -> None:
    """1, 1.0 and true are three different commands to a signature."""
    encoded = {canonical_bytes("i", "a/b", v) for v in (1, 1.0, True)}
    assert len(encoded) == 3
    assert b'{"float":"3ff0000000000000"}' in canonical_bytes("i", "a/b", 1.0)
    assert b'{"bool":true}' in canonical_bytes("i", "a/b", True)
    assert b'{"int":"1"}' in canonical_bytes("i", "a/b", 1)
    assert b'{"str":"1"}' in canonical_bytes("i", "a/b", "1")


def test_non_ascii_is_escaped() -> None:
    """Strings are ASCII on the wire: non-ASCII and astral characters are escaped."""
    data = canonical_bytes("i", "a/b", "é\U0001f600\n")
    assert b'{"str":"\\u00e9\\ud83d\\ude00\\n"}' in data
    assert data.isascii()


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, None, b"x", 10**5000],
                         ids=["list", "dict", "none", "bytes", "huge-int"])
def test_values_without_an_encoding_are_refused(value: object) -> None:
    """A list, a dict, None, bytes or an integer past Python's digit limit cannot be signed."""
    with pytest.raises(NotSignable):
        canonical_bytes("i", "a/b", value)


def test_unknown_op_is_refused() -> None:
    """Only operate and select are operations."""
    with pytest.raises(NotSignable, match="op must be one of"):
        canonical_bytes("i", "a/b", 1, op="cancel")


def test_command_bytes_cover_every_signed_field() -> None:
    """A decoded Command encodes the same as its fields do."""
    command = Command("id1", "a/b", 2.5, CommandOrigin.JSON_CMD, 0, issued_at_ms=5,
                      expires_at_ms=9, key_id="k", signature="s", operation="select",
                      token="t1")
    assert command_bytes(command) == canonical_bytes("id1", "a/b", 2.5, op="select",
                                                     token="t1", issued_at_ms=5,
                                                     expires_at_ms=9)


values = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False), st.text())
commands = st.tuples(st.text(min_size=1), st.text(min_size=1), values,
                     st.sampled_from(["operate", "select"]), st.none() | st.text(),
                     st.none() | st.integers(0, 2**53), st.none() | st.integers(0, 2**53))


def _typed(value: object) -> tuple[object, ...]:
    # -0.0 and 0.0 are equal to Python but different bits, so different commands here
    if isinstance(value, float):
        return float, math.copysign(1.0, value), value
    return type(value), value


@given(commands, commands)
def test_encoding_is_injective(a: tuple[object, ...], b: tuple[object, ...]) -> None:
    """Two commands get the same bytes only when every field is the same, type included."""
    def key(c: tuple[object, ...]) -> tuple[object, ...]:
        return (*c[:2], _typed(c[2]), *c[3:])

    encode = lambda c: canonical_bytes(  # noqa: E731
        c[0], c[1], c[2], op=c[3], token=c[4], issued_at_ms=c[5], expires_at_ms=c[6])
    assert (encode(a) == encode(b)) == (key(a) == key(b))
