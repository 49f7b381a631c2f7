import json
from typing import Any

import pytest

from edgetwin.core.types import Command, CommandOrigin, PointSpec
from edgetwin.sync.jsontwin import (
    MAX_PAYLOAD_BYTES,
    Decoded,
    JsonTwinDecoder,
    RejectCode,
    Rejection,
)

BASE = "edgetwin/v1/gw1"
DESIRED = f"{BASE}/pump1/desired"
CMD = f"{BASE}/cmd"
NOW_NS = 1_763_770_000_456_000_000
SIG = "bXVzdCBiZSBhbiBFZDI1NTE5IHNpZ25hdHVyZSBvZiB0aGUgY2Fub25pY2FsIGNvbW1hbmQ="
# motor_temp is read-only: the decoder must still decode it, the policy refuses it.
SPECS = {p: PointSpec(p, "skid", writable=w) for p, w in (
    ("pump1/speed_setpoint", True), ("pump1/run", True), ("pump1/mode", True),
    ("pump1/motor_temp", False), ("tank1/level", False))}
POINTS = frozenset(SPECS)


def _ids() -> Any:
    n = 0

    def new_id() -> str:
        nonlocal n
        n += 1
        return f"gen{n}"
    return new_id


def decoder(**kwargs: Any) -> JsonTwinDecoder:
    return JsonTwinDecoder("edgetwin/v1", "gw1", SPECS, new_id=_ids(), **kwargs)


def parse(topic: str, doc: object, **kwargs: Any) -> Decoded | Rejection:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return decoder().parse(topic, payload, NOW_NS, **kwargs)


def decoded(topic: str, doc: object) -> Decoded:
    result = parse(topic, doc)
    assert isinstance(result, Decoded), result
    return result


def rejected(topic: str, doc: object, **kwargs: Any) -> Rejection:
    result = parse(topic, doc, **kwargs)
    assert isinstance(result, Rejection), result
    return result


def test_subscriptions_cover_every_assets_desired_and_cmd() -> None:
    """The session subscribes to <base>/+/desired and <base>/cmd."""
    assert decoder().subscriptions() == (f"{BASE}/+/desired", f"{BASE}/cmd")


def test_signed_desired_point_becomes_one_command_with_every_field() -> None:
    """A one-point desired message keeps its id, times, key, signature and client token."""
    got = decoded(DESIRED, {"state": {"speed_setpoint": 1450}, "id": "c7f1e2",
                            "issued_at": 1_763_770_000_000, "expires_at": 1_763_770_030_000,
                            "key_id": "ops-console", "sig": SIG, "client_token": "ui-42"})
    assert got == Decoded((Command(
        "c7f1e2", "pump1/speed_setpoint", 1450, CommandOrigin.JSON_DESIRED, NOW_NS,
        issued_at_ms=1_763_770_000_000, expires_at_ms=1_763_770_030_000, key_id="ops-console",
        signature=SIG, operation="operate", token=None, reply_to="ui-42"),))


def test_desired_with_several_points_gives_each_command_its_own_id() -> None:
    """Point p of message id m becomes command m/p, so replay checks and audit rows stay unique."""
    got = decoded(DESIRED, {"state": {"speed_setpoint": 1450.5, "run": True, "mode": "auto"},
                            "id": "batch-7", "client_token": "t"})
    assert [(c.id, c.point, c.value, c.reply_to) for c in got.commands] == [
        ("batch-7/speed_setpoint", "pump1/speed_setpoint", 1450.5, "t"),
        ("batch-7/run", "pump1/run", True, "t"),
        ("batch-7/mode", "pump1/mode", "auto", "t")]
    assert got.clears == ()


def test_desired_null_withdraws_the_pending_value_without_a_command() -> None:
    """Merge patch: null clears the point's pending desired value, absent keys are untouched."""
    got = decoded(DESIRED, {"state": {"speed_setpoint": None, "run": False}})
    assert got.clears == ("pump1/speed_setpoint",)
    assert [(c.point, c.value) for c in got.commands] == [("pump1/run", False)]


