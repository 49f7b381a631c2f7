"""The policy against the simulated pump skid: real Modbus, real twin, real device write log.

firmware-sim's PLC has its own dry-run interlock (no start below 10 % tank level). The
gateway's policy must be the first guard: a start command with the tank low is denied by
the policy and never reaches the PLC (its write log shows nothing), while an allowed
setpoint change reaches the PLC and is confirmed by read-back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from edgetwin.config.model import CommandsConfig
from edgetwin.core.types import PointSpec, Quality, Sample
from edgetwin.safety import SafetyPolicy, audit_dir, read_tail
from edgetwin.safety.signing import signed_cmd_payload
from edgetwin.sources.modbus import ModbusSource
from edgetwin.sources.modbus.config import ModbusTcpConfig
from edgetwin.sync.jsontwin.inbound import Decoded, JsonTwinDecoder
from edgetwin.twin import TwinStore
from plcsim import SimProcess
from plcsim.control import call
from tests.helpers.recording import RecordingHealth
from tests.safety.conftest import Keys

pytestmark = pytest.mark.sim

POINTS: list[dict[str, Any]] = [
    {"id": "pump1/run", "kind": "coil", "address": 0, "type": "bool", "writable": True,
     "stale_after": 1.0},
    {"id": "pump1/speed_setpoint", "address": 200, "type": "uint16", "writable": True,
     "stale_after": 1.0},
    {"id": "pump1/motor_temp", "address": 100, "type": "float32", "stale_after": 1.0},
    {"id": "tank1/level", "kind": "input", "address": 0, "type": "uint16", "scale": 0.1,
     "stale_after": 1.0},
]
RULES = [
    {"point": "pump1/speed_setpoint", "type": "int", "min": 0, "max": 1800, "max_step": 300,
     "interlock": "pump1/motor_temp < 90"},
    {"point": "pump1/run", "type": "bool", "interlock": "tank1/level > 10"},
]


@pytest.fixture
async def skid() -> AsyncIterator[SimProcess]:
    """The pump skid at 60x plant speed, so the tank drains in seconds."""
    sim = await SimProcess.start("modbus", "--host", "127.0.0.1", "--port", "0",
                                 "--speedup", "60", "--seed", "8")
    try:
        yield sim
    finally:
        await sim.stop()


async def control(sim: SimProcess, method: str, path: str, body: Any = None) -> Any:
    assert sim.control is not None
    return await asyncio.to_thread(call, sim.control, method, path, body)


@contextlib.asynccontextmanager
async def gateway(sim: SimProcess, keys: Keys, state_dir: Path) -> AsyncIterator[
        tuple[TwinStore, SafetyPolicy]]:
    """A Modbus source feeding a real twin, and the policy writing through the source."""
    source = ModbusSource(ModbusTcpConfig.model_validate({
        "name": "skid1", "type": "modbus_tcp", "host": "127.0.0.1", "port": sim.port,
        "poll_interval": 0.05, "timeout": 0.5, "points": POINTS}))
    specs = {p["id"]: PointSpec(p["id"], "skid1", stale_after_s=p["stale_after"],
                                writable=p.get("writable", False)) for p in POINTS}
    twin = TwinStore(specs, state_dir)

    async def emit(batch: Sequence[Sample]) -> None:
        twin.apply(batch)

    task = asyncio.create_task(source.run(emit, RecordingHealth()), name="test.source")
    config = CommandsConfig.model_validate({"enabled": True, "keys": {"ops": keys.ops_public},
                                            "rules": RULES})
    policy = SafetyPolicy(config, specs, twin.get, source.write, state_dir)
    try:
        yield twin, policy
    finally:
        await policy.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)  # polling the twin the source fills


async def send(policy: SafetyPolicy, keys: Keys, point: str, value: object) -> Any:
    """Sign, decode as the gateway's JSON decoder would, decide."""
    decoder = JsonTwinDecoder("edgetwin/v1", "gw1", [p["id"] for p in POINTS])
    payload = signed_cmd_payload(keys.ops, "ops", point, value)
    decoded = decoder.parse("edgetwin/v1/gw1/cmd", json.dumps(payload).encode(),
                            time.time_ns())
    assert isinstance(decoded, Decoded)
    (command,) = decoded.commands
    return await policy.decide(command)


async def test_start_with_a_low_tank_is_denied_before_the_plc(
    skid: SimProcess, keys: Keys, tmp_path: Path
) -> None:
    """Tank below 10 %: the policy denies the start; nothing reaches the PLC's write log."""
    async with gateway(skid, keys, tmp_path) as (twin, policy):
        await control(skid, "POST", "/write", {"name": "valve_position_pct", "value": 0})

        def low() -> bool:
            level = twin.get("tank1/level")
            return level is not None and level.quality is Quality.GOOD and level.value < 10
        await until(low, "the tank drains below 10 %")
        await until(lambda: twin.get("pump1/run") is not None and
                    twin.get("pump1/run").value is False,  # type: ignore[union-attr]
                    "the PLC's dry-run protection stops the pump")
        before = await control(skid, "GET", "/writes?face=modbus_tcp")
        verdict = await send(policy, keys, "pump1/run", True)
        assert not verdict.accepted
        assert verdict.reason.startswith("denied: interlock tank1/level > 10 is false "
                                         "(tank1/level=")
        assert await control(skid, "GET", "/writes?face=modbus_tcp") == before == []
        # The PLC would have been the next guard: its own logic refuses the same start.
        plc = await control(skid, "POST", "/write", {"name": "run", "value": True})
        assert plc == {"accepted": False,
                       "reason": "interlock: tank level below the low limit"}


async def test_allowed_setpoint_change_reaches_the_plc_and_reads_back(
    skid: SimProcess, keys: Keys, tmp_path: Path
) -> None:
    """1450 -> 1600 rpm passes every step, is written over Modbus and read back."""
    async with gateway(skid, keys, tmp_path) as (twin, policy):
        def ready() -> bool:
            return all((s := twin.get(p["id"])) is not None and s.quality is Quality.GOOD
                       for p in POINTS)
        await until(ready, "every point GOOD in the twin")
        too_far = await send(policy, keys, "pump1/speed_setpoint", 1800)
        assert too_far.reason.startswith("denied: step 1450 -> 1800 of 350 is over max_step")
        verdict = await send(policy, keys, "pump1/speed_setpoint", 1600)
        assert verdict.accepted, verdict
        assert verdict.reason == "accepted: wrote 1600 to pump1/speed_setpoint, read back 1600"
        writes = await control(skid, "GET", "/writes?face=modbus_tcp")
        assert [(w["name"], w["value"], w["accepted"]) for w in writes] == [
            ("speed_setpoint_rpm", 1600, True)]
        audited = read_tail(audit_dir(tmp_path), 10)
        assert [(e["event"], e.get("code")) for e in audited] == [
            ("verdict", "step"), ("pending", None), ("verdict", "accepted")]
        assert audited[-1]["read_back"] == 1600
        assert audited[-1]["reads"]["pump1/motor_temp"]["q"] == "GOOD"
