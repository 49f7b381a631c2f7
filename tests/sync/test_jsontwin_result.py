import json

from edgetwin.core.types import (
    Command,
    CommandOrigin,
    OutboxEntry,
    Priority,
    Record,
    RecordKind,
    Verdict,
    priority_of,
)
from edgetwin.sync.jsontwin import (
    JsonTwinEncoder,
    RejectCode,
    Rejection,
    command_result,
    rejection_result,
)

ENC = JsonTwinEncoder("edgetwin/v1", "gw1")
TS_NS = 1_763_770_000_456_789_000


def test_verdict_becomes_a_command_result_record() -> None:
    """The answer is a COMMAND_RESULT record of the point's asset, evicted last from the outbox."""
    cmd = Command("c7", "pump1/speed_setpoint", 1450, CommandOrigin.JSON_DESIRED, 1,
                  reply_to="ui-42")
    record = command_result(cmd, Verdict(accepted=False, reason="interlock pump1/run == true"),
                            TS_NS)
    assert record == Record(RecordKind.COMMAND_RESULT, "pump1", TS_NS, {
        "id": "c7", "point": "pump1/speed_setpoint", "value": 1450, "op": "operate",
        "origin": "json/desired", "accepted": False, "reason": "interlock pump1/run == true",
        "client_token": "ui-42"})
    assert priority_of(record) is Priority.COMMAND


def test_result_goes_out_on_cmd_result_with_seq_and_ms() -> None:
    """Through the outbox the encoder adds seq, ts in ms and the asset."""
    cmd = Command("s1", "pump1/run", True, CommandOrigin.JSON_CMD, 1, operation="select")
    msg = ENC.entry(OutboxEntry(12, command_result(cmd, Verdict(accepted=True, reason="ok"),
                                                   TS_NS)))
    assert (msg.topic, msg.qos, msg.retain) == ("edgetwin/v1/gw1/cmd/result", 1, False)
    assert json.loads(msg.payload) == {
        "seq": 12, "ts": 1_763_770_000_456, "asset": "pump1", "id": "s1", "point": "pump1/run",
        "value": True, "op": "select", "origin": "json/cmd", "accepted": True, "reason": "ok"}


def test_nan_from_a_sparkplug_command_is_answered_as_null() -> None:
    """JSON has no NaN; the answer must still encode."""
    cmd = Command("x", "pump1/speed_setpoint", float("nan"), CommandOrigin.SPARKPLUG_DCMD, 1)
    record = command_result(cmd, Verdict(accepted=False, reason="not a number"), TS_NS)
    assert json.loads(ENC.record(1, record).payload)["value"] is None


def test_rejection_becomes_a_result_with_its_error_code() -> None:
    """A rejected message is answered too: accepted false, the message, the error code."""
    rejection = Rejection(RejectCode.UNKNOWN_POINT, "unknown point 'pump9/x'",
                          CommandOrigin.JSON_CMD, id="c9", client_token="t")
    record = rejection_result(rejection, TS_NS)
    assert record == Record(RecordKind.COMMAND_RESULT, "", TS_NS, {
        "id": "c9", "point": None, "origin": "json/cmd", "accepted": False,
        "reason": "unknown point 'pump9/x'", "error_code": "unknown_point", "client_token": "t"})


def test_rejection_of_a_foreign_topic_has_no_origin() -> None:
    """bad_topic answers carry origin null."""
    record = rejection_result(Rejection(RejectCode.BAD_TOPIC, "no", None), TS_NS)
    assert record.body["origin"] is None and "client_token" not in record.body