def test_empty_desired_state_is_a_no_op() -> None:
    """An empty merge patch changes nothing and is not an error."""
    assert decoded(DESIRED, {"state": {}}) == Decoded(())


def test_messages_without_an_id_get_a_generated_one() -> None:
    """The injected id maker names an id-less message; the default is a uuid4 in hex."""
    assert [c.id for c in decoded(DESIRED, {"state": {"run": True, "mode": "x"}}).commands] == [
        "gen1/run", "gen1/mode"]
    assert decoded(CMD, {"point": "pump1/run", "value": True}).commands[0].id == "gen1"
    default = JsonTwinDecoder("edgetwin/v1", "gw1", POINTS)
    result = default.parse(CMD, b'{"point": "pump1/run", "value": true}', NOW_NS)
    assert isinstance(result, Decoded)
    generated = result.commands[0].id
    assert len(generated) == 32 and int(generated, 16) >= 0


def test_read_only_point_is_decoded_the_policy_decides() -> None:
    """Sync only decodes and routes: writability is the safety policy's question."""
    assert not SPECS["pump1/motor_temp"].writable
    assert decoded(DESIRED, {"state": {"motor_temp": 20}}).commands[0].point == "pump1/motor_temp"


def test_cmd_operate_and_select_with_token() -> None:
    """A cmd is one Command; op defaults to operate and an operate may name a select token."""
    select = decoded(CMD, {"id": "sel-1", "point": "pump1/run", "value": True, "op": "select",
                           "client_token": "ui-1"}).commands
    assert select == (Command("sel-1", "pump1/run", True, CommandOrigin.JSON_CMD, NOW_NS,
                              operation="select", reply_to="ui-1"),)
    operate = decoded(CMD, {"id": "op-1", "point": "pump1/run", "value": True,
                            "token": "sel-1", "issued_at": 1.7e12}).commands[0]
    assert (operate.operation, operate.token, operate.issued_at_ms) == (
        "operate", "sel-1", 1_700_000_000_000)


def test_a_cmd_may_address_any_asset_of_the_gateway() -> None:
    """The cmd topic is gateway-wide: the point names the asset."""
    assert decoded(CMD, {"point": "tank1/level", "value": 3}).commands[0].point == "tank1/level"


def _big(n: int) -> dict[str, Any]:
    return {"state": {"mode": "x" * n}}


