"""The HIL report on a hand-made scenario folder: what it says, what it draws, what it survives."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from hil.harness import plots
from hil.harness.report import served_times, write_report, write_run_summary

if TYPE_CHECKING:
    from pathlib import Path

T0 = 1_800_000_000.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MISSING = list(range(150, 175))  # 25 values: more than the report lists
OUTAGE = (10, 18)  # the broker is down, seconds after T0
KILL = (30, 32)  # the gateway is killed, then started again (new pid)
TWIN_POINTS = {"pump1/motor_temp": {"signal": "motor_temp", "scale": 1.0},
               "pump1/run": {"signal": "run", "scale": 1.0}}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def results(name: str, *, passed: bool) -> dict[str, Any]:
    loss = {"name": "no lost or duplicated samples", "kind": "no_loss", "passed": passed,
            "summary": "25 of 400 counter values lost, 0 duplicated" if not passed
            else "0 of 400 counter values lost, 0 duplicated",
            "figures": {"expected": 400, "lost": 25 if not passed else 0,
                        "missing": MISSING if not passed else []}}
    alive = {"name": "gateway stayed up", "kind": "alive", "passed": True,
             "summary": "0 unexpected exits, final stop exit status 0",
             "figures": {"unexpected_exits": [], "final_exit_status": 0}}
    return {"scenario": name, "passed": passed, "started": T0, "ended": T0 + 60.0,
            "gateway": "edgetwin run -c {config}", "outcomes": [alive, loss],
            "plots": {"counter_point": "pump1/counter", "counter_signal": "counter",
                      "twin_points": TWIN_POINTS}}


def make_scenario(folder: Path, *, passed: bool = False, metrics: bool = True) -> Path:
    """A 60 s run: a broker outage (a span) replayed afterwards, a kill, an instant command.

    The sim serves 10 counter values a second in two runs with a gap between them (a PLC
    cut), and 150..174 never reach the broker.
    """
    data = folder / "data"
    data.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results(folder.name, passed=passed)))
    write_jsonl(data / "events.jsonl", [
        {"t": T0 + 1, "id": "", "action": "gateway_start", "args": {}, "end": None,
         "detail": "pid 100"},
        {"t": T0 + OUTAGE[0], "id": "broker-down", "action": "broker_stop", "args": {"for": 8},
         "end": T0 + OUTAGE[1], "detail": ""},
        {"t": T0 + KILL[0], "id": "crash", "action": "gateway_kill", "args": {"for": 2},
         "end": T0 + KILL[1], "detail": "SIGKILL"},
        {"t": T0 + 40, "id": "cmd1", "action": "command", "args": {"value": 1500},
         "end": None, "detail": "good pump1/speed_setpoint=1500 (expect accepted)"}])
    runs: list[tuple[int, int, float, float]] = [(0, 199, T0 + 2, T0 + 21.9),
                                                 (250, 449, T0 + 27, T0 + 46.9)]
    (data / "served.json").write_text(json.dumps({"counter": {"reads": 400, "runs": runs}}))
    twin, seq = [], 0
    for first, last, t_first, _ in runs:
        for value in range(first, last + 1):
            if value in MISSING:
                continue
            served = t_first + (value - first) * 0.1
            outage = T0 + OUTAGE[0] <= served < T0 + OUTAGE[1]
            t = T0 + OUTAGE[1] + 0.5 + (served - T0 - OUTAGE[0]) * 0.05 if outage \
                else served + 0.05
            seq += 1
            for point, v in (("pump1/counter", value), ("pump1/motor_temp", 60 + served - T0),
                             ("pump1/run", True)):
                twin.append({"t": t, "point": point, "v": v, "q": "GOOD", "seq": seq,
                             "hist": outage})
    write_jsonl(data / "twin.jsonl", sorted(twin, key=lambda row: row["t"]))
    write_jsonl(data / "sim.jsonl", [
        {"t": T0 + i / 2, "t_s": i / 2, "rebooting": False,
         "values": {"counter": 5 * i, "motor_temp": 60 + i / 2, "run": True}}
        for i in range(120)])
    write_jsonl(data / "resources.jsonl", [
        {"t": T0 + s, "pid": 100 if s < KILL[0] else 200, "rss_bytes": 50_000_000 + 10_000 * s,
         "cpu_s": 0.05 * s} for s in range(1, 60) if not KILL[0] <= s < KILL[1]])
    if metrics:
        write_jsonl(data / "metrics.jsonl", [
            {"t": T0 + s, "values": {
                "edgetwin_outbox_depth": 10.0 * (s - OUTAGE[0]) if OUTAGE[0] <= s <= OUTAGE[1]
                else 0.0, "edgetwin_outbox_dropped_total": 0.0}}
            for s in range(1, 60)])
    return folder


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One full scenario folder with its report written (the plots take a second)."""
    folder = make_scenario(tmp_path_factory.mktemp("run") / "outages")
    summary = write_report(folder)
    return folder, summary.read_text()


