"""The judges: each expectation of a scenario, decided from the run folder alone.

Every judge works from the outside: what the sim served and logged, what the broker
delivered (``twin.rebuild``), what ``/proc`` said about the gateway process. None reads
the gateway's files or asks it anything, so the same judges measure any gateway.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from hil.harness.outcome import Outcome
from hil.harness.profile import Profile, Template
from hil.harness.scenario import Expectation, Scenario
from hil.harness.twin import BrokerView, rebuild

REPO = Path(__file__).resolve().parents[2]
# A SIGKILL may lose what the gateway read but had not committed yet: its documented
# window is max_delay plus one commit (about 130 ms under load). A counter value served
# this long before a kill and never delivered is counted as "lost to the kill", apart.
KILL_WINDOW_S = 0.5
# A cut PLC link (or a reboot) can drop the one answer on the wire at that moment.
CUT_WINDOW_S = 0.3
LIST_LIMIT = 200
# drops_counted: messages that may be in flight (published, PUBACK pending) when a broker
# stops; each may be delivered and still be dropped from the buffer later.
DELIVERED_THEN_DROPPED_MAX = 5


# -- the sim's record ----------------------------------------------------------------------

def served_runs(record: dict[str, Any]) -> list[tuple[int, int, float, float]]:
    """The runs ``[first, last, t_first, t_last]`` of one signal's served record."""
    return [(int(a), int(b), float(ta), float(tb)) for a, b, ta, tb in record.get("runs", [])]


def served_values(record: dict[str, Any]) -> set[int]:
    """Every value served at least once."""
    values: set[int] = set()
    for first, last, _, _ in served_runs(record):
        values.update(range(first, last + 1))
    return values


def served_times(runs: Sequence[tuple[int, int, float, float]]) -> dict[int, float]:
    """When each value was served (interpolated within its run; a repeat keeps the first)."""
    times: dict[int, float] = {}
    for first, last, t_first, t_last in runs:
        span = max(1, last - first)
        for value in range(first, last + 1):
            times.setdefault(value, t_first + (t_last - t_first) * (value - first) / span)
    return times


# -- helpers -------------------------------------------------------------------------------

def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open() as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _short(values: Iterable[Any]) -> list[Any]:
    return sorted(values)[:LIST_LIMIT]


def _windows(events: list[dict[str, Any]], actions: set[str], before_s: float,
             link: str | None = None) -> list[tuple[float, float]]:
    found = []
    for event in events:
        if event["action"] in actions and (link is None or event["args"].get("link") == link):
            found.append((event["t"] - before_s, event["t"] + 0.05))
    return found


def _in_any(t: float, windows: list[tuple[float, float]]) -> bool:
    return any(a <= t <= b for a, b in windows)


# -- judges --------------------------------------------------------------------------------

def served_occurrences(runs: Sequence[tuple[int, int, float, float]]) -> dict[int, list[float]]:
    """When each value was served, every time (a PLC reboot serves low values again)."""
    times: dict[int, list[float]] = {}
    for first, last, t_first, t_last in runs:
        span = max(1, last - first)
        for value in range(first, last + 1):
            times.setdefault(value, []).append(
                t_first + (t_last - t_first) * (value - first) / span)
    return times


