"""Fuzzing the inbound decoder: nothing a sender publishes makes it raise or invent a point."""

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edgetwin.core.types import Verdict
from edgetwin.sync.jsontwin import (
    Decoded,
    JsonTwinDecoder,
    JsonTwinEncoder,
    RejectCode,
    Rejection,
    command_result,
    rejection_result,
)
from tests.sync.test_jsontwin_inbound import BASE, CMD, DESIRED, NOW_NS, POINTS, SPECS
from tests.sync.test_jsontwin_schemas import check, schema

ENC = JsonTwinEncoder("edgetwin/v1", "gw1")
DECODER = JsonTwinDecoder("edgetwin/v1", "gw1", SPECS)
TOPICS = st.one_of(st.sampled_from([DESIRED, CMD, f"{BASE}/tank1/desired",
                                    f"{BASE}/pump9/desired"]),
                   st.text(max_size=40), st.text(max_size=10).map(lambda t: f"{BASE}/{t}"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=12)
# Keys the decoder knows, so that random documents reach past the unknown-field check.
FIELDS = st.sampled_from(["state", "id", "issued_at", "expires_at", "key_id", "sig",
                          "client_token", "point", "value", "op", "token"])
NEAR_DOCS = st.dictionaries(FIELDS, json_values | st.dictionaries(
    st.sampled_from(["speed_setpoint", "run", "mode", "level", "nope", ""]), json_values,
    max_size=3), max_size=6)


def _holds(result: Decoded | Rejection) -> None:
    """The decoder's promises, whatever came in; and every answer encodes to a valid result."""
    assert isinstance(result, Decoded | Rejection)
    if isinstance(result, Rejection):
        assert isinstance(result.code, RejectCode) and result.message
        assert result.point is None or result.point in POINTS
        check("cmd-result", json.loads(ENC.record(1, rejection_result(result, NOW_NS)).payload))
        return
    for command in result.commands:
        assert command.point in POINTS
        assert command.id
        assert isinstance(command.value, bool | int | float | str)
        answer = command_result(command, Verdict(accepted=False, reason="fuzz"), NOW_NS)
        check("cmd-result", json.loads(ENC.record(1, answer).payload))
    assert set(result.clears) <= POINTS


@given(TOPICS, st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(topic: str, payload: bytes) -> None:
    """Property: any bytes on any topic give a Decoded or a typed Rejection."""
    _holds(DECODER.parse(topic, payload, NOW_NS))


@given(st.sampled_from([DESIRED, CMD]), json_values)
def test_arbitrary_json_values_never_raise(topic: str, value: Any) -> None:
    """Property: any JSON value as the whole payload is decoded or rejected, never raised."""
    _holds(DECODER.parse(topic, json.dumps(value).encode(), NOW_NS))


@given(st.sampled_from([DESIRED, CMD, f"{BASE}/tank1/desired"]), NEAR_DOCS, st.booleans())
def test_documents_with_the_right_field_names_never_raise(
    topic: str, doc: dict[str, Any], retained: bool
) -> None:
    """Property: known fields with arbitrary values never raise nor name an unknown point."""
    _holds(DECODER.parse(topic, json.dumps(doc).encode(), NOW_NS, retained=retained))
    if retained:
        assert not isinstance(DECODER.parse(topic, json.dumps(doc).encode(), NOW_NS,
                                            retained=True), Decoded)


@given(st.sampled_from([("desired", DESIRED), ("cmd", CMD)]), st.data())
def test_mangled_examples_never_raise(kind: tuple[str, str], data: st.DataObject) -> None:
    """Property: documented examples with bytes flipped, cut or inserted never raise."""
    name, topic = kind
    payload = bytearray(json.dumps(data.draw(st.sampled_from(schema(name)["examples"]))).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(payload)))
        match data.draw(st.sampled_from(["flip", "cut", "insert"])):
            case "flip" if at < len(payload):
                payload[at] ^= data.draw(st.integers(1, 255))
            case "cut":
                del payload[at:at + data.draw(st.integers(1, 8))]
            case _:
                payload[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    _holds(DECODER.parse(topic, bytes(payload), NOW_NS))


@given(st.sampled_from([DESIRED, CMD]), st.integers(1, 64), st.data())
def test_oversized_payloads_are_refused_by_size(topic: str, cap: int, data: st.DataObject) -> None:
    """Property: a payload over the cap is always too_large, whatever it holds."""
    payload = data.draw(st.binary(min_size=cap + 1, max_size=cap + 200))
    small = JsonTwinDecoder("edgetwin/v1", "gw1", POINTS, max_payload_bytes=cap)
    result = small.parse(topic, payload, NOW_NS)
    assert isinstance(result, Rejection) and result.code is RejectCode.TOO_LARGE


@given(st.text(max_size=30).filter(lambda s: s not in POINTS), json_values)
def test_unknown_points_never_become_commands(point: str, value: Any) -> None:
    """Property: a cmd or desired for a point that is not configured is never decoded."""
    cmd = DECODER.parse(CMD, json.dumps({"point": point, "value": value}).encode(), NOW_NS)
    assert isinstance(cmd, Rejection)
    asset, _, name = point.partition("/")
    desired = DECODER.parse(f"{BASE}/{asset}/desired",
                            json.dumps({"state": {name: value}}).encode(), NOW_NS)
    assert isinstance(desired, Rejection)