def test_summary_names_each_outcome_with_its_result_and_summary(
        reported: tuple[Path, str]) -> None:
    """The outcome table gives every expectation its PASS/FAIL marker and its summary."""
    folder, text = reported
    assert (folder / "summary.md").is_file()
    assert text.startswith("# outages — ❌ FAIL")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith(("| gateway stayed up", "| no lost"))}
    assert "✅ PASS" in rows["gateway stayed up"]
    assert "0 unexpected exits, final stop exit status 0" in rows["gateway stayed up"]
    assert "❌ FAIL" in rows["no lost or duplicated samples"]
    assert "25 of 400 counter values lost" in rows["no lost or duplicated samples"]
    assert "`edgetwin run -c {config}`" in text


def test_every_referenced_png_exists_and_is_a_png(reported: tuple[Path, str]) -> None:
    """Each plot the summary links is a PNG next to it: counter, buffer, resources, faults."""
    folder, text = reported
    linked = set(re.findall(r"\]\(([^)]+\.png)\)", text))
    assert {"counter_gaps.png", "buffer_depth.png", "resources.png"} <= linked
    assert {"fault_2_broker-down.png", "fault_4_cmd1.png"} <= linked  # a span, an instant
    assert "fault_1_gateway_start.png" not in linked  # the run's own start is bookkeeping
    for name in linked:
        assert (folder / name).read_bytes()[:8] == PNG_MAGIC, name


def test_long_figure_lists_are_cut_with_a_count(reported: tuple[Path, str]) -> None:
    """A figure's list shows its first 20 items and says how many more there are."""
    _, text = reported
    line = next(line for line in text.splitlines() if line.startswith("- missing:"))
    assert line.startswith("- missing: 150, 151,")
    assert line.endswith("169, … 5 more")


def test_timeline_lists_each_event_with_its_duration(reported: tuple[Path, str]) -> None:
    """The timeline table has t+s from the scenario start, the action and how long it lasted."""
    _, text = reported
    row = next(line for line in text.splitlines() if "| broker-down |" in line)
    assert "| 10.0 |" in row and "| broker_stop |" in row and "| 8.0 s |" in row
    assert "[plot](fault_2_broker-down.png)" in row


def test_missing_metrics_says_buffer_depth_was_not_recorded(tmp_path: Path) -> None:
    """Without metrics.jsonl the report is still written and says the depth was not recorded."""
    folder = make_scenario(tmp_path / "plant", metrics=False)
    text = write_report(folder).read_text()
    assert "Buffer depth was not recorded" in text
    assert "buffer_depth.png" not in text
    assert not (folder / "buffer_depth.png").exists()
    assert (folder / "resources.png").is_file()


def test_only_results_json_gives_a_report_that_says_what_is_missing(tmp_path: Path) -> None:
    """A run that broke before recording anything still gets a report, naming the gaps."""
    folder = tmp_path / "early"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results("early", passed=False)))
    text = write_report(folder).read_text()
    assert "❌ FAIL" in text
    assert "Buffer depth was not recorded" in text
    assert "memory and CPU were not recorded" in text
    assert "No timeline events were recorded" in text
    assert "No counter chart" in text
    assert "| data/twin.jsonl | missing |" in text
    assert "could not be drawn" not in text
    assert not list(folder.glob("*.png"))


