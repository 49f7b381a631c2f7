"""Command policy: decisions per second and the latency a decision adds, without the write.

The command is the demanding kind: an Ed25519 signature to verify, an interlock over three
twin points, a rate limit, the replay store (SQLite on disk, ``synchronous=FULL``) and the
audit log (fsynced JSON lines). The writer returns at once with a matching read-back, so
what is measured is the policy's own cost. Figures:

1. **accepted**, one at a time: ``SafetyPolicy.decide`` latency p50/p95/p99 and decisions/s,
   and the part of it until the writer is called. An accepted operate costs three syncs:
   the replay id and the ``pending`` audit entry before the write (one trip to the disk
   thread), the verdict after it (a second trip). Goal: under 1 ms per decision, that is
   until the write (or the denial) without the write itself;
2. **denied by the interlock**, one at a time (two syncs, one trip: the id and the verdict);
3. **denied unsigned**, one at a time (one sync: the verdict);
4. **accepted, concurrent**: ``--inflight`` commands at once over ``--points`` points,
   decisions/s (the disk work is serialised on the policy's one disk thread);
5. the parts on their own: signature verification, interlock evaluation, one replay insert,
   one audit append.

The state directory is ``--dir`` (default: a temporary folder); a sync's cost is its disk's,
so each run names the file system, and a second run on ``/dev/shm`` (tmpfs, where a sync
costs nothing) shows what the policy itself costs. Prints one line per figure and one JSON
line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from edgetwin.config.model import CommandsConfig
from edgetwin.core.types import (
    Command,
    CommandOrigin,
    PointSpec,
    PointState,
    Quality,
    Value,
    WriteOutcome,
)
from edgetwin.safety import SafetyPolicy, generate_keypair, load_private_key, parse_interlock
from edgetwin.safety.audit import AuditLog
from edgetwin.safety.replay import ReplayStore
from edgetwin.safety.signing import KeyRing, signed_cmd_payload

GOAL_MS = 1.0
INTERLOCK = "pump1/run == true and pump1/motor_temp < 90 and tank1/level > 10"


def filesystem(path: Path) -> str:
    try:
        out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True,
                             text=True, check=True, timeout=10).stdout.split()
        return out[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 3)  # noqa: E731
    return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99),
            "mean_ms": round(statistics.fmean(ms), 3),
            "per_s": round(len(ms) / (sum(ms) / 1000), 1)}


class Bench:
    """A policy on a real state directory, with a twin where the interlock holds."""

    def __init__(self, folder: Path, points: int) -> None:
        pair = generate_keypair(folder / "keys", "ops")
        self.key = load_private_key(pair.private)
        self.public = pair.public
        self.targets = [f"pump{i}/speed_setpoint" for i in range(points)]
        inputs = ["pump1/run", "pump1/motor_temp", "tank1/level"]
        now = time.time_ns()
        self.twin: dict[str, PointState] = {
            "pump1/run": PointState(True, now, Quality.GOOD, 1),
            "pump1/motor_temp": PointState(61.5, now, Quality.GOOD, 2),
            "tank1/level": PointState(48.0, now, Quality.GOOD, 3),
        }
        for target in self.targets:
            self.twin[target] = PointState(1450, now, Quality.GOOD, 4)
        self.specs = {p: PointSpec(p, "skid", writable=p in self.targets)
                      for p in [*self.targets, *inputs]}
        self.config = CommandsConfig.model_validate({
            "enabled": True, "keys": {"ops": str(pair.public)},
            "rate_limit": {"per_point_per_minute": 600},
            "rules": [{"point": t, "type": "int", "min": 0, "max": 1800, "max_step": 300,
                       "interlock": INTERLOCK} for t in self.targets]})
        self.folder = folder
        self.ticks = itertools.count()
        self.written_at = 0.0  # perf_counter when the writer was last called

    def monotonic(self) -> float:
        """A clock 0.2 s later at each call: the rate limit is checked, never reached."""
        return next(self.ticks) * 0.2

    async def writer(self, point: str, value: Value) -> WriteOutcome:
        """The device: done at once, reads back what was written."""
        self.written_at = time.perf_counter()
        return WriteOutcome(True, None, value)

    def policy(self, name: str) -> SafetyPolicy:
        """A fresh policy on its own state directory."""
        return SafetyPolicy(self.config, self.specs, self.twin.get, self.writer,
                            self.folder / name, monotonic=self.monotonic)

    def command(self, point: str, value: int, *, signed: bool = True) -> Command:
        """A signed command as the JSON decoder hands it over (or the same, unsigned)."""
        payload = signed_cmd_payload(self.key, "ops", point, value)
        return Command(payload["id"], point, value, CommandOrigin.JSON_CMD, time.time_ns(),
                       issued_at_ms=payload["issued_at"], expires_at_ms=payload["expires_at"],
                       key_id="ops" if signed else None,
                       signature=payload["sig"] if signed else None)


async def one_at_a_time(bench: Bench, policy: SafetyPolicy, commands: list[Command],
                        accepted: bool) -> tuple[list[float], list[float]]:
    """Latency of each decision, and (accepted only) from its start to the writer's call."""
    samples, to_write = [], []
    for command in commands:
        start = time.perf_counter()
        verdict = await policy.decide(command)
        samples.append(time.perf_counter() - start)
        if accepted:
            to_write.append(bench.written_at - start)
        assert verdict.accepted is accepted, verdict
    return samples, to_write


