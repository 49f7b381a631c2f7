"""The JSON Schemas in docs/schemas/ against what the encoder publishes and the decoder accepts."""

import functools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError, validators

from edgetwin.core.types import (
    Command,
    CommandOrigin,
    Delta,
    OutboxEntry,
    PointState,
    Quality,
    Record,
    RecordKind,
    Verdict,
)
from edgetwin.sync.jsontwin import (
    MAX_PAYLOAD_BYTES,
    Decoded,
    JsonTwinDecoder,
    JsonTwinEncoder,
    PendingDesired,
    RejectCode,
    Rejection,
    command_result,
    rejection_result,
)
from edgetwin.sync.session import MAX_INBOUND_BYTES
from edgetwin.sync.sparkplug.host import PrimaryHost
from edgetwin.sync.sparkplug.node import BadCommand
from tests.sync.test_jsontwin_inbound import CMD, DESIRED, NOW_NS, POINTS, SIG

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
NAMES = ("reported", "twin", "status", "alarms", "cmd-result", "audit", "desired", "cmd")
ENC = JsonTwinEncoder("edgetwin/v1", "gw1")


def _ecma_pattern(
    validator: Any, pattern: str, instance: object, schema: object
) -> Iterator[ValidationError]:
    """JSON Schema's ``$`` is ECMA-262's: end of input; Python's also matches before a newline."""
    if validator.is_type(instance, "string"):
        python = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        if re.search(python, str(instance)) is None:
            yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


@functools.cache
def schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text())
    return doc


@functools.cache
def validator(name: str) -> Any:
    return Validator(schema(name))


def check(name: str, doc: object) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator(name).iter_errors(doc)]
    assert not errors, (name, doc, errors)


def published(name: str, payload: bytes) -> None:
    check(name, json.loads(payload))


# -- the files themselves ------------------------------------------------------------------------