def judge_loss(view: BrokerView, runs: list[tuple[int, int, float, float]],
               events: list[dict[str, Any]]) -> Outcome:
    """Every counter value the sim served reached the broker exactly once (after dedup).

    A value missing N times is excused when N of its servings fall just before a SIGKILL
    (lost to the kill) or just before a PLC cut, a PLC reboot, a stop or the end of the run
    (the answer was on the wire, or the poll was cancelled, when it happened). Which serving
    of a repeated value went missing cannot be told, so any N of them count.
    """
    expected = Counter[int]()
    for first, last, _, _ in runs:
        expected.update(range(first, last + 1))
    received = Counter(v for _, v, _, _ in view.counter)
    missing = expected - received
    duplicated = received - expected
    phantom = [v for v in received if v not in expected]
    times = served_occurrences(runs)
    kills = _windows(events, {"gateway_kill"}, KILL_WINDOW_S)
    cuts = _windows(events, {"link_cut", "link_blackhole"}, CUT_WINDOW_S, link="plc") + \
        _windows(events, {"plc_reboot", "freeze", "gateway_stop", "gateway_restart"},
                 CUT_WINDOW_S)
    to_kill, at_cut, lost = [], [], []
    for value, deficit in missing.items():
        served = times.get(value, [])
        n_kill = sum(_in_any(t, kills) for t in served)
        n_cut = sum(_in_any(t, cuts) for t in served)
        if n_kill + n_cut < deficit:
            lost += [value] * deficit
        elif n_kill >= deficit:
            to_kill += [value] * deficit
        else:
            to_kill += [value] * n_kill
            at_cut += [value] * (deficit - n_kill)
    n_expected = sum(expected.values())
    passed = not lost and not duplicated and not phantom and n_expected > 0
    extra = []
    if to_kill:
        extra.append(f"{len(to_kill)} lost to SIGKILL within {KILL_WINDOW_S} s")
    if at_cut:
        extra.append(f"{len(at_cut)} in flight at a PLC cut or a stop")
    summary = (f"{len(lost)} of {n_expected} counter values lost, "
               f"{sum(duplicated.values())} duplicated, {len(phantom)} never served"
               + (f" ({'; '.join(extra)})" if extra else ""))
    if n_expected == 0:
        summary = "the sim served no counter value: nothing to judge"
    return Outcome("no lost or duplicated samples", "no_loss", passed, summary, {
        "expected": n_expected, "received": sum(received.values()), "lost": len(lost),
        "duplicated": sum(duplicated.values()), "phantom": len(phantom),
        "lost_to_kill": len(to_kill), "in_flight_at_cut_or_stop": len(at_cut),
        "missing": _short(lost + to_kill + at_cut), "lost_values": _short(lost),
        "redeliveries": view.redeliveries})


def judge_drops(expectation: Expectation, view: BrokerView,
                runs: list[tuple[int, int, float, float]], metrics: list[dict[str, Any]],
                profile: Profile) -> Outcome:
    """Values lost past the buffer's bound equal the drops the gateway counted."""
    expected = Counter[int]()
    for first, last, _, _ in runs:
        expected.update(range(first, last + 1))
    received = Counter(v for _, v, _, _ in view.counter)
    lost = sum((expected - received).values())
    name = next((m for m in profile.metrics if "dropped" in m), "")
    dropped = None
    if name and metrics:
        samples = [m["values"].get(name) for m in metrics if name in m["values"]]
        dropped = int(max(samples)) if samples else None
    # Every loss must be counted. A count above the losses is allowed only for entries the
    # broker had already taken when it stopped (their PUBACK never came back, so they stayed
    # queued and were dropped later): at most the messages in flight at that moment.
    delivered_then_dropped = None if dropped is None else dropped - lost
    passed = (delivered_then_dropped is not None
              and 0 <= delivered_then_dropped <= DELIVERED_THEN_DROPPED_MAX
              and lost >= expectation.min_lost)
    summary = (f"{lost} counter values lost, gateway counted {dropped} drops"
               if dropped is not None else f"{lost} lost; the gateway's drop count is unknown")
    if delivered_then_dropped:
        summary += f" ({delivered_then_dropped} of them delivered before their PUBACK was lost)"
    return Outcome(expectation.title, "drops_counted", passed, summary,
                   {"lost": lost, "counted": dropped, "metric": name,
                    "delivered_then_dropped": delivered_then_dropped,
                    "allowed_delivered_then_dropped": DELIVERED_THEN_DROPPED_MAX,
                    "min_lost": expectation.min_lost})


