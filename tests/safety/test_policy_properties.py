"""Model-based property tests: random rule sets, twin states and command streams.

The policy runs for real (signatures, replay store and audit log on disk); the writer is the
one double, standing for ``Source.write``. Two properties:

- sequential: every verdict's code is what an independent model of the nine steps says,
  and the writer sees exactly the accepted commands with their coerced values;
- concurrent: commands race each other while another task keeps changing the twin; every
  call that reaches the writer satisfies every rule on the twin as it is at that moment, and
  every command still gets exactly one verdict with a reason its step can give.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edgetwin.core.types import (
    Command,
    PointSpec,
    PointState,
    Quality,
    Verdict,
    WriteOutcome,
)
from tests.safety.conftest import FakeClock, Keys, Rig, commands_config

TARGETS = ["a/t0", "a/t1", "a/t2", "a/t3"]
INPUTS = {"b/i0": "float", "b/i1": "bool", "b/i2": "int"}
REFUSED_BY_DEVICE = 13  # the writer double answers ok=False for this value


@dataclasses.dataclass(frozen=True)
class Guard:
    """An interlock as text and, independently, as a Python predicate over the inputs."""

    text: str
    inputs: tuple[str, ...]
    holds: Callable[[dict[str, Any]], bool]


def guards(x: int) -> list[Guard | None]:
    return [
        None,
        Guard(f"b/i0 > {x}", ("b/i0",), lambda v: v["b/i0"] > x),
        Guard(f"b/i1 == true and b/i0 < {x}", ("b/i1", "b/i0"),
              lambda v: v["b/i1"] is True and v["b/i0"] < x),
        Guard(f"abs(b/i2) <= {x} or b/i1", ("b/i2", "b/i1"),
              lambda v: abs(v["b/i2"]) <= x or v["b/i1"] is True),
        Guard(f"not b/i1 and min(b/i0, b/i2) >= -{x}", ("b/i1", "b/i0", "b/i2"),
              lambda v: v["b/i1"] is False and min(v["b/i0"], v["b/i2"]) >= -x),
    ]


@dataclasses.dataclass
class World:
    """Rules (as config dicts with their guards), writability, the rate limit, the twin."""

    rules: dict[str, dict[str, Any]]
    guards: dict[str, Guard | None]
    writable: set[str]
    limit: int
    twin: dict[str, PointState]


qualities = st.sampled_from([Quality.GOOD] * 12 + [Quality.STALE, Quality.BAD,
                                                   Quality.UNCERTAIN])


def state(value: st.SearchStrategy[Any]) -> st.SearchStrategy[PointState | None]:
    made = st.builds(lambda v, q: PointState(None if q is Quality.BAD else v, 0, q, 1),
                     value, qualities)
    return st.one_of(*[made] * 9, st.none())


def mostly_none(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.none(), values)


INPUT_VALUES = {"float": st.floats(-30, 30).map(lambda f: round(f, 1)),
                "bool": st.booleans(), "int": st.integers(-30, 30)}


@st.composite
def worlds(draw: st.DrawFn) -> World:
    rules: dict[str, dict[str, Any]] = {}
    chosen: dict[str, Guard | None] = {}
    twin: dict[str, PointState] = {}
    for point in TARGETS:
        kind = draw(st.sampled_from(["int", "float", "bool"]))
        rule: dict[str, Any] = {"point": point, "type": kind}
        if kind == "bool":
            rule["allowed"] = draw(st.sampled_from([None, None, [True], [False]]))
            current = state(st.booleans())
        else:
            low, high = draw(mostly_none(st.integers(-40, 0))), draw(mostly_none(
                st.integers(0, 40)))
            rule.update(min=low, max=high, max_step=draw(mostly_none(st.integers(1, 80))),
                        allowed=draw(mostly_none(st.lists(st.integers(-20, 20), min_size=3,
                                                          max_size=30))))
            current = state(st.integers(-40, 40) | st.floats(-40, 40))
        guard = draw(st.sampled_from(guards(draw(st.integers(-10, 20)))))
        if guard is not None:
            rule["interlock"] = guard.text
        if draw(st.integers(0, 9)) > 0:  # now and then a writable point without a rule
            rules[point] = {k: v for k, v in rule.items() if v is not None}
            chosen[point] = guard
        if (now := draw(current)) is not None:
            twin[point] = now
    for point, kind in INPUTS.items():
        if (now := draw(state(INPUT_VALUES[kind]))) is not None:
            twin[point] = now
    writable = {p for p in TARGETS if draw(st.integers(0, 9)) > 0}
    return World(rules, chosen, writable, draw(st.integers(1, 4)), twin)


command_values = st.one_of(st.integers(-20, 20), st.integers(-20, 20), st.integers(-50, 50),
                           st.integers(-20, 20).map(float), st.booleans(), st.booleans(),
                           st.integers(-100, 100).map(lambda i: i / 4),
                           st.sampled_from(["x", "1"]), st.just(REFUSED_BY_DEVICE))
mutations = st.lists(st.tuples(st.sampled_from([*INPUTS, *TARGETS]),
                               st.one_of(state(st.floats(-30, 30)), state(st.booleans()),
                                         state(st.integers(-30, 30)))), max_size=3)


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of a stream, with what happens to the world before it."""

    target: str
    value: Any
    signing: str  # "good", "unsigned", "rogue"
    age_s: float  # how long before "now" it was issued
    replay: bool  # send an earlier command again instead
    advance_s: float
    mutate: list[tuple[str, PointState | None]]


