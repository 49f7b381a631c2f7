"""The policy's verdicts, one test per way to be denied, plus the ways to be accepted."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from edgetwin.core.types import (
    Command,
    CommandOrigin,
    PointState,
    Quality,
    Record,
    WriteOutcome,
)
from edgetwin.safety import audit_dir, read_tail, token_from_reason, verify_chain
from edgetwin.safety.readonly import readonly_path
from tests.safety.conftest import Rig, commands_config, good

# -- accepted -----------------------------------------------------------------------------------


async def test_allowed_command_is_written_once_and_audited(rig: Rig) -> None:
    """A command that passes every step is written once, read back, and audited twice."""
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert verdict.accepted
    assert verdict.reason == "accepted: wrote 1500 to pump1/speed_setpoint, read back 1500"
    assert rig.writes == [("pump1/speed_setpoint", 1500)]
    events = [r.body["event"] for r in rig.records]
    assert events == ["pending", "verdict"]
    entry = rig.verdicts()[0]
    assert entry["code"] == "accepted"
    assert entry["reads"] == {
        "pump1/speed_setpoint": {"v": 1450, "q": "GOOD", "ts": 1_763_770_000_000},
        "pump1/run": {"v": True, "q": "GOOD", "ts": 1_763_770_000_000},
        "pump1/motor_temp": {"v": 60.5, "q": "GOOD", "ts": 1_763_770_000_000},
        "tank1/level": {"v": 50.0, "q": "GOOD", "ts": 1_763_770_000_000},
    }
    assert entry["before"]["v"] == 1450
    assert entry["read_back"] == 1500
    assert entry["written_ms"] is not None
    assert entry["key_id"] == "ops"
    assert rig.records[-1].asset == "pump1"


async def test_float_for_an_int_point_is_coerced_when_whole(rig: Rig) -> None:
    """1500.0 for an int point is written as the int 1500; 5 for a float point as 5.0."""
    assert (await rig.send("pump1/speed_setpoint", 1500.0)).accepted
    assert (await rig.send("pump1/valve", 5)).accepted
    assert rig.writes == [("pump1/speed_setpoint", 1500), ("pump1/valve", 5.0)]
    assert [type(v) for _, v in rig.writes] == [int, float]


async def test_select_then_operate_with_its_token(rig: Rig) -> None:
    """A select returns a token; operate with it (same point, value, key) writes; once only."""
    selected = await rig.send("pump1/run", False, op="select")
    assert selected.accepted
    assert selected.reason.startswith("selected: token=")
    token = token_from_reason(selected.reason)
    assert token is not None and len(token) == 32
    assert rig.writes == []
    operated = await rig.send("pump1/run", False, token=token)
    assert operated.accepted, operated.reason
    assert rig.writes == [("pump1/run", False)]
    again = await rig.send("pump1/run", False, token=token)
    assert not again.accepted
    assert rig.last_code() == "sbo_no_select"
    # the token travels in the verdict, never in full in the audit log
    assert token not in json.dumps(read_tail(audit_dir(rig.state_dir), 100))


# -- a test per denial --------------------------------------------------------------------------


async def test_disabled_denies_everything(rig: Rig, keys: object) -> None:
    """commands.enabled false (the default): every command is denied, none written."""
    await rig.close()
    rig.config = rig.config.model_copy(update={"enabled": False})
    rig.open()
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert verdict == dataclasses.replace(verdict, accepted=False)
    assert verdict.reason == ("denied: writes are disabled on this gateway (commands.enabled "
                              "is false)")
    assert rig.writes == []
    assert rig.last_code() == "disabled"


async def test_a_failed_signature_self_test_denies_everything(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken signature check (it cannot be broken here: the fault is injected) fails closed."""
    await rig.close()
    monkeypatch.setattr("edgetwin.safety.policy.self_test",
                        lambda: "a signature over a changed command was accepted")
    rig.open()
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert not verdict.accepted
    assert verdict.reason == ("denied: the signature check failed its self-test "
                              "(a signature over a changed command was accepted)")
    assert rig.writes == []
    assert rig.last_code() == "verifier_fault"


