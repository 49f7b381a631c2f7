"""What a real safety policy hands on for the audit topic, published, against audit.json.

The policy runs as in the other safety tests (real keys, audit log and replay store on disk);
every record it gives ``on_audit`` goes through the JSON twin encoder as the outbox hands it
over, and the message must be a valid docs/schemas/audit.json document.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgetwin.safety
from edgetwin.core.types import OutboxEntry, PointState, Quality, Record, WriteOutcome
from edgetwin.safety import token_from_reason
from edgetwin.safety.readonly import write_readonly
from edgetwin.sync.jsontwin import JsonTwinEncoder
from tests.safety.conftest import Keys, Rig, crash_while_writing, good, skid_twin
from tests.safety.test_policy_properties import (
    Step,
    World,
    apply,
    command_for,
    make_rig,
    simulated_device,
    streams,
    worlds,
)
from tests.sync.test_jsontwin_schemas import published, schema

ENC = JsonTwinEncoder("edgetwin/v1", "gw1")
SETPOINT = "pump1/speed_setpoint"


def publish(records: list[Record]) -> list[dict[str, Any]]:
    """Each record as the audit topic gets it (every other one a backlog replay), validated."""
    docs = []
    for seq, record in enumerate(records, start=1000):
        message = ENC.entry(OutboxEntry(seq, record, historical=seq % 2 == 1))
        assert message.topic == "edgetwin/v1/gw1/audit"
        published("audit", message.payload)
        docs.append(json.loads(message.payload))
    return docs


async def test_every_entry_of_a_working_policy_matches_the_schema(rig: Rig) -> None:
    """Writes, denials, a select, failures and the read-only switch: all published validly."""
    assert rig.policy is not None
    assert (await rig.send(SETPOINT, 1500)).accepted
    rig.twin["tank1/level"] = PointState(7.2, rig.clock.wall, Quality.GOOD, 3)
    assert not (await rig.send("pump1/run", False, op="select")).accepted  # interlock
    rig.twin["tank1/level"] = PointState(None, rig.clock.wall, Quality.BAD, 4)
    assert not (await rig.send("pump1/run", False, op="select")).accepted  # interlock_input
    rig.twin["tank1/level"] = good(50.0)
    del rig.twin[SETPOINT]
    assert not (await rig.send(SETPOINT, 1550)).accepted  # step_input: MISSING was read
    rig.twin[SETPOINT] = good(1500)
    assert not (await rig.send(SETPOINT, 1550, unsigned=True)).accepted  # no key_id
    assert not (await rig.send("pump1/mode", "off")).accepted  # not_allowed, nothing read
    command = rig.command("pump1/valve", 20)
    assert (await rig.policy.decide(command)).accepted
    assert not (await rig.policy.decide(command)).accepted  # replay
    selected = await rig.send("pump1/run", False, op="select")
    assert selected.accepted
    assert (await rig.send("pump1/run", False, token=token_from_reason(selected.reason))).accepted
    rig.outcome = lambda point, value: WriteOutcome(False, "timeout")
    assert not (await rig.send("pump1/valve", 30.0)).accepted
    rig.outcome = lambda point, value: WriteOutcome(True, None, 39.5)
    assert not (await rig.send("pump1/valve", 40.0)).accepted
    await rig.policy.set_readonly(True, by="signal SIGUSR2")
    assert not (await rig.send(SETPOINT, 1550)).accepted
    await rig.policy.set_readonly(False, by="test")
    write_readonly(rig.state_dir, True, "edgetwin readonly on (alice)")
    assert await rig.policy.reload_readonly()

    docs = publish(rig.records)
    assert [d["entry_seq"] for d in docs] == list(range(1, len(docs) + 1))
    assert {d["event"] for d in docs} == {"pending", "verdict", "readonly"}
    assert [d["code"] for d in docs if d["event"] == "verdict"] == [
        "accepted", "interlock", "interlock_input", "step_input", "unsigned", "not_allowed",
        "accepted", "replay", "selected", "accepted", "write_failed", "read_back", "readonly"]
    assert [(d["readonly"], d["asset"]) for d in docs if d["event"] == "readonly"] == [
        (True, ""), (False, ""), (True, "")]


async def test_an_interrupted_verdict_matches_the_schema(
        rig: Rig, keys: Keys, tmp_path: Path) -> None:
    """A start that closes a command the crash left open publishes a valid verdict."""
    crashed = tmp_path / "crashed"
    writing = await crash_while_writing(rig, SETPOINT, 1500, crashed)
    assert rig.hold is not None
    rig.hold.set()
    assert (await writing).accepted

    after = Rig(keys, crashed, rig.clock, skid_twin(), rig.specs, rig.config)
    rig.clock.advance(5.0)
    policy = after.open()
    try:
        await policy.hand_on_recovered()
    finally:
        await after.close()
    pending, _, interrupted = publish([*rig.records, *after.records])
    assert interrupted == {**interrupted, "event": "verdict", "code": "interrupted",
                           "id": pending["id"], "received_ms": None, "reads": pending["reads"],
                           "entry_seq": pending["entry_seq"] + 1, "asset": "pump1"}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(worlds(), st.data())
def test_any_command_stream_is_audited_within_the_schema(
        keys: Keys, world: World, data: st.DataObject) -> None:
    """Property: random rules, twins and commands (replays, bad keys, refused writes) too."""
    stream = data.draw(streams(world, 1, 12))
    with tempfile.TemporaryDirectory() as folder:
        rig = make_rig(keys, Path(folder), world)
        asyncio.run(_decide_all(rig, stream))
    publish(rig.records)


async def _decide_all(rig: Rig, stream: list[Step]) -> None:
    rig.outcome = simulated_device(rig)
    policy = rig.open()
    first = None
    try:
        for step in stream:
            rig.clock.advance(step.advance_s)
            apply(rig.twin, step.mutate)
            command = command_for(rig, step)
            first = first or command
            await policy.decide(first if step.replay else command)
    finally:
        await rig.close()


def test_the_schema_names_every_verdict_code_the_policy_can_give() -> None:
    """The code enum is exactly the codes in the safety package, so a new one fails here.

    Every Denial is made from a literal code, or from a (code, reason) the signature and
    freshness checks return, or from an interlock's outcome: literals too, all found here.
    """
    source = "\n".join(p.read_text() for p in
                       sorted(Path(edgetwin.safety.__file__).parent.glob("*.py")))
    literal = re.compile(r'Denial\("(\w+)"|trail\.code = "(\w+)"|return "(\w+)", '
                         r'|Outcome\(False, "(\w+)"|"code": "(\w+)"')
    found = {next(g for g in m.groups() if g) for m in literal.finditer(source)}
    assert set(re.findall(r'Denial\((?!")([^,)]*)', source)) == {"*problem", "outcome.code"}
    codes = schema("audit")["$defs"]["verdict"]["properties"]["code"]["enum"]
    assert sorted(codes) == sorted(found | {"denied"})  # denied: _verdict_fields' fallback
