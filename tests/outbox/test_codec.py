"""The stored form of outbox items: exact round trips, and damaged bodies refused cleanly."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.core.errors import DecodeError
from edgetwin.core.types import Delta, PointState, Quality, Record, RecordKind
from edgetwin.outbox import codec

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40))
states = st.builds(PointState, scalars, st.integers(0, 2**63 - 1), st.sampled_from(Quality),
                   st.integers(0, 2**63 - 1))
deltas = st.builds(Delta, st.text(min_size=1, max_size=20), st.integers(0, 2**63 - 1),
                   st.integers(0, 2**63 - 1),
                   st.dictionaries(st.text(min_size=1, max_size=20), states, max_size=8))
records = st.builds(Record, st.sampled_from(RecordKind), st.text(max_size=20),
                    st.integers(0, 2**63 - 1),
                    st.dictionaries(st.text(max_size=10), st.one_of(scalars, st.lists(scalars)),
                                    max_size=5))


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@given(deltas)
def test_every_delta_comes_back_exactly(delta: Delta) -> None:
    """Property: values keep their type and value (NaN, inf, big ints, bools included)."""
    back = codec.decode(codec.encode(delta))
    assert isinstance(back, Delta)
    assert (back.asset, back.version, back.ts_ns) == (delta.asset, delta.version, delta.ts_ns)
    assert back.changes.keys() == delta.changes.keys()
    for name, state in delta.changes.items():
        got = back.changes[name]
        assert same(got.value, state.value)
        assert (got.ts_ns, got.quality, got.version) == (state.ts_ns, state.quality, state.version)


@given(records)
def test_every_record_comes_back(record: Record) -> None:
    back = codec.decode(codec.encode(record))
    assert isinstance(back, Record) and back.kind is record.kind and back.asset == record.asset


@given(scalars)
def test_twin_values_come_back_exactly(value: object) -> None:
    """Property: the twin table's value column keeps every scalar."""
    assert same(codec.decode_value(codec.encode_value(value)), value)


@given(st.binary(max_size=200))
def test_a_damaged_body_is_a_decode_error_never_a_crash(body: bytes) -> None:
    """Fuzz: whatever the bytes, decode returns an item or raises DecodeError."""
    with contextlib.suppress(DecodeError):
        codec.decode(body)


def test_a_value_json_cannot_hold_is_refused_at_encode() -> None:
    state = PointState(object(), 1, Quality.GOOD, 1)
    with pytest.raises(TypeError):
        codec.encode(Delta("a", 1, 1, {"p": state}))