def judge_order(view: BrokerView) -> Outcome:
    """Per asset, live and replayed messages each arrive in ``seq`` order; no seq reused."""
    inversions = {"live": 0, "hist": 0}
    for deliveries in view.lanes.values():
        for lane, hist in (("live", False), ("hist", True)):
            seqs = [d.seq for d in deliveries if d.hist is hist]
            inversions[lane] += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
    messages = sum(len(d) for d in view.lanes.values())
    passed = not any(inversions.values()) and view.seq_conflicts == 0 and view.malformed == 0
    return Outcome("order per asset", "order", passed,
                   f"{messages} deltas: {inversions['live']} live and {inversions['hist']} "
                   f"replayed out of order, {view.seq_conflicts} seq conflicts, "
                   f"{view.malformed} malformed", {
                       "deltas": messages, "live_inversions": inversions["live"],
                       "hist_inversions": inversions["hist"],
                       "seq_conflicts": view.seq_conflicts, "malformed": view.malformed,
                       "redeliveries": view.redeliveries,
                       "replayed": sum(d.hist for ds in view.lanes.values() for d in ds)})


def _value_at(trace: list[tuple[float, float | None, str]], times: list[float],
              t: float) -> tuple[float | None, str]:
    i = bisect.bisect_right(times, t) - 1
    if i < 0:
        return None, "NONE"
    return trace[i][1], trace[i][2]


def _checkpoints(events: list[dict[str, Any]], freeze_t: float) -> list[tuple[str, float]]:
    marks = []
    for event in events:
        if event["action"] in ("freeze", "gateway_exited"):
            continue
        label = event["id"] or event["action"]
        t = event["end"] if event.get("end") else event["t"]
        if t < freeze_t:
            marks.append((label, t))
    return marks


def judge_converge(expectation: Expectation, view: BrokerView, template: Template,
                   sim: list[dict[str, Any]], events: list[dict[str, Any]],
                   freeze_t: float) -> Outcome:
    """After each fault the broker-side twin equals the sim's state within tolerance."""
    traces = {p: view.traces.get(p, []) for p in template.points}
    times = {p: [x[0] for x in trace] for p, trace in traces.items()}
    samples = [s for s in sim if s["t"] < freeze_t and not s.get("rebooting")]

    def matches(sample: dict[str, Any]) -> bool:
        for point, mapping in template.points.items():
            twin, quality = _value_at(traces[point], times[point], sample["t"])
            truth = sample["values"].get(mapping.signal)
            if twin is None or quality != "GOOD" or truth is None:
                return False
            if abs(twin - float(truth) * mapping.scale) > mapping.tol + 1e-9:
                return False
        return True

    sample_times = [s["t"] for s in samples]
    results: dict[str, float | None] = {}
    for label, t in _checkpoints(events, freeze_t):
        start = bisect.bisect_left(sample_times, t)
        found = next((s["t"] for s in samples[start:] if matches(s)), None)
        results[label] = None if found is None else round(found - t, 2)
    slow = {k: v for k, v in results.items() if v is None or v > expectation.within}
    worst = max((v for v in results.values() if v is not None), default=0.0)
    passed = bool(results) and not slow
    summary = (f"converged after every one of {len(results)} faults, slowest "
               f"{worst:.1f} s (limit {expectation.within:.0f} s)" if passed else
               f"{len(slow)} of {len(results)} faults did not converge within "
               f"{expectation.within:.0f} s: {', '.join(slow)}")
    return Outcome(expectation.title, "converge", passed, summary,
                   {"seconds": results, "slowest_s": worst, "limit_s": expectation.within,
                    "points": sorted(template.points)})


def _event(events: list[dict[str, Any]], label: str) -> dict[str, Any] | None:
    return next((e for e in events if e["id"] == label), None)


def _stamp(received: float, doc: dict[str, Any]) -> float:
    """A record's own time (``ts``, ms) in seconds; its arrival time if it has none."""
    ts = doc.get("ts")
    return ts / 1000.0 if isinstance(ts, int | float) and not isinstance(ts, bool) else received