REJECTED: list[tuple[str, str, object, RejectCode]] = [
    ("not JSON", DESIRED, b"{state:", RejectCode.MALFORMED_JSON),
    ("not UTF-8", CMD, b'{"point": "\xff"}', RejectCode.MALFORMED_JSON),
    ("UTF-16 JSON", CMD, '{"point": "pump1/run", "value": 1}'.encode("utf-16"),
     RejectCode.MALFORMED_JSON),
    ("NaN literal", DESIRED, b'{"state": {"speed_setpoint": NaN}}', RejectCode.MALFORMED_JSON),
    ("Infinity literal", CMD, b'{"point": "pump1/run", "value": -Infinity}',
     RejectCode.MALFORMED_JSON),
    ("duplicate key", DESIRED, b'{"state": {"run": true, "run": false}}',
     RejectCode.MALFORMED_JSON),
    ("nested too deeply", CMD, b"[" * 8000 + b"]" * 8000, RejectCode.MALFORMED_JSON),
    ("integer over the digit limit", CMD, b'{"point": "pump1/run", "value": ' + b"9" * 5000 + b"}",
     RejectCode.MALFORMED_JSON),
    ("array", DESIRED, [1], RejectCode.NOT_AN_OBJECT),
    ("string", CMD, "cmd", RejectCode.NOT_AN_OBJECT),
    ("null", CMD, None, RejectCode.NOT_AN_OBJECT),
    ("typo in a field name", CMD, {"point": "pump1/run", "value": 1, "expire_at": 5},
     RejectCode.UNKNOWN_FIELD),
    ("a cmd field in desired", DESIRED, {"state": {}, "point": "pump1/run"},
     RejectCode.UNKNOWN_FIELD),
    ("no state", DESIRED, {"id": "x"}, RejectCode.MISSING_FIELD),
    ("no point", CMD, {"value": 1}, RejectCode.MISSING_FIELD),
    ("no value", CMD, {"point": "pump1/run"}, RejectCode.MISSING_FIELD),
    ("sig without key_id", CMD, {"point": "pump1/run", "value": 1, "sig": SIG},
     RejectCode.MISSING_FIELD),
    ("key_id without sig", DESIRED, {"state": {"run": 1}, "key_id": "k"},
     RejectCode.MISSING_FIELD),
    ("state is a list", DESIRED, {"state": [["run", 1]]}, RejectCode.WRONG_TYPE),
    ("nested object value", DESIRED, {"state": {"run": {"v": 1}}}, RejectCode.WRONG_TYPE),
    ("array value", CMD, {"point": "pump1/run", "value": [1]}, RejectCode.WRONG_TYPE),
    ("null cmd value", CMD, {"point": "pump1/run", "value": None}, RejectCode.WRONG_TYPE),
    ("value overflows to inf", CMD, b'{"point": "pump1/run", "value": 1e400}',
     RejectCode.WRONG_TYPE),
    ("lone surrogate", DESIRED, b'{"state": {"mode": "\\ud800"}}', RejectCode.WRONG_TYPE),
    ("string value too long", DESIRED, _big(1025), RejectCode.WRONG_TYPE),
    ("point not a string", CMD, {"point": 5, "value": 1}, RejectCode.WRONG_TYPE),
    ("issued_at a bool", CMD, {"point": "pump1/run", "value": 1, "issued_at": True},
     RejectCode.WRONG_TYPE),
    ("issued_at fractional", CMD, {"point": "pump1/run", "value": 1, "issued_at": 1.5},
     RejectCode.WRONG_TYPE),
    ("expires_at negative", DESIRED, {"state": {}, "expires_at": -1}, RejectCode.WRONG_TYPE),
    ("expires_at past 2**53", DESIRED, {"state": {}, "expires_at": 2**53},
     RejectCode.WRONG_TYPE),
    ("id with a space", CMD, {"id": "a b", "point": "pump1/run", "value": 1},
     RejectCode.WRONG_TYPE),
    ("id a number", DESIRED, {"id": 7, "state": {}}, RejectCode.WRONG_TYPE),
    ("id too long", DESIRED, {"id": "x" * 129, "state": {}}, RejectCode.WRONG_TYPE),
    ("client_token over 64", CMD, {"point": "pump1/run", "value": 1, "client_token": "t" * 65},
     RejectCode.WRONG_TYPE),
    ("client_token not ASCII", CMD, {"point": "pump1/run", "value": 1, "client_token": "ü"},
     RejectCode.WRONG_TYPE),
    ("sig not base64", CMD, {"point": "pump1/run", "value": 1, "key_id": "k", "sig": "a*b="},
     RejectCode.WRONG_TYPE),
    ("sig too short", CMD, {"point": "pump1/run", "value": 1, "key_id": "k", "sig": ""},
     RejectCode.WRONG_TYPE),
    ("op unknown", CMD, {"point": "pump1/run", "value": 1, "op": "cancel"},
     RejectCode.WRONG_TYPE),
    ("token with a newline", CMD, {"point": "pump1/run", "value": 1, "token": "t\n"},
     RejectCode.WRONG_TYPE),
    ("unknown desired point", DESIRED, {"state": {"run": 1, "speed": 2}},
     RejectCode.UNKNOWN_POINT),
    ("unknown cmd point", CMD, {"point": "pump9/run", "value": 1}, RejectCode.UNKNOWN_POINT),
    ("unknown asset", f"{BASE}/pump9/desired", {"state": {"run": 1}}, RejectCode.UNKNOWN_POINT),
    ("payload over the cap", DESIRED, _big(MAX_PAYLOAD_BYTES), RejectCode.TOO_LARGE),
    ("too many points", DESIRED, {"state": {f"p{i}": 1 for i in range(65)}},
     RejectCode.TOO_LARGE),
    ("signed with two points", DESIRED, {"state": {"run": 1, "mode": "a"}, "key_id": "k",
                                         "sig": SIG}, RejectCode.TOO_LARGE),
    ("another gateway", "edgetwin/v1/gw2/cmd", {"point": "pump1/run", "value": 1},
     RejectCode.BAD_TOPIC),
    ("another prefix", "other/gw1/cmd", {"point": "pump1/run", "value": 1},
     RejectCode.BAD_TOPIC),
    ("result topic", f"{BASE}/cmd/result", {}, RejectCode.BAD_TOPIC),
    ("reported topic", f"{BASE}/pump1/reported", {}, RejectCode.BAD_TOPIC),
    ("too deep a desired topic", f"{BASE}/pump1/x/desired", {}, RejectCode.BAD_TOPIC),
]


