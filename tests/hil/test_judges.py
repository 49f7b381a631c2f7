"""The HIL judges on hand-made run records: each one can fail, and says why."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hil.harness import judges
from hil.harness.profile import REPO, PointMap, Template, load_profile
from hil.harness.scenario import Expectation
from hil.harness.twin import BrokerView, rebuild

PREFIX = "edgetwin/v1/gw"
T0 = 1_800_000_000.0


def message(t: float, topic: str, doc: dict[str, Any] | bytes, *, retain: bool = False
            ) -> dict[str, Any]:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return {"t": t, "topic": topic, "payload_b64": base64.b64encode(payload).decode(),
            "qos": 1, "retain": retain}


def reported(t: float, seq: int, counter: int, *, hist: bool = False,
             **points: Any) -> dict[str, Any]:
    state = {"counter": {"v": counter, "q": "GOOD"}}
    state |= {name: {"v": v, "q": "GOOD"} for name, v in points.items()}
    doc: dict[str, Any] = {"seq": seq, "state": state}
    if hist:
        doc["hist"] = True
    return message(t, f"{PREFIX}/pump1/reported", doc)


def view_of(tmp_path: Path, messages: list[dict[str, Any]]) -> BrokerView:
    path = tmp_path / "messages.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return rebuild(path, prefix=PREFIX, counter="pump1/counter",
                   points={"pump1/counter", "pump1/speed_setpoint"},
                   twin_out=tmp_path / "twin.jsonl")


def run(first: int, last: int, t_first: float) -> tuple[int, int, float, float]:
    return (first, last, t_first, t_first + (last - first) * 0.1)


def test_loss_passes_when_every_served_value_arrived_once(tmp_path: Path) -> None:
    """Served 0..9, all delivered (one redelivered by seq): nothing lost or duplicated."""
    msgs = [reported(T0 + i * 0.1, i + 1, i) for i in range(10)]
    msgs.append(reported(T0 + 2, 5, 4))  # the same seq again: a QoS 1 redelivery
    outcome = judges.judge_loss(view_of(tmp_path, msgs), [run(0, 9, T0)], [])
    assert outcome.passed, outcome.summary
    assert outcome.figures["expected"] == 10
    assert outcome.figures["redeliveries"] == 1


def test_loss_names_the_missing_values(tmp_path: Path) -> None:
    """Two served values never reached the broker: the judge fails and lists them."""
    msgs = [reported(T0 + i * 0.1, i + 1, i) for i in range(10) if i not in (3, 7)]
    outcome = judges.judge_loss(view_of(tmp_path, msgs), [run(0, 9, T0)], [])
    assert not outcome.passed
    assert outcome.figures["lost_values"] == [3, 7]


def test_loss_catches_a_value_published_twice_under_two_seqs(tmp_path: Path) -> None:
    """A sample sent again as a new message is a duplicate a consumer cannot drop."""
    msgs = [reported(T0 + i * 0.1, i + 1, i) for i in range(5)]
    msgs.append(reported(T0 + 1, 99, 2))
    outcome = judges.judge_loss(view_of(tmp_path, msgs), [run(0, 4, T0)], [])
    assert not outcome.passed
    assert outcome.figures["duplicated"] == 1


def test_loss_within_the_kill_window_is_counted_apart(tmp_path: Path) -> None:
    """The value served just before a SIGKILL is reported as lost to the kill, not failed."""
    msgs = [reported(T0 + i * 0.1, i + 1, i) for i in range(9)]
    kill = {"t": T0 + 0.95, "id": "crash", "action": "gateway_kill", "args": {}, "end": None}
    outcome = judges.judge_loss(view_of(tmp_path, msgs), [run(0, 9, T0)], [kill])
    assert outcome.passed, outcome.summary
    assert outcome.figures["lost_to_kill"] == 1
    far_kill = {**kill, "t": T0 + 5}
    assert not judges.judge_loss(view_of(tmp_path, msgs), [run(0, 9, T0)], [far_kill]).passed


def test_a_repeated_value_missing_at_a_cut_is_excused_whichever_serving_it_was(
        tmp_path: Path) -> None:
    """Value 5 was served twice (a reboot in between); the second serving was cut off."""
    msgs = [reported(T0 + i * 0.1, i + 1, i) for i in range(10)]
    msgs += [reported(T0 + 20 + i * 0.1, 20 + i, i) for i in range(5)]
    runs = [run(0, 9, T0), run(0, 5, T0 + 20)]
    cut = {"t": T0 + 20.55, "id": "cut", "action": "link_cut", "args": {"link": "plc"},
           "end": T0 + 25}
    outcome = judges.judge_loss(view_of(tmp_path, msgs), runs, [cut])
    assert outcome.passed, outcome.summary
    assert outcome.figures["in_flight_at_cut_or_stop"] == 1
    cut_elsewhere = {**cut, "args": {"link": "broker"}}
    assert not judges.judge_loss(view_of(tmp_path, msgs), runs, [cut_elsewhere]).passed


def test_a_reboot_serves_low_values_twice_and_both_must_arrive(tmp_path: Path) -> None:
    """After a PLC reboot the counter restarts: each run's values are expected again."""
    msgs = [reported(T0 + i * 0.1, i + 1, i) for i in range(5)]
    msgs += [reported(T0 + 5 + i * 0.1, 10 + i, i) for i in range(3)]
    runs = [run(0, 4, T0), run(0, 2, T0 + 5)]
    assert judges.judge_loss(view_of(tmp_path, msgs), runs, []).passed
    runs.append(run(0, 1, T0 + 9))
    assert judges.judge_loss(view_of(tmp_path, msgs), runs, []).figures["lost"] == 2