def judge_alarm(expectation: Expectation, view: BrokerView,
                events: list[dict[str, Any]]) -> Outcome:
    """The alarm is raised after its cause and cleared after the cause went away."""
    raise_event = _event(events, expectation.raised_by)
    if raise_event is None:
        return Outcome(expectation.title, "alarm", False,
                       f"action {expectation.raised_by} never ran")
    # When the gateway raised it (its "ts"), not when it arrived: an alarm raised during a
    # broker outage can only arrive after it.
    flips = [(_stamp(t, doc), bool(doc.get("active"))) for t, doc in view.alarms
             if doc.get("alarm") == expectation.alarm]
    raised = next((t for t, active in flips if active and t >= raise_event["t"]), None)
    figures: dict[str, Any] = {"alarm": expectation.alarm, "messages": len(flips)}
    figures["raised_after_s"] = None if raised is None else round(raised - raise_event["t"], 2)
    passed = raised is not None and raised - raise_event["t"] <= expectation.within
    summary = (f"{expectation.alarm} raised {figures['raised_after_s']} s after "
               f"{expectation.raised_by}" if raised is not None else
               f"{expectation.alarm} never raised after {expectation.raised_by}")
    if expectation.cleared_by:
        clear_event = _event(events, expectation.cleared_by)
        mark = None if clear_event is None else (clear_event.get("end") or clear_event["t"])
        cleared = None if mark is None else next(
            (t for t, active in flips if not active and t >= mark), None)
        figures["cleared_after_s"] = None if cleared is None or mark is None \
            else round(cleared - mark, 2)
        passed = passed and cleared is not None and mark is not None \
            and cleared - mark <= expectation.within
        summary += (f", cleared {figures['cleared_after_s']} s after {expectation.cleared_by}"
                    if cleared is not None else ", never cleared")
    return Outcome(expectation.title, "alarm", passed, summary, figures)


def judge_writes(view: BrokerView, template: Template, commands: list[dict[str, Any]],
                 writes: list[dict[str, Any]]) -> Outcome:
    """Every verdict as expected, and the sim received exactly the writes accepted commands made.

    A flood's commands need no answer each (a gateway may refuse a flood unanswered), but
    none may be accepted, and any write one caused is unexplained like any other.
    """
    device_writes = [w for w in writes if w.get("face") != "control"]
    flood = [c for c in commands if c.get("flood")]
    commands = [c for c in commands if not c.get("flood")]
    flood_answers = [found[1] for c in flood
                     if (found := view.results.get(str(c["id"]))) is not None]
    flood_accepted = [str(d.get("id")) for d in flood_answers if d.get("accepted")]
    accepted = []
    wrong_verdicts, missing_verdicts, reasons = [], [], {}
    for command in commands:
        verdict = view.results.get(str(command["id"]))
        if verdict is None:
            missing_verdicts.append(command["label"])
            continue
        doc = verdict[1]
        if bool(doc.get("accepted")) != (command["expect"] == "accepted"):
            wrong_verdicts.append(f"{command['label']}: {doc.get('reason')}")
        if doc.get("accepted"):
            accepted.append(command)
        else:
            reasons[command["label"]] = str(doc.get("reason"))

    def explains(command: dict[str, Any], write: dict[str, Any]) -> bool:
        name = template.writes.get(command["point"])
        scale = template.points.get(command["point"])
        factor = scale.scale if scale else 1.0
        return (name == write.get("name") and write["ts_ns"] / 1e9 >= command["t"] - 1.0
                and math.isclose(float(write["value"]) * factor, float(command["value"]),
                                 abs_tol=1e-6))

    unexplained = [w for w in device_writes if not any(explains(c, w) for c in accepted)]
    unwritten = [c["label"] for c in accepted
                 if not any(explains(c, w) for w in device_writes)]
    passed = not (wrong_verdicts or missing_verdicts or unexplained or unwritten
                  or flood_accepted)
    denied = sum(1 for c in commands if c["expect"] == "denied")
    summary = (f"{len(commands)} commands ({denied} that must be denied): "
               f"{len(wrong_verdicts)} wrong verdicts, {len(missing_verdicts)} unanswered, "
               f"{len(unexplained)} writes reached the sim without an accepted command, "
               f"{len(unwritten)} accepted but never written")
    if flood:
        refused = Counter(str(d.get("error_code") or "denied") for d in flood_answers)
        summary += (f"; a flood of {len(flood)} unsigned commands: {len(flood_accepted)} "
                    f"accepted, {len(flood_answers)} answered ("
                    + ", ".join(f"{n} {code}" for code, n in sorted(refused.items())) + ")")
    return Outcome("no write the policy should deny", "writes", passed, summary, {
        "flood": len(flood), "flood_answered": len(flood_answers),
        "flood_accepted": flood_accepted,
        "commands": len(commands), "must_deny": denied, "accepted": len(accepted),
        "wrong_verdicts": wrong_verdicts, "unanswered": missing_verdicts,
        "sim_writes": len(device_writes),
        "unexplained_writes": [f"{w.get('name')}={w.get('value')}" for w in unexplained],
        "accepted_not_written": unwritten, "denial_reasons": reasons})