@pytest.mark.parametrize(("topic", "doc", "code"), [r[1:] for r in REJECTED],
                         ids=[r[0] for r in REJECTED])
def test_bad_input_is_rejected_with_its_code(topic: str, doc: object, code: RejectCode) -> None:
    """Each kind of bad input gets its fixed error code and a message saying what is wrong."""
    got = rejected(topic, doc)
    assert got.code is code, got
    assert got.message


def test_retained_commands_are_refused() -> None:
    """A retained command would come back on every reconnect: it is never resumed."""
    got = rejected(CMD, {"id": "x", "point": "pump1/run", "value": 1}, retained=True)
    assert (got.code, got.id) == (RejectCode.RETAINED, "x")


def test_rejection_echoes_what_it_could_read() -> None:
    """id, client token and a known point come back, so the sender can correlate the answer."""
    got = rejected(CMD, {"id": "c1", "client_token": "ui 7", "point": "pump1/run", "value": [1]})
    assert (got.origin, got.asset, got.id, got.point, got.client_token) == (
        CommandOrigin.JSON_CMD, "pump1", "c1", "pump1/run", "ui 7")
    one = rejected(DESIRED, {"id": "d1", "state": {"run": {"x": 1}}})
    assert (one.origin, one.asset, one.point) == (CommandOrigin.JSON_DESIRED, "pump1", "pump1/run")


def test_rejection_never_echoes_an_unknown_point_or_asset() -> None:
    """A sender cannot make the gateway open outbox lanes for made-up assets."""
    cmd = rejected(CMD, {"id": "c1", "point": "evil/x", "value": 1})
    assert (cmd.asset, cmd.point, cmd.id) == ("", None, "c1")
    desired = rejected(f"{BASE}/evil/desired", {"state": {"x": 1}})
    assert (desired.asset, desired.point) == ("", None)


def test_payload_cap_is_configurable_and_checked_before_parsing() -> None:
    """A payload over the cap is refused by its size alone, even when it is not JSON."""
    small = decoder(max_payload_bytes=10)
    assert small.parse(CMD, b"x" * 11, NOW_NS) == Rejection(
        RejectCode.TOO_LARGE, "payload of 11 bytes is over the 10 byte limit",
        CommandOrigin.JSON_CMD)
    few = decoder(max_points=1).parse(DESIRED, b'{"state": {"run": 1, "mode": 2}}', NOW_NS)
    assert isinstance(few, Rejection) and few.code is RejectCode.TOO_LARGE


def test_exactly_the_cap_is_accepted() -> None:
    """The cap is inclusive: a payload of exactly max_payload_bytes is parsed."""
    payload = b'{"state": {"mode": "' + b"x" * 1000 + b'"}}'
    result = decoder(max_payload_bytes=len(payload)).parse(DESIRED, payload, NOW_NS)
    assert isinstance(result, Decoded)