def test_an_empty_folder_gives_a_report_without_results(tmp_path: Path) -> None:
    """Not even results.json: the report says the run was never judged."""
    text = write_report(tmp_path / "nothing").read_text()
    assert text.startswith("# nothing — ⚠️ NO RESULT")
    assert "results.json is missing" in text


def test_damaged_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    """A line cut short by a killed writer is skipped, counted, and the plots still come."""
    folder = make_scenario(tmp_path / "cut")
    with (folder / "data" / "twin.jsonl").open("a") as twin:
        twin.write('{"t": 1800000059.0, "point": "pump1/counter", "v": 44')
    text = write_report(folder).read_text()
    assert "1 unreadable lines skipped" in text
    assert "could not be drawn" not in text
    assert (folder / "counter_gaps.png").read_bytes()[:8] == PNG_MAGIC


def test_served_times_interpolate_within_runs_and_skip_gaps() -> None:
    """A value's served time is interpolated within its run; a value in no run gets NaN."""
    runs = np.array([[0, 10, 100.0, 101.0], [20, 30, 200.0, 202.0]])
    got = served_times(np.array([0.0, 5.0, 15.0, 25.0, 30.0]), runs)
    assert got[[0, 1, 3, 4]] == pytest.approx([100.0, 100.5, 201.0, 202.0])
    assert np.isnan(got[2])


def test_run_summary_lists_each_scenario_with_a_link(tmp_path: Path) -> None:
    """The run page has one row per scenario, its result, its failures and a link."""
    run_dir = tmp_path / "20261122T081500Z"
    good = run_dir / "good"
    good.mkdir(parents=True)
    (good / "results.json").write_text(json.dumps(results("good", passed=True)))
    (good / "summary.md").write_text("# good\n")
    bad = run_dir / "bad"
    bad.mkdir()
    (bad / "results.json").write_text(json.dumps(results("bad", passed=False)))
    (bad / "summary.md").write_text("# bad\n")
    text = write_run_summary(run_dir, [good, bad]).read_text()
    assert text.startswith("# HIL run 20261122T081500Z — ❌ FAIL")
    good_row = next(line for line in text.splitlines() if "[good]" in line)
    bad_row = next(line for line in text.splitlines() if "[bad]" in line)
    assert "[good](good/summary.md)" in good_row and "✅ PASS" in good_row
    assert "[bad](bad/summary.md)" in bad_row and "❌ FAIL" in bad_row
    assert "**no lost or duplicated samples**: 25 of 400 counter values lost" in bad_row
    assert "| 60.0 s |" in bad_row


def test_run_summary_has_a_fault_matrix(tmp_path: Path) -> None:
    """Every fault of every scenario gets a row: when, how long, samples lost, convergence."""
    run_dir = tmp_path / "run"
    folder = run_dir / "outages"
    folder.mkdir(parents=True)
    doc = results("outages", passed=False)
    doc["faults"] = [
        {"id": "cut", "action": "link_cut", "t": doc["started"] + 24, "for_s": 6.0,
         "lost": 3, "converged_s": 5.5},
        {"id": "end", "action": "freeze", "t": doc["started"] + 60, "for_s": None,
         "lost": 0, "converged_s": None}]
    (folder / "results.json").write_text(json.dumps(doc))
    text = write_run_summary(run_dir, [folder]).read_text()
    assert "## Fault matrix" in text
    assert "| link_cut | outages | cut | 24 | 6.0 | 3 | 5.5 |" in text
    assert "| freeze |" not in text  # the end of the run is not a fault


def test_a_plot_that_fails_is_named_and_the_rest_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in one plot costs that plot only: the report names it and draws the others."""
    def broken(*_args: object, **_kwargs: object) -> None:
        message = "boom"
        raise ValueError(message)

    monkeypatch.setattr(plots, "resources", broken)
    folder = make_scenario(tmp_path / "buggy", metrics=False)
    text = write_report(folder).read_text()
    assert "The resources plot could not be drawn: `ValueError: boom`" in text
    assert (folder / "counter_gaps.png").read_bytes()[:8] == PNG_MAGIC