def rss_slope_mb_per_h(samples: list[dict[str, Any]], warmup_s: float) -> tuple[float, float]:
    """Least-squares RSS slope (MB/hour) of the longest-lived process after ``warmup_s``.

    Returns (slope, hours fitted); (nan, 0) when too little is left after warm-up.
    """
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for sample in samples:
        by_pid.setdefault(sample["pid"], []).append(sample)
    if not by_pid:
        return math.nan, 0.0
    longest = max(by_pid.values(), key=lambda s: s[-1]["t"] - s[0]["t"])
    start = longest[0]["t"] + warmup_s
    kept = [s for s in longest if s["t"] >= start]
    if len(kept) < 10:
        return math.nan, 0.0
    hours = np.array([s["t"] for s in kept]) / 3600.0
    rss_mb = np.array([s["rss_bytes"] for s in kept]) / 1e6
    slope = float(np.polyfit(hours - hours[0], rss_mb, 1)[0])
    return slope, float(hours[-1] - hours[0])


def judge_resources(expectation: Expectation, samples: list[dict[str, Any]]) -> Outcome:
    """Peak RSS, mean CPU and (for long runs) the RSS trend stay within budget."""
    if not samples:
        return Outcome("memory and CPU within budget", "resources", False,
                       "no resource samples: the gateway never ran")
    peak = max(s["rss_bytes"] for s in samples) / 2**20
    busy, wall = 0.0, 0.0
    for a, b in itertools.pairwise(samples):
        if a["pid"] == b["pid"]:
            busy += b["cpu_s"] - a["cpu_s"]
            wall += b["t"] - a["t"]
    cpu = 100.0 * busy / wall if wall else 0.0
    duration = samples[-1]["t"] - samples[0]["t"]
    warmup = max(60.0, 0.1 * duration)
    slope, hours = rss_slope_mb_per_h(samples, warmup)
    checks = []
    if expectation.rss_mb is not None:
        checks.append(peak <= expectation.rss_mb)
    if expectation.cpu_pct is not None:
        checks.append(cpu <= expectation.cpu_pct)
    if expectation.rss_slope_mb_per_h is not None:
        checks.append(not math.isnan(slope) and slope <= expectation.rss_slope_mb_per_h)
    slope_text = "n/a" if math.isnan(slope) else f"{slope:+.2f} MB/h over {hours:.2f} h"
    summary = (f"peak RSS {peak:.1f} MiB (budget {expectation.rss_mb}), mean CPU {cpu:.1f} % "
               f"of a core (budget {expectation.cpu_pct}), RSS trend {slope_text}"
               + (f" (budget {expectation.rss_slope_mb_per_h} MB/h)"
                  if expectation.rss_slope_mb_per_h is not None else ""))
    return Outcome("memory and CPU within budget", "resources", all(checks), summary, {
        "peak_rss_mib": round(peak, 1), "mean_cpu_pct": round(cpu, 1),
        "rss_slope_mb_per_h": None if math.isnan(slope) else round(slope, 3),
        "slope_hours": round(hours, 3), "warmup_s": warmup})


def _spawns(events: list[dict[str, Any]]) -> list[float]:
    spawns = []
    for event in events:
        if event["action"] in ("gateway_start", "gateway_restart"):
            spawns.append(event["t"])
        elif event["action"] in ("gateway_stop", "gateway_kill") and event.get("end"):
            spawns.append(event["end"])
    return sorted(spawns)