def test_there_is_one_schema_per_payload() -> None:
    """docs/schemas holds exactly the eight payloads of the JSON twin scheme."""
    assert sorted(p.stem for p in SCHEMAS.glob("*.json")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft_2020_12_and_its_examples_match(name: str) -> None:
    """Each file is a correct 2020-12 schema with a title, a description and valid examples."""
    doc = schema(name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(doc)
    assert doc["title"] and doc["description"] and doc["examples"]
    for example in doc["examples"]:
        check(name, example)


# -- what the gateway publishes ------------------------------------------------------------------

values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                   st.floats(allow_nan=True, allow_infinity=True))
names = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
states = st.builds(PointState, values, st.integers(0, 2**62), st.sampled_from(Quality),
                   st.integers(0, 2**40))


@given(st.integers(0, 2**40), st.dictionaries(names, states, max_size=5), st.booleans())
def test_reported_deltas_match_their_schema(seq: int, changes: dict[str, PointState],
                                            historical: bool) -> None:
    """Property: every delta the encoder publishes is a valid reported.json document."""
    delta = Delta("pump1", 7, 1_000_000, changes)
    published("reported", ENC.entry(OutboxEntry(seq, delta, historical)).payload)


pendings = st.builds(PendingDesired, values, st.integers(0, 2**45), st.text(min_size=1))


@given(st.dictionaries(names, states, max_size=5), st.dictionaries(names, pendings, max_size=5))
def test_snapshots_match_their_schema(state: dict[str, PointState],
                                      desired: dict[str, PendingDesired]) -> None:
    """Property: every retained twin snapshot, with or without pending values, is valid."""
    published("twin", ENC.snapshot("pump1", 3, state, desired).payload)
    published("twin", ENC.snapshot("pump1", 3, state).payload)


def test_status_matches_its_schema() -> None:
    """Both forms of the status, the online one and the last will, are valid."""
    published("status", ENC.status(online=True, ts_ms=1).payload)
    published("status", ENC.status(online=False, ts_ms=2).payload)


@pytest.mark.parametrize("active", [True, False])
def test_outbox_alarms_match_their_schema(active: bool) -> None:
    """An alarm shaped like the outbox's is a valid alarms.json document, raised or cleared."""
    record = Record(RecordKind.ALARM, "", 5_000_000, {
        "alarm": "outbox_full", "active": active, "source": "outbox", "message": "full"})
    published("alarms", ENC.entry(OutboxEntry(3, record, historical=active)).payload)


# The audit entries of a real safety policy are checked in tests/safety/test_audit_schema.py.


def test_an_audit_entry_keeps_its_chain_number_apart_from_the_message_seq() -> None:
    """The audit log's own seq must not replace the message seq consumers deduplicate by.

    The HIL bench found it: audit record 1 went out with the seq of delta 1, and a consumer
    dropping duplicates by seq would have dropped one of the two.
    """
    entry = {"seq": 1, "ts": 5, "event": "readonly", "readonly": True, "by": "signal SIGUSR2",
             "prev": None}  # the first line of a log, as AuditLog.append returns it
    doc = json.loads(ENC.record(1024, Record(RecordKind.AUDIT, "", 5_000_000, entry)).payload)
    assert doc["seq"] == 1024
    assert doc["entry_seq"] == 1
    assert doc["prev"] is None
    published("audit", json.dumps(doc).encode())


def _refused(code: str, topic: str, err: BaseException | str) -> Record:
    """The record of a refused inbound message, built as ``Session._bad_input`` builds it."""
    return Record(RecordKind.AUDIT, "", time.time_ns(), {
        "event": "inbound_refused", "code": code, "topic": topic, "detail": str(err),
    })


def _rejected(topic: str, doc: object) -> Record:
    rejection = _parse(topic, doc)
    assert isinstance(rejection, Rejection)
    return _refused(rejection.code.value, topic, rejection.message)


def _bad_host_state() -> Record:
    host = PrimaryHost("scada1")
    with pytest.raises(ValueError, match="STATE from scada1") as raised:
        host.update(b'{"online": "yes"}')
    return _refused("bad_state", host.topic, raised.value)


@pytest.mark.parametrize("make", [
    lambda: _rejected(DESIRED, {"state": {"speed_setpoint": 1450}, "expire_at": 1}),
    lambda: _rejected(CMD, ["not", "an", "object"]),
    lambda: _refused("too_large", CMD, f"{MAX_INBOUND_BYTES + 1} bytes (limit "
                                       f"{MAX_INBOUND_BYTES})"),
    lambda: _refused("malformed_payload", "spBv1.0/plant1/NCMD/gw1",
                     BadCommand("malformed_payload", "NCMD is not a Sparkplug payload: "
                                                     "Error parsing message")),
    _bad_host_state,
    lambda: _refused("flooded", CMD, "commands arrive faster than 20/s "
                                     "(sync.inbound_commands.per_second, burst 128)"),
])
def test_refused_inbound_messages_match_the_audit_schema(make: Any) -> None:
    """What the session audits about refused input is a valid audit.json inbound_refused."""
    for historical in (False, True):
        published("audit", ENC.entry(OutboxEntry(7, make(), historical)).payload)


def _example(event: str, code: str | None = None) -> dict[str, Any]:
    return next(dict(e) for e in schema("audit")["examples"]
                if e["event"] == event and code in (None, e.get("code")))


@pytest.mark.parametrize(("doc", "error"), [
    ({k: v for k, v in _example("verdict").items() if k != "code"},
     "'code' is a required property"),
    (_example("verdict") | {"event": "decision"}, "'decision' is not one of"),
    ({k: v for k, v in _example("readonly").items() if k != "event"},
     "'event' is a required property"),
    (_example("verdict", "interlock") | {"code": "accepted"}, "should not be valid under"),
    (_example("verdict") | {"code": "waved_through"}, "'waved_through' is not one of"),
    (_example("verdict", "interrupted") | {"received_ms": 1}, "None was expected"),
    (_example("pending") | {"decision": "denied"}, "('decision' was unexpected)"),
    ({k: v for k, v in _example("pending").items() if k != "prev"},
     "'prev' is a required property"),
    (_example("inbound_refused") | {"entry_seq": 3}, "('entry_seq' was unexpected)"),
    (_example("readonly") | {"asset": "pump1"}, "'' was expected"),
])
def test_audit_schema_refuses_what_the_gateway_never_sends(doc: dict[str, Any],
                                                           error: str) -> None:
    """The schema is tight, and each of these fails for its own reason, not another one's."""
    messages = [e.message for e in validator("audit").iter_errors(doc)]
    assert any(error in m for m in messages), messages


commands = st.builds(
    Command, st.text(min_size=1), st.sampled_from(sorted(POINTS)),
    st.one_of(st.booleans(), st.integers(), st.text(), st.floats()),
    st.sampled_from(CommandOrigin), st.integers(0, 2**62),
    operation=st.sampled_from(["operate", "select"]), reply_to=st.none() | st.text())
rejections = st.builds(
    Rejection, st.sampled_from(RejectCode), st.text(), st.none() | st.sampled_from(CommandOrigin),
    asset=st.sampled_from(["", "pump1"]), id=st.none() | st.text(min_size=1),
    point=st.none() | st.sampled_from(sorted(POINTS)), client_token=st.none() | st.text())


@given(commands, st.booleans(), st.text())
def test_command_results_match_their_schema(cmd: Command, accepted: bool, reason: str) -> None:
    """Property: every verdict's answer is a valid cmd-result.json document."""
    record = command_result(cmd, Verdict(accepted, reason), 1_000_000)
    published("cmd-result", ENC.entry(OutboxEntry(1, record)).payload)


@given(rejections)
def test_rejection_results_match_their_schema(rejection: Rejection) -> None:
    """Property: every rejection's answer is a valid cmd-result.json document."""
    published("cmd-result", ENC.record(1, rejection_result(rejection, 1_000_000)).payload)


# -- what the gateway accepts --------------------------------------------------------------------

WIDE = POINTS | {f"pump1/p{i}" for i in range(70)}
DECODER = JsonTwinDecoder("edgetwin/v1", "gw1", WIDE)


def _parse(topic: str, doc: object) -> Decoded | Rejection:
    return DECODER.parse(topic, json.dumps(doc).encode(), NOW_NS)


@pytest.mark.parametrize(("name", "topic"), [("desired", DESIRED), ("cmd", CMD)])
def test_documented_inbound_examples_are_decoded(name: str, topic: str) -> None:
    """Every example in desired.json and cmd.json decodes into Commands (or a withdrawal)."""
    for example in schema(name)["examples"]:
        result = _parse(topic, example)
        assert isinstance(result, Decoded), (example, result)
        assert result.commands or result.clears


# Documents that are mostly valid, with at most one field made wrong (its type, its format or
# one past a limit), so that both answers of the decoder are exercised often.
scalars = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=5), st.just("x" * 1024))
not_scalars = st.one_of(st.just("x" * 1025), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
tokens = st.one_of(st.from_regex(r"[!-~]{1,8}", fullmatch=True), st.just("x" * 128))
bad_tokens = st.one_of(st.sampled_from(["", "x" * 129, "a\n", "a b", "\u00e9"]), st.integers())
times = st.one_of(st.integers(0, 2**53 - 1), st.just(1.7e12))
bad_times = st.one_of(st.sampled_from([-1, 2**53, 1.5, True, "1"]), st.none())
client_tokens = st.one_of(st.from_regex(r"[ -~]{1,8}", fullmatch=True), st.just("t" * 64))
bad_client_tokens = st.sampled_from(["", "t" * 65, "\u00fc", "a\n", 1])
bad_signatures = st.sampled_from(["", "A", "A===", "a*b=", "A" * 348, 7])
desired_names = st.sampled_from(
    sorted(p.partition("/")[2] for p in WIDE if p.startswith("pump1/")))
GOOD = {
    "id": tokens, "issued_at": times, "expires_at": times, "client_token": client_tokens,
    "state": st.dictionaries(desired_names, st.none() | scalars, max_size=3),
    "point": st.sampled_from(sorted(WIDE)), "value": scalars,
    "op": st.sampled_from(["operate", "select"]), "token": tokens,
}
BAD = {
    "id": bad_tokens, "issued_at": bad_times, "expires_at": bad_times,
    "client_token": bad_client_tokens, "key_id": bad_tokens, "sig": bad_signatures,
    "state": st.one_of(st.dictionaries(desired_names, not_scalars, min_size=1, max_size=2),
                       st.integers(63, 66).map(lambda n: {f"p{i}": 1 for i in range(n)}),
                       st.lists(st.integers(), max_size=1), st.text(max_size=2), st.none()),
    "point": st.one_of(st.integers(), st.none(), st.just("pump1")),
    "value": st.none() | not_scalars,
    "op": st.sampled_from(["cancel", "", 1, None]), "token": bad_tokens,
    "expire_at": times,
}


@st.composite
def inbound_docs(draw: st.DrawFn, required: tuple[str, ...], optional: tuple[str, ...]) -> Any:
    doc = {k: draw(GOOD[k]) for k in required if draw(st.integers(0, 9))}  # each missing 1 in 10
    doc |= {k: draw(GOOD[k]) for k in optional if draw(st.booleans())}
    if draw(st.integers(0, 3)) == 0:  # a signed message
        doc |= {"key_id": draw(tokens), "sig": SIG}
    if draw(st.booleans()):
        field = draw(st.sampled_from(sorted(k for k in BAD if k in required + optional
                                            or k in ("key_id", "sig", "expire_at"))))
        doc[field] = draw(BAD[field])
    return doc


COMMON = ("id", "issued_at", "expires_at", "client_token")
desired_docs = inbound_docs(("state",), COMMON)
cmd_docs = inbound_docs(("point", "value"), (*COMMON, "op", "token"))


@pytest.mark.parametrize(("name", "topic", "docs"),
                         [("desired", DESIRED, desired_docs), ("cmd", CMD, cmd_docs)])
@given(data=st.data())
def test_decoder_accepts_exactly_what_the_schema_allows(
    name: str, topic: str, docs: Any, data: st.DataObject
) -> None:
    """Property: for configured points within the size cap, decoded iff valid per the schema."""
    doc = json.loads(json.dumps(data.draw(docs)))
    assume(len(json.dumps(doc).encode()) <= MAX_PAYLOAD_BYTES)
    result = _parse(topic, doc)
    valid = validator(name).is_valid(doc)
    assert isinstance(result, Decoded) == valid, (doc, result)
