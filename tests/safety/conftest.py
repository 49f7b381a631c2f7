"""Fixtures for the safety policy: real keys, a real state directory, a twin the test edits.

The writer is the one test double: it stands for ``Source.write`` and records each call.
Everything else (signatures, the replay store, the audit log) is the real thing on disk.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgetwin.config.model import CommandsConfig
from edgetwin.core.types import (
    Command,
    CommandOrigin,
    PointSpec,
    PointState,
    Quality,
    Record,
    Value,
    Verdict,
    WriteOutcome,
)
from edgetwin.safety import SafetyPolicy, generate_keypair, load_private_key
from edgetwin.safety.signing import signed_cmd_payload
from tests.helpers.waiting import until

START_NS = 1_763_770_000_000 * 10**6  # a fixed wall time (2025-11-22) for the fake clock


@dataclass
class Keys:
    """Two real Ed25519 key pairs: "ops" (configured) and "rogue" (not configured)."""

    ops: Ed25519PrivateKey
    ops_public: Path
    rogue: Ed25519PrivateKey
    rogue_public: Path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    ops = generate_keypair(folder, "ops")
    rogue = generate_keypair(folder, "rogue")
    return Keys(load_private_key(ops.private), ops.public, load_private_key(rogue.private),
                rogue.public)


class FakeClock:
    """Wall and monotonic time that move only when the test says so."""

    def __init__(self, start_ns: int = START_NS) -> None:
        self.wall = start_ns
        self.mono = 1000.0

    def wall_ns(self) -> int:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def now_ms(self) -> int:
        return self.wall // 10**6

    def advance(self, seconds: float) -> None:
        self.wall += round(seconds * 1e9)
        self.mono += seconds


def commands_config(keys: Keys, **overrides: Any) -> CommandsConfig:
    doc: dict[str, Any] = {"enabled": True, "keys": {"ops": str(keys.ops_public)},
                           "rules": []}
    doc.update(overrides)
    return CommandsConfig.model_validate(doc)


def good(value: Value, ts_ns: int = START_NS) -> PointState:
    return PointState(value, ts_ns, Quality.GOOD, 1)


@dataclass
class Rig:
    """A policy on a real state directory, a twin dict and a recording writer."""

    keys: Keys
    state_dir: Path
    clock: FakeClock
    twin: dict[str, PointState]
    specs: dict[str, PointSpec]
    config: CommandsConfig
    writes: list[tuple[str, Value]] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    outcome: Callable[[str, Value], WriteOutcome] | None = None  # default: ok, read back
    policy: SafetyPolicy | None = None
    hold: asyncio.Event | None = None  # when set up, a write waits for it (a slow device)

    async def writer(self, point: str, value: Value) -> WriteOutcome:
        self.writes.append((point, value))
        if self.hold is not None:
            await self.hold.wait()
        if self.outcome is not None:
            return self.outcome(point, value)
        self.twin[point] = PointState(value, self.clock.wall, Quality.GOOD, 99)
        return WriteOutcome(True, None, value)

    async def on_audit(self, records: Any) -> None:
        self.records.extend(records)

    def open(self) -> SafetyPolicy:
        """A new policy on the same state directory (a restart when one was open before)."""
        self.policy = SafetyPolicy(
            self.config, self.specs, self.twin.get, self.writer, self.state_dir,
            on_audit=self.on_audit, wall_ns=self.clock.wall_ns,
            monotonic=self.clock.monotonic)
        return self.policy

    async def close(self) -> None:
        if self.policy is not None:
            await self.policy.close()
            self.policy = None

    def command(self, point: str, value: Value, *, key: Ed25519PrivateKey | None = None,
                key_id: str = "ops", op: str = "operate", token: str | None = None,
                ttl_s: float = 30.0, issued_at_ms: int | None = None,
                command_id: str | None = None, unsigned: bool = False) -> Command:
        """A signed command as the JSON decoder would hand it over."""
        payload = signed_cmd_payload(
            key or self.keys.ops, key_id, point, value, op=op, token=token, ttl_s=ttl_s,
            command_id=command_id,
            now_ms=self.clock.now_ms() if issued_at_ms is None else issued_at_ms)
        return Command(
            payload["id"], point, value, CommandOrigin.JSON_CMD, self.clock.wall,
            issued_at_ms=payload["issued_at"], expires_at_ms=payload["expires_at"],
            key_id=None if unsigned else key_id, signature=None if unsigned else payload["sig"],
            operation=op, token=token)

    async def send(self, point: str, value: Value, **kwargs: Any) -> Verdict:
        assert self.policy is not None
        return await self.policy.decide(self.command(point, value, **kwargs))

    def verdicts(self) -> list[dict[str, Any]]:
        """The audit's verdict entries as handed to on_audit."""
        return [dict(r.body) for r in self.records if r.body.get("event") == "verdict"]

    def last_code(self) -> str:
        return str(self.verdicts()[-1]["code"])


# The pump skid of the example: a setpoint with range, step and a three-point interlock,
# and a run command with select-before-operate.
SKID_RULES: list[dict[str, Any]] = [
    {"point": "pump1/speed_setpoint", "type": "int", "min": 0, "max": 1800, "max_step": 300,
     "interlock": "pump1/run == true and pump1/motor_temp < 90 and tank1/level > 10"},
    {"point": "pump1/run", "type": "bool", "interlock": "tank1/level > 10",
     "confirm": "select_before_operate"},
    {"point": "pump1/mode", "type": "string", "allowed": ["auto", "manual"]},
    {"point": "pump1/valve", "type": "float", "min": 0, "max": 100},
]
SKID_POINTS = ["pump1/speed_setpoint", "pump1/run", "pump1/mode", "pump1/valve",
               "pump1/motor_temp", "tank1/level", "pump1/counter", "pump1/loose"]
SKID_WRITABLE = {"pump1/speed_setpoint", "pump1/run", "pump1/mode", "pump1/valve",
                 "pump1/loose"}


def skid_twin() -> dict[str, PointState]:
    return {
        "pump1/speed_setpoint": good(1450), "pump1/run": good(True),
        "pump1/mode": good("auto"), "pump1/valve": good(50.0),
        "pump1/motor_temp": good(60.5), "tank1/level": good(50.0),
        "pump1/counter": good(7), "pump1/loose": good(1),
    }


async def crash_while_writing(rig: Rig, point: str, value: Value,
                              crashed: Path) -> asyncio.Task[Verdict]:
    """Copy the state directory as a kill -9 leaves it while ``point`` is being written.

    Returns the command's task, its write still held: set ``rig.hold`` to let it finish.
    """
    rig.hold = asyncio.Event()
    writing = asyncio.create_task(rig.send(point, value))
    await until(lambda: rig.writes != [], what="the write reaches the device")
    shutil.copytree(rig.state_dir, crashed)  # the pending entry is synced before the write
    return writing


@pytest.fixture
async def rig(keys: Keys, tmp_path: Path) -> AsyncIterator[Rig]:
    """The skid, commands enabled, an open policy; closed after the test."""
    specs = {p: PointSpec(p, "skid1", writable=p in SKID_WRITABLE) for p in SKID_POINTS}
    made = Rig(keys, tmp_path / "state", FakeClock(), skid_twin(), specs,
               commands_config(keys, rules=SKID_RULES))
    made.open()
    yield made
    await made.close()


def wall_now_ms() -> int:
    return int(time.time() * 1000)