def judge_restart(expectation: Expectation, view: BrokerView,
                  events: list[dict[str, Any]]) -> Outcome:
    """Each (re)start publishes its first message within the limit."""
    arrivals = sorted(view.gateway_messages)
    delays = []
    for spawn in _spawns(events):
        i = bisect.bisect_left(arrivals, spawn)
        delays.append(None if i >= len(arrivals) else round(arrivals[i] - spawn, 2))
    worst = max((d for d in delays if d is not None), default=math.nan)
    passed = bool(delays) and all(d is not None and d <= expectation.max_s for d in delays)
    summary = (f"{len(delays)} starts, first message after at most {worst:.2f} s "
               f"(limit {expectation.max_s:.0f} s)")
    return Outcome("restart time", "restart_time", passed, summary,
                   {"seconds": delays, "limit_s": expectation.max_s})


def judge_point_reaches(expectation: Expectation, view: BrokerView,
                        events: list[dict[str, Any]]) -> Outcome:
    """A point (an anomaly score, a feature) reaches a level soon after its cause."""
    start = _event(events, expectation.after)
    trace = view.traces.get(expectation.point, [])
    if start is None or expectation.above is None:
        return Outcome(expectation.title, "point_reaches", False, "misconfigured expectation")
    reached = next((t for t, v, q in trace if t >= start["t"] and v is not None
                    and q == "GOOD" and v >= expectation.above), None)
    before = [v for t, v, _ in trace if t < start["t"] and v is not None]
    delay = None if reached is None else round(reached - start["t"], 2)
    passed = delay is not None and delay <= expectation.within
    peak_before = max(before, default=math.nan)
    return Outcome(expectation.title, "point_reaches", passed,
                   f"{expectation.point} reached {expectation.above} "
                   + (f"{delay} s after {expectation.after}" if delay is not None
                      else f"never within {expectation.within:.0f} s")
                   + f"; highest before: {peak_before:.3g}",
                   {"seconds": delay, "limit_s": expectation.within,
                    "highest_before": None if math.isnan(peak_before) else peak_before,
                    "values_seen": len(trace)})


def judge_alive(events: list[dict[str, Any]], exits: list[tuple[float, int]],
                crash: str | None) -> Outcome:
    """The gateway never ended by itself, and stopped cleanly when told to."""
    died = [e for e in events if e["action"] == "gateway_exited"]
    final = exits[-1][1] if exits else None
    passed = not died and final == 0 and crash is None
    summary = (f"{len(died)} unexpected exits, final stop exit status {final}"
               + (f"; the harness failed: {crash}" if crash else ""))
    return Outcome("gateway stayed up", "alive", passed, summary,
                   {"unexpected_exits": [e["args"].get("status") for e in died],
                    "final_exit_status": final, "harness_error": crash})