def metrics_sample(dropped: int) -> list[dict[str, Any]]:
    return [{"t": T0, "values": {"edgetwin_outbox_dropped_total": float(dropped)}}]


def test_drops_must_all_be_counted(tmp_path: Path) -> None:
    """Losses equal to the count pass; an uncounted loss fails; an in-flight surplus is allowed."""
    profile = load_profile(REPO / "hil" / "gateways" / "edgetwin")
    msgs = [reported(T0 + i * 0.1, i + 1, i) for i in range(100) if not 20 <= i < 80]
    view = view_of(tmp_path, msgs)
    expectation = Expectation(kind="drops_counted", min_lost=10)
    runs = [run(0, 99, T0)]
    assert judges.judge_drops(expectation, view, runs, metrics_sample(60), profile).passed
    assert not judges.judge_drops(expectation, view, runs, metrics_sample(59), profile).passed
    surplus = judges.judge_drops(expectation, view, runs, metrics_sample(61), profile)
    assert surplus.passed
    assert surplus.figures["delivered_then_dropped"] == 1
    assert not judges.judge_drops(expectation, view, runs, metrics_sample(90), profile).passed


def test_order_fails_on_an_inversion_within_a_lane(tmp_path: Path) -> None:
    """Live and replayed lanes are each in seq order; an inversion in one fails."""
    good = [reported(T0, 5, 0), reported(T0 + 1, 1, 1, hist=True), reported(T0 + 2, 6, 2),
            reported(T0 + 3, 2, 3, hist=True)]
    assert judges.judge_order(view_of(tmp_path, good)).passed
    bad = [*good, reported(T0 + 4, 4, 4)]
    outcome = judges.judge_order(view_of(tmp_path, bad))
    assert not outcome.passed
    assert outcome.figures["live_inversions"] == 1


def test_order_fails_when_a_seq_carries_two_different_messages(tmp_path: Path) -> None:
    """A reused seq would make a consumer drop real data."""
    outcome = judges.judge_order(view_of(tmp_path, [reported(T0, 1, 0), reported(T0, 1, 1)]))
    assert not outcome.passed
    assert outcome.figures["seq_conflicts"] == 1


def test_a_live_message_replayed_as_history_is_a_redelivery(tmp_path: Path) -> None:
    """Sent live, unacknowledged, replayed with hist: the same entry, not a conflict."""
    view = view_of(tmp_path, [reported(T0, 1, 0), reported(T0 + 5, 1, 0, hist=True)])
    assert judges.judge_order(view).passed
    assert view.redeliveries == 1


def test_malformed_messages_are_counted(tmp_path: Path) -> None:
    """A reported message that is not JSON fails the order judge with a count."""
    msgs = [reported(T0, 1, 0), message(T0 + 1, f"{PREFIX}/pump1/reported", b"\xff{")]
    assert judges.judge_order(view_of(tmp_path, msgs)).figures["malformed"] == 1


TEMPLATE = Template(counter="pump1/counter",
                    points={"pump1/counter": PointMap(signal="counter", tol=2),
                            "pump1/speed_setpoint": PointMap(signal="speed_setpoint")},
                    writes={"pump1/speed_setpoint": "speed_setpoint_rpm"})


def sim_sample(t: float, counter: int, setpoint: float) -> dict[str, Any]:
    return {"t": t, "t_s": 0, "rebooting": False,
            "values": {"counter": counter, "speed_setpoint": setpoint}}


