"""Commands a stop or a crash cut off, and what a start does with the end of the audit log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edgetwin.safety import audit_dir, read_tail, verify_chain
from edgetwin.safety.recovery import recover
from tests.helpers.waiting import until
from tests.safety.conftest import (
    SKID_RULES,
    Keys,
    Rig,
    commands_config,
    crash_while_writing,
    skid_twin,
)

SETPOINT = "pump1/speed_setpoint"
HEAD = {"point": "a/b", "origin": "json/cmd", "op": "operate"}


def one_write_a_minute(keys: Keys) -> Any:
    return commands_config(keys, rules=SKID_RULES, rate_limit={"per_point_per_minute": 1})


async def test_a_command_cut_off_by_a_crash_is_closed_at_the_next_start(
        rig: Rig, keys: Keys, tmp_path: Path) -> None:
    """Killed while the device was being written: the next start says so, and counts it."""
    crashed = tmp_path / "crashed"
    writing = await crash_while_writing(rig, SETPOINT, 1500, crashed)
    [pending] = read_tail(audit_dir(crashed), 1)
    assert pending["event"] == "pending"

    after = Rig(keys, crashed, rig.clock, skid_twin(), rig.specs, one_write_a_minute(keys))
    rig.clock.advance(5.0)
    policy = after.open()
    try:
        closed = read_tail(audit_dir(crashed), 1)[0]
        assert closed == {**closed, "event": "verdict", "code": "interrupted", "accepted": False,
                          "id": pending["id"], "point": SETPOINT, "value": 1500,
                          "written_ms": None, "ts": rig.clock.now_ms()}
        assert closed["reason"] == (
            "failed: the gateway stopped while the command to pump1/speed_setpoint was in "
            "progress (pending since 2025-11-22T00:06:40.000+00:00); the device may or may "
            "not hold 1500")
        assert verify_chain(audit_dir(crashed)) == []
        assert policy.counts["interrupted"] == 1
        assert after.records == []  # handed on once the daemon's outbox runs
        await policy.hand_on_recovered()
        assert [r.body["code"] for r in after.records] == ["interrupted"]

        # It may have written: 5 s ago counts as this minute's one write.
        assert (await after.send(SETPOINT, 1550)).reason.startswith(
            "denied: rate limited: 1 writes of pump1/speed_setpoint in the last 60 s")
        rig.clock.advance(55.0)
        assert (await after.send(SETPOINT, 1550)).accepted
    finally:
        await after.close()
        assert rig.hold is not None
        rig.hold.set()
        await writing

    again = Rig(keys, crashed, rig.clock, skid_twin(), rig.specs, one_write_a_minute(keys))
    again.open()
    await again.close()
    codes = [e.get("code") for e in read_tail(audit_dir(crashed), 100)]
    assert codes.count("interrupted") == 1  # closed once, not at every start


async def test_a_command_cancelled_by_a_stop_gets_its_verdict_at_once(
        rig: Rig, keys: Keys) -> None:
    """The session cancels commands at a stop: the verdict goes to disk before the task ends."""
    rig.hold = asyncio.Event()
    writing = asyncio.create_task(rig.send(SETPOINT, 1500))
    await until(lambda: rig.writes != [], what="the write reaches the device")
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    pending, closed = read_tail(audit_dir(rig.state_dir), 2)
    assert (pending["event"], closed["event"], closed["code"], closed["id"]) == (
        "pending", "verdict", "interrupted", pending["id"])
    assert [r.body["event"] for r in rig.records] == ["pending", "verdict"]  # on the broker too
    await rig.close()
    rig.open()  # nothing left open for the next start to close
    assert [e.get("code") for e in read_tail(audit_dir(rig.state_dir), 10)].count(
        "interrupted") == 1


async def test_a_restart_keeps_the_rate_limit_window(rig: Rig, keys: Keys) -> None:
    """Writes of the last minute count after a clean restart; older ones do not."""
    await rig.close()
    rig.config = commands_config(keys, rules=SKID_RULES, rate_limit={"per_point_per_minute": 2})
    rig.open()
    assert (await rig.send(SETPOINT, 1500)).accepted
    rig.clock.advance(30.0)
    assert (await rig.send(SETPOINT, 1550)).accepted
    await rig.close()
    rig.open()  # the restart
    assert (await rig.send(SETPOINT, 1600)).reason.startswith(
        "denied: rate limited: 2 writes of pump1/speed_setpoint in the last 60 s (limit 2); "
        "next in 30.0 s")
    rig.clock.advance(30.0)  # the first write is a minute old now
    assert (await rig.send(SETPOINT, 1600)).accepted
    assert "interrupted" not in [e.get("code") for e in read_tail(audit_dir(rig.state_dir), 100)]


def test_recover_reads_open_commands_and_writes_from_any_tail() -> None:
    """Torn, foreign or half entries are skipped; a denial before the write is not a write."""
    entries: list[dict[str, Any]] = [
        {"event": "verdict", "id": "old", "point": "a/b", "written_ms": 100},
        {"event": "pending", "id": "done", "ts": 200, **HEAD},
        {"event": "readonly", "ts": 250},
        {"event": "pending", "id": "open", "ts": 300, **HEAD, "point": "a/c"},
        {"event": "verdict", "id": "done", "point": "a/b", "written_ms": 210},
        {"event": "pending", "id": "denied-late", "ts": 400, **HEAD},
        {"event": "verdict", "id": "denied-late", "point": "a/b", "written_ms": None},
        {"event": "pending", "id": "no-time", **HEAD},
        {"event": "pending", "id": "no-origin", "ts": 500, "point": "a/b", "op": "operate"},
        {"event": "unreadable", "raw": "{\"event\":\"pend"},
    ]
    recovered = recover(entries)
    assert [e["id"] for e in recovered.interrupted] == ["open"]
    assert recovered.writes == [("a/b", 100), ("a/b", 210), ("a/c", 300)]