def fault_matrix(view: BrokerView, runs: list[tuple[int, int, float, float]],
                 events: list[dict[str, Any]], outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """One row per timeline action: what it cost in lost samples and how fast the twin healed.

    Convergence times come from the converge judge, when the scenario has one. A lost
    value belongs to the last action that began before the sim served it.
    """
    expected = Counter[int]()
    for first, last, _, _ in runs:
        expected.update(range(first, last + 1))
    missing = expected - Counter(v for _, v, _, _ in view.counter)
    times = served_times(runs)
    starts = [e["t"] for e in events]
    lost = [0] * len(events)
    for value, count in missing.items():
        i = bisect.bisect_right(starts, times.get(value, 0.0)) - 1
        if i >= 0:
            lost[i] += count
    converge: dict[str, Any] = next(
        (o.figures.get("seconds", {}) for o in outcomes if o.kind == "converge"), {})
    rows = []
    for event, n_lost in zip(events, lost, strict=True):
        label = event["id"] or event["action"]
        rows.append({"id": label, "action": event["action"], "t": event["t"],
                     "for_s": None if not event.get("end") else round(event["end"] - event["t"], 1),
                     "lost": n_lost, "converged_s": converge.get(label)})
    return rows


class JudgeInputs(BaseModel):
    """What the judges need besides the recorded files; saved so a run can be judged again."""

    FILE: ClassVar[str] = "judge_inputs.json"

    scenario: Scenario
    profile: Path  # the profile folder the run used
    freeze_t: float  # when the plant was frozen for the final settle
    commands: list[dict[str, Any]]  # what the scripted operator sent
    exits: list[tuple[float, int]]  # every gateway exit: (time, status)
    crash: str | None  # why the run itself broke, if it did

    def save(self, data: Path) -> None:
        """Write them into the run's data folder."""
        (data / self.FILE).write_text(self.model_dump_json(by_alias=True, indent=1))

    @classmethod
    def load(cls, data: Path) -> JudgeInputs:
        """Read them back from a run's data folder."""
        return cls.model_validate_json((data / cls.FILE).read_text())


def judge_run(inputs: JudgeInputs, profile: Profile, data: Path) -> dict[str, Any]:
    """Judge every expectation of the scenario from the run folder ``data``."""
    scenario, freeze_t, commands = inputs.scenario, inputs.freeze_t, inputs.commands
    exits, crash = inputs.exits, inputs.crash
    template = profile.template(scenario.gateway.template)
    north = profile.northbound
    wanted = set(template.points) | {e.point for e in scenario.expect if e.point}
    view = rebuild(data / "messages.jsonl", prefix=north.json_prefix, counter=template.counter,
                   points=wanted, sparkplug=(north.sparkplug_group, north.sparkplug_node),
                   twin_out=data / "twin.jsonl")
    events = _load_jsonl(data / "events.jsonl")
    served = json.loads((data / "served.json").read_text() or "{}")
    runs = served_runs(served.get(template.points[template.counter].signal, {}))
    writes = json.loads((data / "writes.json").read_text() or "[]")
    outcomes = [judge_alive(events, exits, crash)]
    for expectation in scenario.expect:
        outcomes.append(_judge_one(expectation, scenario, profile, template, data, view, runs,
                                   events, writes, commands, freeze_t))
    return {"scenario": scenario.name, "about": scenario.about,
            "passed": all(o.passed for o in outcomes),
            "outcomes": [o.as_dict() for o in outcomes],
            "faults": fault_matrix(view, runs, events, outcomes),
            "plots": {"counter_point": template.counter,
                      "counter_signal": template.points[template.counter].signal,
                      "twin_points": {p: {"signal": m.signal, "scale": m.scale}
                                      for p, m in template.points.items()}}}


def _judge_one(expectation: Expectation, scenario: Scenario, profile: Profile,
               template: Template, data: Path, view: BrokerView,
               runs: list[tuple[int, int, float, float]], events: list[dict[str, Any]],
               writes: list[dict[str, Any]], commands: list[dict[str, Any]],
               freeze_t: float) -> Outcome:
    match expectation.kind:
        case "no_loss":
            return judge_loss(view, runs, events)
        case "drops_counted":
            return judge_drops(expectation, view, runs, _load_jsonl(data / "metrics.jsonl"),
                               profile)
        case "order":
            return judge_order(view)
        case "converge":
            return judge_converge(expectation, view, template, _load_jsonl(data / "sim.jsonl"),
                                  events, freeze_t)
        case "alarm":
            return judge_alarm(expectation, view, events)
        case "writes":
            return judge_writes(view, template, commands, writes)
        case "resources":
            return judge_resources(expectation, _load_jsonl(data / "resources.jsonl"))
        case "restart_time":
            return judge_restart(expectation, view, events)
        case "point_reaches":
            return judge_point_reaches(expectation, view, events)
        case "sparkplug":
            return _judge_sparkplug(scenario, profile, data, events)
    raise AssertionError(expectation.kind)  # the scenario model allows no other kind


def _judge_sparkplug(scenario: Scenario, profile: Profile, data: Path,
                     events: list[dict[str, Any]]) -> Outcome:
    from hil.harness.spb_judge import judge_sparkplug

    del scenario
    interop = Path(os.environ.get("EDGETWIN_INTEROP_PYTHON",
                                  REPO / ".venv-interop" / "bin" / "python"))
    outages = [(e["t"], e.get("end") or e["t"]) for e in events
               if e["action"] == "broker_stop"]
    north = profile.northbound
    return judge_sparkplug(data / "messages.jsonl", group=north.sparkplug_group,
                           node=north.sparkplug_node, interop_python=interop,
                           decoder=REPO / "hil" / "interop" / "decode_sparkplug.py",
                           outages=outages)