def test_converge_measures_the_time_after_a_fault_ends(tmp_path: Path) -> None:
    """The twin matches the sim 2 s after the fault ended: converged in 2 s."""
    msgs = [reported(T0 + i, i + 1, i * 10, speed_setpoint=1450) for i in range(5)]
    msgs += [reported(T0 + 12, 6, 120, speed_setpoint=1450)]
    sim = [sim_sample(T0 + i * 0.5, int(i * 5), 1450) for i in range(30)]
    fault = {"t": T0 + 5, "id": "cut", "action": "link_cut", "args": {}, "end": T0 + 10}
    outcome = judges.judge_converge(Expectation(kind="converge", within=5),
                                    view_of(tmp_path, msgs), TEMPLATE, sim, [fault], T0 + 15)
    assert outcome.passed, outcome.summary
    assert outcome.figures["seconds"] == {"cut": 2.0}


def test_converge_fails_when_the_twin_never_catches_up(tmp_path: Path) -> None:
    """A setpoint the twin never reports is a divergence the judge names."""
    msgs = [reported(T0 + i, i + 1, i * 10, speed_setpoint=1450) for i in range(5)]
    sim = [sim_sample(T0 + i * 0.5, int(i * 5), 1500) for i in range(30)]
    fault = {"t": T0 + 1, "id": "cmd", "action": "command", "args": {}, "end": None}
    outcome = judges.judge_converge(Expectation(kind="converge", within=5),
                                    view_of(tmp_path, msgs), TEMPLATE, sim, [fault], T0 + 15)
    assert not outcome.passed
    assert outcome.figures["seconds"] == {"cmd": None}


def alarm(t: float, seq: int, active: bool, *, received: float | None = None
          ) -> dict[str, Any]:
    return message(t if received is None else received, f"{PREFIX}/alarms",
                   {"seq": seq, "ts": int(t * 1000), "alarm": "outbox_full", "active": active})


def test_alarm_raised_and_cleared_in_time(tmp_path: Path) -> None:
    """Raised 2 s after the outage began and cleared 3 s after it ended."""
    outage = {"t": T0, "id": "outage", "action": "broker_stop", "args": {}, "end": T0 + 10}
    expectation = Expectation(kind="alarm", alarm="outbox_full", raised_by="outage",
                              cleared_by="outage", within=5)
    view = view_of(tmp_path, [alarm(T0 + 2, 1, True), alarm(T0 + 13, 2, False)])
    outcome = judges.judge_alarm(expectation, view, [outage])
    assert outcome.passed, outcome.summary
    assert outcome.figures["raised_after_s"] == 2.0
    assert outcome.figures["cleared_after_s"] == 3.0
    never_cleared = view_of(tmp_path, [alarm(T0 + 2, 1, True)])
    assert not judges.judge_alarm(expectation, never_cleared, [outage]).passed


def test_an_alarm_raised_during_an_outage_counts_from_its_own_time(tmp_path: Path) -> None:
    """Raised 2 s in, delivered only when the broker came back: judged by its ts."""
    outage = {"t": T0, "id": "outage", "action": "broker_stop", "args": {}, "end": T0 + 20}
    expectation = Expectation(kind="alarm", alarm="outbox_full", raised_by="outage", within=5)
    view = view_of(tmp_path, [alarm(T0 + 2, 1, True, received=T0 + 21)])
    outcome = judges.judge_alarm(expectation, view, [outage])
    assert outcome.passed, outcome.summary
    assert outcome.figures["raised_after_s"] == 2.0


def result(t: float, seq: int, command_id: str, accepted: bool) -> dict[str, Any]:
    return message(t, f"{PREFIX}/cmd/result", {"seq": seq, "id": command_id,
                                               "accepted": accepted, "reason": "r"})


def test_writes_pass_when_only_accepted_commands_reached_the_sim(tmp_path: Path) -> None:
    """One accepted command written once, one denied command with no trace."""
    commands = [
        {"t": T0, "label": "ok", "id": "a", "point": "pump1/speed_setpoint", "value": 1500,
         "signature": "valid", "expect": "accepted"},
        {"t": T0 + 1, "label": "forged", "id": "b", "point": "pump1/speed_setpoint",
         "value": 1600, "signature": "forged", "expect": "denied"},
    ]
    view = view_of(tmp_path, [result(T0 + 0.2, 1, "a", True), result(T0 + 1.2, 2, "b", False)])
    writes = [{"face": "modbus_tcp", "name": "speed_setpoint_rpm", "value": 1500.0,
               "ts_ns": int((T0 + 0.1) * 1e9), "accepted": True}]
    assert judges.judge_writes(view, TEMPLATE, commands, writes).passed
    leaked = [*writes, {"face": "modbus_tcp", "name": "speed_setpoint_rpm", "value": 1600.0,
                        "ts_ns": int((T0 + 1.1) * 1e9), "accepted": True}]
    outcome = judges.judge_writes(view, TEMPLATE, commands, leaked)
    assert not outcome.passed
    assert outcome.figures["unexplained_writes"] == ["speed_setpoint_rpm=1600.0"]