async def concurrent(policy: SafetyPolicy, commands: list[Command], inflight: int) -> float:
    queue = list(reversed(commands))

    async def worker() -> None:
        while queue:
            verdict = await policy.decide(queue.pop())
            assert verdict.accepted, verdict

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return len(commands) / (time.perf_counter() - start)


def parts(bench: Bench, count: int) -> dict[str, dict[str, float]]:
    """The pieces of a decision on their own (synchronous calls, one at a time)."""
    ring = KeyRing({"ops": bench.public})
    interlock = parse_interlock(INTERLOCK, bench.specs.__contains__)
    command = bench.command(bench.targets[0], 1500)
    store = ReplayStore(bench.folder / "parts.sqlite", 10 * count, 5000)
    log = AuditLog(bench.folder / "parts-audit", 64 * 2**20, 2)
    entry = {"ts": 0, "event": "verdict", "id": "x" * 32, "point": "pump1/speed_setpoint",
             "value": 1500, "accepted": True, "reason": "accepted: wrote 1500"}
    ids = (f"id{i}" for i in itertools.count())
    now_ms = int(time.time() * 1000)
    measured: dict[str, Callable[[], object]] = {
        "verify_signature": lambda: ring.check(command),
        "interlock_3_points": lambda: interlock.evaluate(bench.twin.get),
        "replay_insert_fsync": lambda: store.remember(next(ids), now_ms + 60_000, now_ms),
        "audit_append_fsync": lambda: log.append(entry),
    }
    out = {}
    for name, call in measured.items():
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            call()
            samples.append(time.perf_counter() - start)
        out[name] = percentiles(samples)
    store.close()
    log.close()
    return out


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    bench = Bench(folder, args.points)
    results: dict[str, Any] = {}

    async def phase(name: str, make: Callable[[int], Command], accepted: bool,
                    twin_change: Callable[[], None] | None = None) -> None:
        policy = bench.policy(name)
        if twin_change is not None:
            twin_change()
        commands = [make(i) for i in range(args.count)]
        try:
            await one_at_a_time(bench, policy, commands[: args.count // 10], accepted)  # warm
            samples, to_write = await one_at_a_time(bench, policy,
                                                    commands[args.count // 10:], accepted)
            results[name] = percentiles(samples)
            if to_write:
                results[f"{name}_until_write"] = percentiles(to_write)
        finally:
            await policy.close()

    target = bench.targets[0]
    await phase("accepted", lambda i: bench.command(target, 1450 + i % 2), True)
    level = bench.twin["tank1/level"]
    await phase("denied_interlock", lambda i: bench.command(target, 1500), False,
                lambda: bench.twin.__setitem__("tank1/level", PointState(
                    7.0, level.ts_ns, Quality.GOOD, 9)))
    bench.twin["tank1/level"] = level
    await phase("denied_unsigned", lambda i: bench.command(target, 1500, signed=False), False)
    policy = bench.policy("concurrent")
    try:
        commands = [bench.command(bench.targets[i % len(bench.targets)], 1450 + i % 2)
                    for i in range(args.count)]
        results["accepted_concurrent"] = {
            "inflight": args.inflight, "points": args.points,
            "per_s": round(await concurrent(policy, commands, args.inflight), 1)}
    finally:
        await policy.close()
    results["parts"] = await asyncio.to_thread(parts, bench, args.count)
    return results


def report(results: dict[str, Any], fs: str) -> bool:
    """Print one run's lines; True when the goal is met."""
    goal = max(results[k]["p50_ms"] for k in (
        "accepted_until_write", "denied_interlock", "denied_unsigned")) < GOAL_MS
    print(f"state directory on {fs}:")
    labels = {"accepted": "accepted (3 syncs)", "accepted_until_write": "  of which to the write",
              "denied_interlock": "denied, interlock (2)",
              "denied_unsigned": "denied, unsigned (1)"}
    for key, label in labels.items():
        r = results[key]
        print(f"  {label:<24} p50 {r['p50_ms']:6.3f} ms  p95 {r['p95_ms']:6.3f} ms  "
              f"p99 {r['p99_ms']:6.3f} ms  {r['per_s']:8.0f} decisions/s")
    c = results["accepted_concurrent"]
    print(f"  {'accepted, concurrent':<24} {c['per_s']:8.0f} decisions/s ({c['inflight']} in "
          f"flight over {c['points']} points)")
    for name, r in results["parts"].items():
        print(f"    part {name:<20} p50 {r['p50_ms']:6.3f} ms  p99 {r['p99_ms']:6.3f} ms")
    print(f"  goal {'met' if goal else 'NOT met'}: p50 until the write (accepted) or the "
          f"verdict (denied) under {GOAL_MS:g} ms")
    return goal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="commands per measurement")
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--points", type=int, default=16, help="points the concurrent run uses")
    parser.add_argument("--dir", type=Path, help="state directory (default: a temporary one)")
    parser.add_argument("--no-tmpfs", action="store_true",
                        help="skip the second run on /dev/shm (the cost without the disk)")
    args = parser.parse_args()
    # The policy logs every verdict at info; the bench prints its own lines instead.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    where: list[Path | None] = [args.dir]
    if not args.no_tmpfs and Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):
        where.append(Path("/dev/shm"))
    runs = []
    for base in where:
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            folder = Path(tmp)
            fs = filesystem(folder)
            results = asyncio.run(run(args, folder))
        met = report(results, fs)
        runs.append({"filesystem": fs, "goal_met": met, **results})
    print(json.dumps({"bench": "safety", "python": platform.python_version(),
                      "machine": platform.machine(), "cpus": os.cpu_count(),
                      "goal_ms": GOAL_MS, "runs": runs}))


if __name__ == "__main__":
    main()