async def test_a_reload_that_enables_commands_runs_the_self_test(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started with writes off, the check is proved when a reload turns them on, and only then."""
    await rig.close()
    enabled = rig.config
    rig.config = rig.config.model_copy(update={"enabled": False})
    runs: list[str] = []

    def broken() -> str:
        runs.append("self-test")
        return "a good signature was refused"

    monkeypatch.setattr("edgetwin.safety.policy.self_test", broken)
    rig.open()
    assert rig.policy is not None
    assert runs == []
    rig.policy.reconfigure(enabled, rig.specs)
    assert runs == ["self-test"]
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert verdict.reason == "denied: the signature check failed its self-test (a good signature " \
                             "was refused)"
    assert rig.writes == []
    rig.policy.reconfigure(enabled, rig.specs)
    assert runs == ["self-test"]  # once per process: a second reload does not prove it again


async def test_the_signature_self_test_passes_on_the_real_library(rig: Rig) -> None:
    assert rig.policy is not None
    assert rig.policy.verifier_fault is None
    assert (await rig.send("pump1/speed_setpoint", 1500)).accepted


async def test_readonly_denies_and_survives_a_restart(rig: Rig) -> None:
    """The local switch denies every command, is stored, and is still on after a restart."""
    assert rig.policy is not None
    await rig.policy.set_readonly(True, by="test")
    assert (await rig.send("pump1/speed_setpoint", 1500)).reason.startswith(
        "denied: the gateway is read-only")
    assert rig.last_code() == "readonly"
    await rig.close()
    policy = rig.open()
    assert policy.readonly
    assert not (await rig.send("pump1/speed_setpoint", 1500)).accepted
    await policy.set_readonly(False, by="test")
    assert (await rig.send("pump1/speed_setpoint", 1500)).accepted
    assert rig.writes == [("pump1/speed_setpoint", 1500)]
    switches = [r.body for r in rig.records if r.body["event"] == "readonly"]
    assert [(s["readonly"], s["by"]) for s in switches] == [(True, "test"), (False, "test")]
    assert rig.records[0].asset == ""


async def test_readonly_file_changed_outside_is_reloaded(rig: Rig) -> None:
    """`edgetwin readonly on` writes the file; reload_readonly picks it up; garbage means on."""
    assert rig.policy is not None
    path = readonly_path(rig.state_dir)
    path.write_text("not json")
    assert await rig.policy.reload_readonly() is True
    path.write_text(json.dumps({"readonly": False, "by": "cli"}))
    assert await rig.policy.reload_readonly() is False


async def test_readonly_on_while_a_command_waits_stops_its_write(rig: Rig) -> None:
    """The switch is checked again just before the write, not only at the start."""
    assert rig.policy is not None
    gate = asyncio.Event()
    writing = asyncio.Event()

    async def blocking_writer(point: str, value: object) -> WriteOutcome:
        rig.writes.append((point, value))  # type: ignore[arg-type]
        writing.set()
        await gate.wait()
        return WriteOutcome(True, None, value)

    rig.policy._writer = blocking_writer  # the one double, slowed down for this test
    first = asyncio.create_task(rig.send("pump1/speed_setpoint", 1500))
    await writing.wait()
    second = asyncio.create_task(rig.send("pump1/speed_setpoint", 1600))
    await asyncio.sleep(0.05)  # the second now waits for the point's lock
    await rig.policy.set_readonly(True, by="test")
    gate.set()
    assert (await first).accepted
    denied = await second
    assert denied.reason.startswith("denied: the gateway is read-only")
    assert rig.writes == [("pump1/speed_setpoint", 1500)]


async def test_unsigned_command_is_denied(rig: Rig) -> None:
    """require_signature: a command without sig/key_id is denied as unsigned."""
    verdict = await rig.send("pump1/speed_setpoint", 1500, unsigned=True)
    assert verdict.reason.startswith("denied: unsigned")
    assert rig.last_code() == "unsigned"
    assert rig.writes == []


async def test_sparkplug_commands_are_unsigned(rig: Rig) -> None:
    """A Sparkplug DCMD carries no signature, so with require_signature it is denied."""
    assert rig.policy is not None
    command = Command("spb-gw-1-0", "pump1/speed_setpoint", 1500, CommandOrigin.SPARKPLUG_DCMD,
                      rig.clock.wall, issued_at_ms=rig.clock.now_ms())
    verdict = await rig.policy.decide(command)
    assert verdict.reason.startswith("denied: unsigned")


async def test_unknown_key_id_is_denied(rig: Rig) -> None:
    """A key id that is not configured is denied, even with a valid signature by it."""
    verdict = await rig.send("pump1/speed_setpoint", 1500, key=rig.keys.rogue, key_id="rogue")
    assert verdict.reason == "denied: unknown key id 'rogue'"
    assert rig.last_code() == "unknown_key"


async def test_wrong_key_is_denied(rig: Rig) -> None:
    """Signed by another key under the configured name: bad signature."""
    verdict = await rig.send("pump1/speed_setpoint", 1500, key=rig.keys.rogue)
    assert verdict.reason.startswith("denied: bad signature")
    assert rig.last_code() == "bad_signature"


@pytest.mark.parametrize("change", [
    {"value": 1600}, {"value": 1500.0}, {"point": "pump1/valve"}, {"id": "other"},
    {"expires_at_ms": 1_900_000_000_000}, {"operation": "select"}, {"token": "t" * 32},
])
async def test_tampered_command_is_denied(rig: Rig, change: dict[str, object]) -> None:
    """Any change to a signed field after signing (even 1500 -> 1500.0) breaks the signature."""
    assert rig.policy is not None
    command = dataclasses.replace(rig.command("pump1/speed_setpoint", 1500), **change)
    verdict = await rig.policy.decide(command)
    assert verdict.reason.startswith("denied: bad signature"), verdict.reason
    assert rig.writes == []


async def test_signature_checked_even_when_not_required(rig: Rig) -> None:
    """With require_signature false an unsigned command passes step 2, a bad signature not."""
    await rig.close()
    rig.config = rig.config.model_copy(update={"require_signature": False})
    rig.open()
    assert (await rig.send("pump1/speed_setpoint", 1500, unsigned=True)).accepted
    forged = await rig.send("pump1/speed_setpoint", 1550, key=rig.keys.rogue)
    assert forged.reason.startswith("denied: bad signature")


async def test_replayed_id_is_denied(rig: Rig) -> None:
    """The same command twice: the second is a replay, even though the first was written."""
    assert rig.policy is not None
    command = rig.command("pump1/speed_setpoint", 1500)
    assert (await rig.policy.decide(command)).accepted
    verdict = await rig.policy.decide(command)
    assert verdict.reason == f"denied: command id {command.id!r} was seen before (replay)"
    assert rig.writes == [("pump1/speed_setpoint", 1500)]


async def test_replay_after_a_restart_is_denied(rig: Rig) -> None:
    """A new policy on the same state_dir still knows the id: a restart opens no window."""
    assert rig.policy is not None
    command = rig.command("pump1/speed_setpoint", 1500)
    assert (await rig.policy.decide(command)).accepted
    await rig.close()
    policy = rig.open()
    verdict = await policy.decide(command)
    assert rig.last_code() == "replay", verdict
    assert len(rig.writes) == 1


async def test_denied_command_still_uses_up_its_id(rig: Rig) -> None:
    """An authenticated id is consumed even when a later step denies: resend with a new id."""
    assert rig.policy is not None
    rig.twin["tank1/level"] = good(5.0)
    command = rig.command("pump1/speed_setpoint", 1500)
    assert not (await rig.policy.decide(command)).accepted
    rig.twin["tank1/level"] = good(50.0)
    assert (await rig.policy.decide(command)).reason.endswith("(replay)")


async def test_expired_command_is_denied(rig: Rig) -> None:
    """Past expires_at (no tolerance) it is denied."""
    command = rig.command("pump1/speed_setpoint", 1500, ttl_s=2)
    rig.clock.advance(2.001)
    assert rig.policy is not None
    verdict = await rig.policy.decide(command)
    assert verdict.reason == "denied: expired 0.001 s ago (expires_at)"


async def test_too_old_command_is_denied(rig: Rig) -> None:
    """issued_at more than max_age + skew ago is denied, even without expires_at passing."""
    command = rig.command("pump1/speed_setpoint", 1500, ttl_s=3600)
    rig.clock.advance(35.001)  # max_age 30 + skew 5
    assert rig.policy is not None
    verdict = await rig.policy.decide(command)
    assert verdict.reason.startswith("denied: issued 35.001 s ago; commands older than max_age")


async def test_command_from_the_future_beyond_skew_is_denied(rig: Rig) -> None:
    """issued_at more than clock_skew ahead of the gateway is denied; within skew it passes."""
    ahead = rig.clock.now_ms() + 5001
    verdict = await rig.send("pump1/speed_setpoint", 1500, issued_at_ms=ahead)
    assert verdict.reason == ("denied: issued 5.001 s in the future; the allowed clock skew "
                              "is 5 s")
    assert (await rig.send("pump1/speed_setpoint", 1500,
                           issued_at_ms=rig.clock.now_ms() + 5000)).accepted


async def test_command_without_issued_at_is_denied(rig: Rig) -> None:
    """A command that does not say when it was issued cannot be judged fresh."""
    await rig.close()
    rig.config = rig.config.model_copy(update={"require_signature": False})
    policy = rig.open()
    command = Command("x1", "pump1/speed_setpoint", 1500, CommandOrigin.SPARKPLUG_DCMD,
                      rig.clock.wall)
    verdict = await policy.decide(command)
    assert rig.last_code() == "no_issued_at", verdict


async def test_clock_stepping_back_refuses_writes(rig: Rig) -> None:
    """After the gateway's clock went back by more than the skew, nothing is written."""
    assert (await rig.send("pump1/speed_setpoint", 1500)).accepted
    rig.clock.wall -= 60 * 10**9
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert rig.last_code() == "clock", verdict
    assert verdict.reason.startswith("denied: the gateway's clock is 60.0 s behind")


async def test_unknown_point_is_denied(rig: Rig) -> None:
    """A point the gateway does not know is denied (the decoder normally stops it earlier)."""
    verdict = await rig.send("pump9/speed", 1)
    assert verdict.reason == "denied: pump9/speed is not a configured point"


async def test_not_writable_point_is_denied(rig: Rig) -> None:
    """A configured point that is not writable is denied."""
    verdict = await rig.send("pump1/motor_temp", 20.0)
    assert verdict.reason == "denied: pump1/motor_temp is not writable"


async def test_writable_point_without_rule_is_denied(rig: Rig) -> None:
    """Being writable alone is not enough: a point needs a rule."""
    verdict = await rig.send("pump1/loose", 2)
    assert verdict.reason == ("denied: pump1/loose has no command rule; nothing is writable "
                              "without one")


@pytest.mark.parametrize(("point", "value", "code", "reason"), [
    ("pump1/speed_setpoint", 1900, "out_of_range", "value 1900 is above max 1800.0"),
    ("pump1/speed_setpoint", -1, "out_of_range", "value -1 is below min 0.0"),
    ("pump1/valve", 100.5, "out_of_range", "value 100.5 is above max 100.0"),
    ("pump1/mode", "off", "not_allowed",
     "value 'off' is not one of the allowed values ('auto', 'manual')"),
    ("pump1/speed_setpoint", 1500.5, "lossy",
     "value 1500.5 is not a whole number; the point takes an int"),
    ("pump1/speed_setpoint", True, "wrong_type", "value true is a bool; the point takes an int"),
    ("pump1/run", 1, "wrong_type", "value 1 is an int; the point takes a bool"),
    ("pump1/valve", "50", "wrong_type", "value '50' is a str; the point takes a float"),
    ("pump1/valve", 2**60 + 1, "lossy",
     "value 1152921504606846977 cannot be held exactly by a float"),
])
async def test_value_checks(rig: Rig, point: str, value: object, code: str, reason: str) -> None:
    """Range, allowed values, lossy coercion and wrong types are denied before any twin read."""
    verdict = await rig.send(point, value)
    assert (rig.last_code(), verdict.reason) == (code, f"denied: {reason}")
    assert rig.writes == []


async def test_step_too_large_is_denied(rig: Rig) -> None:
    """max_step against the current twin value: 1450 -> 1800 (350) is over 300."""
    verdict = await rig.send("pump1/speed_setpoint", 1800)
    assert verdict.reason == ("denied: step 1450 -> 1800 of 350 is over max_step 300 "
                              "(pump1/speed_setpoint=1450)")


@pytest.mark.parametrize("state", [
    None, PointState(1450, 0, Quality.STALE, 1), PointState(None, 0, Quality.BAD, 1),
    PointState(1450, 0, Quality.UNCERTAIN, 1),
])
async def test_step_without_a_good_current_value_is_denied(
    rig: Rig, state: PointState | None
) -> None:
    """max_step needs a GOOD current value: missing, STALE, BAD, UNCERTAIN all deny."""
    if state is None:
        del rig.twin["pump1/speed_setpoint"]
    else:
        rig.twin["pump1/speed_setpoint"] = state
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert rig.last_code() == "step_input", verdict


async def test_rate_limit_denies_until_the_window_passes(rig: Rig) -> None:
    """per_point_per_minute writes in any 60 s; the next is denied; other points unaffected."""
    for value in (1460, 1470, 1480, 1490, 1500, 1510):
        assert (await rig.send("pump1/speed_setpoint", value)).accepted
    verdict = await rig.send("pump1/speed_setpoint", 1520)
    assert verdict.reason == ("denied: rate limited: 6 writes of pump1/speed_setpoint in the "
                              "last 60 s (limit 6); next in 60.0 s")
    assert (await rig.send("pump1/valve", 10.0)).accepted
    rig.clock.advance(60)
    assert (await rig.send("pump1/speed_setpoint", 1520)).accepted


async def test_interlock_false_is_denied_with_the_values_read(rig: Rig) -> None:
    """The interlock's failing part and the values it read are in the reason and the audit."""
    rig.twin["tank1/level"] = good(7.2)
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert verdict.reason == "denied: interlock tank1/level > 10 is false (tank1/level=7.2)"
    entry = rig.verdicts()[-1]
    assert entry["code"] == "interlock"
    assert entry["reads"]["tank1/level"]["v"] == 7.2
    assert rig.writes == []


@pytest.mark.parametrize(("quality", "shown"), [
    (Quality.STALE, "STALE"), (Quality.BAD, "BAD"), (Quality.UNCERTAIN, "UNCERTAIN"),
])
async def test_interlock_on_an_unusable_point_is_denied(
    rig: Rig, quality: Quality, shown: str
) -> None:
    """An interlock input that is STALE, BAD or UNCERTAIN denies, even if its value passes."""
    rig.twin["tank1/level"] = PointState(50.0, 0, quality, 3)
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert rig.last_code() == "interlock_input"
    assert verdict.reason.endswith(f"cannot be evaluated: tank1/level is {shown}")


async def test_interlock_on_a_missing_point_is_denied(rig: Rig) -> None:
    """An interlock input the twin has no state for denies."""
    del rig.twin["pump1/motor_temp"]
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert verdict.reason.endswith("pump1/motor_temp is missing (no value in the twin)")


async def test_interlock_type_error_is_denied(rig: Rig) -> None:
    """A twin value of the wrong type for the expression denies instead of guessing."""
    rig.twin["pump1/run"] = good(1)
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert rig.last_code() == "interlock_type", verdict


async def test_operate_without_select_is_denied(rig: Rig) -> None:
    """A select-before-operate point needs a token."""
    verdict = await rig.send("pump1/run", False)
    assert rig.last_code() == "sbo_no_token", verdict


async def test_operate_with_a_wrong_token_or_value_is_denied(rig: Rig) -> None:
    """The token must match; so must the value; a mismatch leaves the select standing."""
    token = token_from_reason((await rig.send("pump1/run", False, op="select")).reason)
    assert not (await rig.send("pump1/run", False, token="0" * 32)).accepted
    assert rig.last_code() == "sbo_token"
    assert not (await rig.send("pump1/run", True, token=token)).accepted
    assert rig.last_code() == "sbo_value"
    assert (await rig.send("pump1/run", False, token=token)).accepted


async def test_operate_signed_by_another_key_is_denied(rig: Rig, keys: object) -> None:
    """The operate must come from the key that selected."""
    await rig.close()
    rig.config = rig.config.model_copy(update={
        "keys": {"ops": rig.keys.ops_public, "rogue": rig.keys.rogue_public}})
    rig.open()
    token = token_from_reason((await rig.send("pump1/run", False, op="select")).reason)
    verdict = await rig.send("pump1/run", False, token=token, key=rig.keys.rogue,
                             key_id="rogue")
    assert rig.last_code() == "sbo_key", verdict


async def test_select_expires(rig: Rig) -> None:
    """A token is good for select_timeout (10 s), then the operate is denied."""
    token = token_from_reason((await rig.send("pump1/run", False, op="select")).reason)
    rig.clock.advance(10.5)
    verdict = await rig.send("pump1/run", False, token=token)
    assert rig.last_code() == "sbo_no_select", verdict


async def test_one_select_per_point(rig: Rig) -> None:
    """A second select while one is active is denied."""
    assert (await rig.send("pump1/run", False, op="select")).accepted
    verdict = await rig.send("pump1/run", True, op="select")
    assert rig.last_code() == "sbo_busy", verdict


async def test_select_runs_the_checks_and_operate_runs_them_again(rig: Rig) -> None:
    """A select is refused on a false interlock; an interlock that fails after select denies."""
    rig.twin["tank1/level"] = good(5.0)
    assert not (await rig.send("pump1/run", True, op="select")).accepted
    assert rig.last_code() == "interlock"
    rig.twin["tank1/level"] = good(50.0)
    token = token_from_reason((await rig.send("pump1/run", True, op="select")).reason)
    rig.twin["tank1/level"] = good(9.0)
    assert not (await rig.send("pump1/run", True, token=token)).accepted
    assert rig.last_code() == "interlock"
    assert rig.writes == []


async def test_select_on_a_direct_point_is_denied(rig: Rig) -> None:
    """An op select (or a token) on a point without select_before_operate is refused."""
    assert not (await rig.send("pump1/valve", 10.0, op="select")).accepted
    assert rig.last_code() == "sbo_not_used"
    assert not (await rig.send("pump1/valve", 10.0, token="a" * 32)).accepted
    assert rig.last_code() == "sbo_not_used"


async def test_failed_write_is_reported_as_failed(rig: Rig) -> None:
    """The source's refusal is accepted=False with its reason; the write was attempted once."""
    rig.outcome = lambda p, v: WriteOutcome(False, "exception 4 (server device failure)")
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert verdict.reason == ("failed: write to pump1/speed_setpoint failed: exception 4 "
                              "(server device failure)")
    assert rig.last_code() == "write_failed"
    assert len(rig.writes) == 1


async def test_mismatched_read_back_is_a_failure(rig: Rig) -> None:
    """ok=True but a read-back that differs (or none) is a failure, not an acceptance."""
    rig.outcome = lambda p, v: WriteOutcome(True, None, 1499)
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert verdict.reason == "failed: pump1/speed_setpoint reads back 1499 after writing 1500"
    rig.outcome = lambda p, v: WriteOutcome(True, None, None)
    assert rig.last_code() == "read_back"
    assert not (await rig.send("pump1/speed_setpoint", 1510)).accepted


async def test_float32_read_back_matches(rig: Rig) -> None:
    """A float32 register's read-back within 1e-6 relative counts as the value."""
    rig.outcome = lambda p, v: WriteOutcome(True, None, 42.29999923706055)
    assert (await rig.send("pump1/valve", 42.3)).accepted


async def test_writer_that_raises_or_hangs_is_a_failure(rig: Rig) -> None:
    """A writer breaking its contract (raising, or no answer in write_timeout) is a failure."""
    assert rig.policy is not None

    async def raising(point: str, value: object) -> WriteOutcome:
        raise RuntimeError("driver bug")

    rig.policy._writer = raising
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert verdict.reason == ("failed: write to pump1/speed_setpoint raised RuntimeError: "
                              "driver bug")
    await rig.close()
    rig.config = rig.config.model_copy(update={"write_timeout": 0.05})
    policy = rig.open()

    async def hanging(point: str, value: object) -> WriteOutcome:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    policy._writer = hanging
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert verdict.reason.startswith("failed: write to pump1/speed_setpoint took over 0.05 s")


async def test_rule_without_type_takes_the_twins_type(rig: Rig) -> None:
    """Without type, the current twin value's type decides; with no value, it is denied."""
    await rig.close()
    rules = [{"point": "pump1/loose", "min": 0, "max": 10}]
    rig.config = rig.config.model_copy(update={"rules": commands_config(
        rig.keys, rules=rules).rules})
    rig.open()
    assert not (await rig.send("pump1/loose", 2.5)).accepted  # the twin holds an int
    assert rig.last_code() == "lossy"
    assert (await rig.send("pump1/loose", 3)).accepted
    del rig.twin["pump1/loose"]
    verdict = await rig.send("pump1/loose", 4)
    assert verdict.reason == ("denied: the value type of pump1/loose is unknown: its rule has "
                              "no type and the twin no value")


async def test_first_denial_wins(rig: Rig) -> None:
    """Several problems at once: the earliest step's reason is the one given."""
    rig.twin["tank1/level"] = good(1.0)
    verdict = await rig.send("pump1/speed_setpoint", 5000, key=rig.keys.rogue)
    assert rig.last_code() == "bad_signature", verdict
    verdict = await rig.send("pump1/speed_setpoint", 5000)
    assert rig.last_code() == "out_of_range", verdict


async def test_same_point_is_serialised_other_points_are_not(rig: Rig) -> None:
    """Two commands for one point write one after the other; another point goes meanwhile."""
    assert rig.policy is not None
    gate = asyncio.Event()
    writing = asyncio.Event()
    active: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    async def writer(point: str, value: object) -> WriteOutcome:
        active.append(point)
        writing.set()
        overlaps.append(tuple(active))
        if point == "pump1/speed_setpoint":
            await gate.wait()
        active.remove(point)
        rig.twin[point] = good(value)
        return WriteOutcome(True, None, value)

    rig.policy._writer = writer
    first = asyncio.create_task(rig.send("pump1/speed_setpoint", 1500))
    second = asyncio.create_task(rig.send("pump1/speed_setpoint", 1700))
    await writing.wait()
    assert (await rig.send("pump1/valve", 20.0)).accepted  # not held up by the other point
    gate.set()
    assert (await first).accepted
    # the second is checked again after the first wrote: 1500 -> 1700 is within max_step
    assert (await second).accepted
    assert ("pump1/speed_setpoint", "pump1/speed_setpoint") not in overlaps


async def test_every_command_gets_one_verdict_entry_on_disk(rig: Rig) -> None:
    """The audit log on disk holds one verdict per command and a whole hash chain."""
    await rig.send("pump1/speed_setpoint", 1500)
    await rig.send("pump1/speed_setpoint", 9999)
    await rig.send("pump1/run", True, unsigned=True)
    entries = read_tail(audit_dir(rig.state_dir), 100)
    verdicts = [e for e in entries if e["event"] == "verdict"]
    assert [e["code"] for e in verdicts] == ["accepted", "out_of_range", "unsigned"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert verify_chain(audit_dir(rig.state_dir)) == []


async def test_a_closed_policy_denies(rig: Rig) -> None:
    """After close, decide still answers, with a denial."""
    assert rig.policy is not None
    policy = rig.policy
    await rig.close()
    verdict = await policy.decide(rig.command("pump1/speed_setpoint", 1500))
    assert verdict.reason == "denied: the safety policy is shut down"


async def test_audit_sink_failure_does_not_change_the_verdict(rig: Rig) -> None:
    """The broker copy is best effort; the verdict and the local log stand."""
    assert rig.policy is not None

    async def broken(records: object) -> None:
        raise OSError("outbox closed")

    rig.policy._on_audit = broken
    assert (await rig.send("pump1/speed_setpoint", 1500)).accepted
    assert read_tail(audit_dir(rig.state_dir), 1)[0]["code"] == "accepted"


async def test_reconfigure_keeps_the_replay_memory(rig: Rig) -> None:
    """A reload swaps rules and drops selects; ids seen before stay seen."""
    assert rig.policy is not None
    command = rig.command("pump1/speed_setpoint", 1500)
    assert (await rig.policy.decide(command)).accepted
    token = token_from_reason((await rig.send("pump1/run", False, op="select")).reason)
    rules = [{"point": "pump1/speed_setpoint", "type": "int", "max": 1000},
             {"point": "pump1/run", "type": "bool", "confirm": "select_before_operate"}]
    rig.policy.reconfigure(commands_config(rig.keys, rules=rules), rig.specs)
    assert (await rig.policy.decide(command)).reason.endswith("(replay)")
    assert rig.last_code() == "replay"
    assert not (await rig.send("pump1/run", False, token=token)).accepted
    assert rig.last_code() == "sbo_no_select"
    assert (await rig.send("pump1/speed_setpoint", 1200)).reason.startswith(
        "denied: value 1200 is above max 1000.0")


async def test_missing_key_file_is_a_config_error(rig: Rig, tmp_path: Path) -> None:
    """With commands enabled, a key file that cannot be read stops the start (exit 78)."""
    from edgetwin.core.errors import ConfigError
    from edgetwin.safety import SafetyPolicy

    config = rig.config.model_copy(update={"keys": {"ops": tmp_path / "nope.pub"}})
    with pytest.raises(ConfigError, match=r"commands.keys.ops .*nope.pub.*cannot read"):
        SafetyPolicy(config, rig.specs, rig.twin.get, rig.writer, tmp_path / "s2")
    disabled = config.model_copy(update={"enabled": False})
    policy = SafetyPolicy(disabled, rig.specs, rig.twin.get, rig.writer, tmp_path / "s3")
    await policy.close()


async def test_twin_change_between_check_and_write_is_caught(rig: Rig) -> None:
    """The tank drops after the first checks passed: step 9 sees it and nothing is written."""
    assert rig.policy is not None
    seen: list[str] = []

    async def on_audit(records: list[Record]) -> None:
        seen.extend(r.body["event"] for r in records)
        if records[0].body["event"] == "pending":  # steps 1-8 passed; the write is next
            rig.twin["tank1/level"] = good(9.5)

    rig.policy._on_audit = on_audit
    verdict = await rig.send("pump1/speed_setpoint", 1500)
    assert verdict.reason == "denied: interlock tank1/level > 10 is false (tank1/level=9.5)"
    assert seen == ["pending", "verdict"]
    assert rig.writes == []


async def test_closing_while_deciding_still_answers(rig: Rig) -> None:
    """A command in flight when the policy closes gets a verdict, not an exception."""
    assert rig.policy is not None
    pending = asyncio.create_task(rig.send("pump1/speed_setpoint", 1500))
    await asyncio.sleep(0)
    await rig.close()
    verdict = await pending
    assert verdict.reason == "denied: the safety policy is shut down"
    assert rig.writes == []


async def test_a_reload_while_a_command_waits_denies_it(rig: Rig) -> None:
    """The rule a command was checked against must still be the rule when it is written."""
    assert rig.policy is not None
    policy = rig.policy
    gate = asyncio.Event()
    writing = asyncio.Event()

    async def blocking_writer(point: str, value: object) -> WriteOutcome:
        writing.set()
        await gate.wait()
        return WriteOutcome(True, None, value)

    policy._writer = blocking_writer
    first = asyncio.create_task(rig.send("pump1/speed_setpoint", 1500))
    await writing.wait()
    second = asyncio.create_task(rig.send("pump1/speed_setpoint", 1510))
    await asyncio.sleep(0.05)  # the second waits for the point's lock
    policy.reconfigure(commands_config(rig.keys, rules=[
        {"point": "pump1/speed_setpoint", "type": "int", "max": 1505}]), rig.specs)
    gate.set()
    assert (await first).accepted
    verdict = await second
    assert verdict.reason == ("denied: the rules of pump1/speed_setpoint changed while the "
                              "command waited; send it again")