def values_for(world: World, target: str) -> st.SearchStrategy[Any]:
    """Mostly values a rule could accept, so that streams reach the live checks and writes."""
    rule = world.rules.get(target)
    if rule is None:
        return command_values
    if rule["type"] == "bool":
        return st.one_of(st.booleans(), st.booleans(), st.booleans(), command_values)
    likely = st.integers(rule.get("min", -40), rule.get("max", 40))
    if "allowed" in rule:
        likely = st.sampled_from(rule["allowed"])
    return st.one_of(likely, likely, likely.map(float), command_values)


@st.composite
def streams(draw: st.DrawFn, world: World, min_size: int, max_size: int) -> list[Step]:
    out = []
    for _ in range(draw(st.integers(min_size, max_size))):
        target = draw(st.sampled_from(TARGETS))
        out.append(Step(
            target, draw(values_for(world, target)),
            draw(st.sampled_from(["good"] * 18 + ["unsigned", "rogue"])),
            draw(st.sampled_from([0.0] * 18 + [32.0, 40.0, -10.0])),
            draw(st.integers(0, 9)) == 0, draw(st.sampled_from([0.0, 0.0, 1.0, 25.0])),
            draw(mutations)))
    return out


# -- the model -------------------------------------------------------------------------------------


def coerce(value: Any, kind: str) -> Any:
    """The model's lossless coercion; a string code when it is refused."""
    if kind == "bool":
        return value if isinstance(value, bool) else "wrong_type"
    if isinstance(value, bool | str):
        return "wrong_type"
    if kind == "int":
        return int(value) if float(value).is_integer() else "lossy"
    return float(value)


def static_code(world: World, step: Step) -> tuple[str | None, Any]:
    """Steps 2, 3 (freshness only), 4 and 5, which do not read the twin."""
    if step.signing == "unsigned":
        return "unsigned", None
    if step.signing == "rogue":
        return "bad_signature", None
    if step.age_s > 35:  # max_age 30 + clock_skew 5
        return "too_old", None
    if step.age_s < -5:
        return "from_future", None
    if step.age_s > 30:  # the rig's commands expire 30 s after they were issued
        return "expired", None
    return None, None


def value_code(world: World, target: str, value: Any) -> tuple[str | None, Any]:
    if target not in world.writable:
        return "not_writable", None
    rule = world.rules.get(target)
    if rule is None:
        return "no_rule", None
    coerced = coerce(value, rule["type"])
    if isinstance(coerced, str):
        return coerced, None
    below = "min" in rule and coerced < rule["min"]
    above = "max" in rule and coerced > rule["max"]
    if not isinstance(coerced, bool) and (below or above):
        return "out_of_range", None
    allowed = rule.get("allowed")
    if allowed is not None and not any(
            a is coerced if isinstance(a, bool) or isinstance(coerced, bool) else a == coerced
            for a in allowed):
        return "not_allowed", None
    return None, coerced