def test_writes_fail_on_a_wrong_or_missing_verdict(tmp_path: Path) -> None:
    """A command that should be denied but was accepted, and one never answered."""
    commands = [
        {"t": T0, "label": "bad", "id": "a", "point": "pump1/speed_setpoint", "value": 9000,
         "signature": "valid", "expect": "denied"},
        {"t": T0, "label": "lost", "id": "b", "point": "pump1/speed_setpoint", "value": 1,
         "signature": "valid", "expect": "denied"},
    ]
    view = view_of(tmp_path, [result(T0 + 0.2, 1, "a", True)])
    outcome = judges.judge_writes(view, TEMPLATE, commands, [])
    assert not outcome.passed
    assert outcome.figures["unanswered"] == ["lost"]
    assert len(outcome.figures["wrong_verdicts"]) == 1


def test_a_flood_needs_no_answers_but_none_may_be_accepted(tmp_path: Path) -> None:
    """Three flood commands: one denied, one refused as a flood, one unanswered: a pass."""
    flood = [{"t": T0, "label": f"flood#{i}", "id": f"f{i}", "point": "pump1/speed_setpoint",
              "value": 1550, "signature": "unsigned", "expect": "denied", "flood": True}
             for i in range(3)]
    flooded = message(T0 + 0.3, f"{PREFIX}/cmd/result", {
        "seq": 2, "id": "f1", "accepted": False, "reason": "r", "error_code": "flooded"})
    view = view_of(tmp_path, [result(T0 + 0.2, 1, "f0", False), flooded])
    outcome = judges.judge_writes(view, TEMPLATE, flood, [])
    assert outcome.passed, outcome.summary
    assert outcome.summary.endswith("a flood of 3 unsigned commands: 0 accepted, 2 answered "
                                    "(1 denied, 1 flooded)")
    (tmp_path / "in").mkdir()
    let_in = view_of(tmp_path / "in", [result(T0 + 0.2, 1, "f0", True)])
    outcome = judges.judge_writes(let_in, TEMPLATE, flood, [])
    assert not outcome.passed
    assert outcome.figures["flood_accepted"] == ["f0"]


def resource_samples(slope_mb_per_h: float, hours: float, pid: int = 1) -> list[dict[str, Any]]:
    n = int(hours * 3600)
    return [{"t": T0 + i, "pid": pid, "rss_bytes": int(50e6 + slope_mb_per_h * 1e6 * i / 3600),
             "cpu_s": i * 0.1} for i in range(0, n, 5)]


def test_resources_measures_the_rss_slope_after_warm_up() -> None:
    """A steady 3 MB/h growth is measured as such and fails a 1 MB/h budget."""
    expectation = Expectation(kind="resources", rss_mb=200, cpu_pct=50, rss_slope_mb_per_h=1.0)
    leaking = judges.judge_resources(expectation, resource_samples(3.0, 0.5))
    assert not leaking.passed
    assert leaking.figures["rss_slope_mb_per_h"] == pytest.approx(3.0, rel=0.01)
    assert leaking.figures["mean_cpu_pct"] == pytest.approx(10.0, rel=0.01)
    assert judges.judge_resources(expectation, resource_samples(0.0, 0.5)).passed


def test_restart_time_is_from_spawn_to_first_message(tmp_path: Path) -> None:
    """Two starts, each followed by a message: the delays are measured from the spawns."""
    events = [{"t": T0, "id": "", "action": "gateway_start", "args": {}, "end": None},
              {"t": T0 + 10, "id": "k", "action": "gateway_kill", "args": {}, "end": T0 + 12}]
    view = view_of(tmp_path, [reported(T0 + 1.5, 1, 0), reported(T0 + 15, 2, 1)])
    outcome = judges.judge_restart(Expectation(kind="restart_time", max_s=5), view, events)
    assert outcome.figures["seconds"] == [1.5, 3.0]
    assert outcome.passed
    assert not judges.judge_restart(Expectation(kind="restart_time", max_s=2), view,
                                    events).passed


def test_served_times_interpolate_within_a_run() -> None:
    """Value 5 of a run 0..10 over one second was served half way."""
    assert judges.served_times([(0, 10, T0, T0 + 1)])[5] == pytest.approx(T0 + 0.5)
    assert judges.served_values({"runs": [[3, 5, T0, T0], [0, 1, T0, T0]]}) == {0, 1, 3, 4, 5}
