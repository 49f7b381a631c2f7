import json

from hypothesis import given
from hypothesis import strategies as st

from edgetwin.core.types import Delta, OutboxEntry, PointState, Quality
from edgetwin.sync.jsontwin import JsonTwinEncoder

ENC = JsonTwinEncoder("edgetwin/v1", "gw1")


def test_reported_message_matches_the_design_contract() -> None:
    """A delta becomes {seq, v, ts, state{point: {v, ts, q}}} on <asset>/reported at QoS 1."""
    state = PointState(61.5, 1_700_000_000_123_456_789, Quality.GOOD, 42)
    msg = ENC.entry(OutboxEntry(7, Delta("pump1", 42, state.ts_ns, {"motor_temp": state})))
    assert msg.topic == "edgetwin/v1/gw1/pump1/reported"
    assert (msg.qos, msg.retain) == (1, False)
    assert json.loads(msg.payload) == {
        "seq": 7, "v": 42, "ts": 1_700_000_000_123,
        "state": {"motor_temp": {"v": 61.5, "ts": 1_700_000_000_123, "q": "GOOD"}},
    }


def test_snapshot_is_retained_with_point_versions() -> None:
    """The twin topic is retained and carries each point's version."""
    states = {"a": PointState(1, 5_000_000, Quality.GOOD, 3),
              "b": PointState(None, 9_000_000, Quality.BAD, 8)}
    msg = ENC.snapshot("pump1", 8, states)
    assert (msg.topic, msg.qos, msg.retain) == ("edgetwin/v1/gw1/pump1/twin", 1, True)
    doc = json.loads(msg.payload)
    assert doc == {"v": 8, "ts": 9, "state": {
        "a": {"v": 1, "ts": 5, "q": "GOOD", "ver": 3},
        "b": {"v": None, "ts": 9, "q": "BAD", "ver": 8}}, "desired": {}, "delta": {}}


def test_status_online_and_offline_are_retained() -> None:
    """Status is retained so a late subscriber knows whether the gateway is up."""
    on = ENC.status(online=True, ts_ms=1)
    off = ENC.status(online=False, ts_ms=2)
    assert on.topic == off.topic == "edgetwin/v1/gw1/status"
    assert on.retain and off.retain
    assert json.loads(off.payload) == {"online": False, "ts": 2}


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                 st.booleans(), st.text()))
def test_any_scalar_value_encodes_to_valid_json(value: object) -> None:
    """Property: every scalar a source can produce encodes; NaN/inf become null."""
    state = PointState(value, 1, Quality.GOOD, 1)
    doc = json.loads(ENC.entry(OutboxEntry(1, Delta("a", 1, 1, {"p": state}))).payload)
    got = doc["state"]["p"]["v"]
    if (isinstance(value, float) and value != value) or value in (float("inf"), float("-inf")):
        assert got is None
    else:
        assert got == value