def live_code(world: World, twin: dict[str, PointState], target: str, value: Any,
              writes: int) -> str | None:
    """Steps 6 and 7 on a twin: None when a write may happen now."""
    rule = world.rules[target]
    if "max_step" in rule:
        current = twin.get(target)
        if current is None or current.quality is not Quality.GOOD or isinstance(
                current.value, bool) or not isinstance(current.value, int | float):
            return "step_input"
        if abs(value - current.value) > rule["max_step"]:
            return "step"
    if writes >= world.limit:
        return "rate_limited"
    guard = world.guards[target]
    if guard is not None:
        states = [twin.get(p) for p in guard.inputs]
        if any(s is None or s.quality is not Quality.GOOD for s in states):
            return "interlock_input"
        values = {p: s.value for p, s in zip(guard.inputs, states, strict=True) if s}
        if any(not isinstance(values[p], bool) if INPUTS[p] == "bool" else
               isinstance(values[p], bool) for p in guard.inputs):
            return "interlock_type"
        if not guard.holds(values):
            return "interlock"
    return None


# -- running a stream ------------------------------------------------------------------------------


def make_rig(keys: Keys, folder: Path, world: World) -> Rig:
    specs = {p: PointSpec(p, "s", writable=p in world.writable) for p in [*TARGETS, *INPUTS]}
    config = commands_config(keys, rules=list(world.rules.values()),
                             rate_limit={"per_point_per_minute": world.limit})
    return Rig(keys, folder, FakeClock(), dict(world.twin), specs, config)


def command_for(rig: Rig, step: Step) -> Command:
    issued = rig.clock.now_ms() - round(step.age_s * 1000)
    if step.signing == "rogue":
        return rig.command(step.target, step.value, key=rig.keys.rogue, issued_at_ms=issued)
    return rig.command(step.target, step.value, issued_at_ms=issued,
                       unsigned=step.signing == "unsigned")


def apply(twin: dict[str, PointState], mutate: list[tuple[str, PointState | None]]) -> None:
    for point, new in mutate:
        if new is None:
            twin.pop(point, None)
        else:
            twin[point] = new


SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(worlds(), st.data())
def test_sequential_verdicts_match_the_model(keys: Keys, world: World, data: st.DataObject) -> None:
    """Each verdict is the model's: the first failing step's code; writes are exactly these."""
    stream = data.draw(streams(world, 1, 16))
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_sequential(make_rig(keys, Path(folder), world), world, stream))


def simulated_device(rig: Rig) -> Callable[[str, Any], WriteOutcome]:
    """A device that refuses REFUSED_BY_DEVICE and otherwise takes the value into the twin."""
    def device(point: str, value: Any) -> WriteOutcome:
        if value == REFUSED_BY_DEVICE and not isinstance(value, bool):
            return WriteOutcome(False, "refused")
        rig.twin[point] = PointState(value, rig.clock.wall, Quality.GOOD, 9)
        return WriteOutcome(True, None, value)

    return device


async def _sequential(rig: Rig, world: World, stream: list[Step]) -> None:
    rig.outcome = simulated_device(rig)
    policy = rig.open()
    sent: list[tuple[Command, Step]] = []
    seen: dict[str, int] = {}  # id -> ms until which it is remembered
    recent: dict[str, list[float]] = {}  # point -> monotonic times of writes
    expected_writes: list[tuple[str, Any]] = []
    try:
        for step in stream:
            rig.clock.advance(step.advance_s)
            apply(rig.twin, step.mutate)
            now_ms, mono = rig.clock.now_ms(), rig.clock.monotonic()
            if step.replay and sent:
                command, first = sent[0]
                age_s = (now_ms - (command.issued_at_ms or 0)) / 1000
                modelled = dataclasses.replace(first, age_s=age_s)
            else:
                command = command_for(rig, step)
                modelled = step
                sent.append((command, step))
            code, _ = static_code(world, modelled)
            if code is None and command.id in seen:
                code = "replay"
            if code is None:
                seen[command.id] = now_ms
                code, value = value_code(world, command.point, command.value)
                if code is None:
                    writes = [t for t in recent.get(command.point, []) if mono - t < 60]
                    code = live_code(world, rig.twin, command.point, value, len(writes))
                    if code is None:
                        recent.setdefault(command.point, []).append(mono)
                        expected_writes.append((command.point, value))
                        refused = value == REFUSED_BY_DEVICE and not isinstance(value, bool)
                        code = "write_failed" if refused else "accepted"
            verdict = await policy.decide(command)
            event(f"sequential: {code}")
            assert rig.last_code() == code, (verdict, modelled)
            assert verdict.accepted is (code == "accepted")
        assert rig.writes == expected_writes
        assert [type(v) for _, v in rig.writes] == [type(v) for _, v in expected_writes]
        assert len(rig.verdicts()) == len(stream)
    finally:
        await rig.close()


@SETTINGS
@given(worlds(), st.data(), st.lists(mutations, max_size=40))
def test_concurrent_writes_hold_every_rule_at_the_moment_of_writing(
    keys: Keys, world: World, data: st.DataObject, churn: list[Any]
) -> None:
    """Racing commands and twin changes: nothing reaches the writer that breaks a rule then."""
    stream = data.draw(streams(world, 2, 24))
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_concurrent(make_rig(keys, Path(folder), world), world, stream, churn))


async def _concurrent(rig: Rig, world: World, stream: list[Step],
                      churn: list[list[tuple[str, PointState | None]]]) -> None:
    calls: Counter[str] = Counter()
    broken: list[str] = []

    async def writer(point: str, value: Any) -> WriteOutcome:
        # The moment of writing: judge every rule on the twin as it is right now.
        problem = live_code(world, rig.twin, point, value, calls[point])
        if problem is not None:
            broken.append(f"{point}={value!r} written although {problem}")
        calls[point] += 1
        await asyncio.sleep(0)  # the twin may change while the device is being written
        if value == REFUSED_BY_DEVICE and not isinstance(value, bool):
            return WriteOutcome(False, "refused")
        rig.twin[point] = PointState(value, rig.clock.wall, Quality.GOOD, 9)
        return WriteOutcome(True, None, value)

    deciding = True

    async def churner() -> None:
        # Keep changing the twin, one change per loop turn, for as long as commands decide.
        index = 0
        while deciding and churn:
            apply(rig.twin, churn[index % len(churn)])
            index += 1
            await asyncio.sleep(0)

    async def decide_all() -> list[Verdict]:
        nonlocal deciding
        try:
            return list(await asyncio.gather(*(policy.decide(c) for c in commands)))
        finally:
            deciding = False

    policy = rig.open()
    policy._writer = writer  # the double that judges each write as it happens
    try:
        commands = [command_for(rig, dataclasses.replace(s, replay=False)) for s in stream]
        for step in stream:
            apply(rig.twin, step.mutate)
        _, verdicts = await asyncio.gather(churner(), decide_all())
        assert broken == []
        codes = {str(e["id"]): str(e["code"]) for e in rig.verdicts()}
        assert len(rig.verdicts()) == len(commands) == len(codes)
        live = {"accepted", "write_failed", "step", "step_input", "rate_limited", "interlock",
                "interlock_input", "interlock_type"}
        for step, command, verdict in zip(stream, commands, verdicts, strict=True):
            code, _ = static_code(world, step)
            if code is None:
                code, _ = value_code(world, command.point, command.value)
            actual = codes[command.id]
            event(f"concurrent: {actual}")
            if code is not None:
                assert actual == code, (command, verdict)
            else:
                assert actual in live, (command, verdict)
            assert verdict.accepted is (actual == "accepted")
        attempted = Counter(str(e["point"]) for e in rig.verdicts()
                            if e["code"] in ("accepted", "write_failed"))
        assert attempted == calls
        assert all(n <= world.limit for n in calls.values())
    finally:
        await rig.close()
