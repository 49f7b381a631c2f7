"""The runner end to end, against a gateway that breaks the rules: the judges must catch it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hil.harness.__main__ import main
from hil.harness.profile import REPO, load_profile
from hil.harness.runner import judge_again, run_scenario
from hil.harness.scenario import Scenario

from tests.hil.rogue_gateway import ROGUE_SETPOINT

pytestmark = [pytest.mark.broker, pytest.mark.sim]

ROGUE = Path(__file__).with_name("rogue_gateway.py")


async def test_a_rogue_gateway_fails_the_judges(tmp_path: Path) -> None:
    """A gateway that writes without a command and publishes nothing fails every judge."""
    scenario = Scenario.model_validate({
        "name": "rogue", "duration": 6, "settle": 2, "gateway": {"template": "skid.yaml"},
        "timeline": [{"at": 0, "do": "gateway_start"}],
        "expect": [{"kind": "writes"}, {"kind": "no_loss"}, {"kind": "restart_time"}]})
    profile = load_profile(REPO / "hil" / "gateways" / "edgetwin")
    results = await run_scenario(scenario, profile, tmp_path / "run",
                                 gateway_cmd=[sys.executable, str(ROGUE), "{config}"])
    outcomes = {o["kind"]: o for o in results["outcomes"]}
    assert not results["passed"]
    assert outcomes["writes"]["figures"]["unexplained_writes"] == [
        f"speed_setpoint_rpm={ROGUE_SETPOINT}"]
    assert not outcomes["no_loss"]["passed"]  # it read no counter: nothing to judge
    assert outcomes["restart_time"]["figures"]["seconds"] == [None]
    assert outcomes["alive"]["figures"]["final_exit_status"] == 3
    assert str(ROGUE) in results["gateway"]
    assert (tmp_path / "run" / "data" / "messages.jsonl").exists()

    # Judged again from what it recorded: the same verdicts, and the CLI says FAIL too.
    (tmp_path / "run" / "results.json").unlink()
    again = judge_again(tmp_path / "run")
    assert [(o["kind"], o["passed"], o["summary"]) for o in again["outcomes"]] == [
        (o["kind"], o["passed"], o["summary"]) for o in results["outcomes"]]
    assert main(["judge", str(tmp_path)]) == 1  # the run folder: every scenario in it
    assert (tmp_path / "run" / "summary.md").is_file()
    assert (tmp_path / "summary.md").is_file()
    assert main(["judge", str(tmp_path / "run" / "data")]) == 1  # nothing recorded there


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_a_run_with_its_gateway_broker_and_sim(tmp_path: Path) -> None:
    """`kill` of a long run leaves no gateway, broker or sim behind."""
    scenario = tmp_path / "long.yaml"
    scenario.write_text("name: long\nduration: 600\ngateway: {template: skid.yaml}\n"
                        "timeline: [{at: 0, do: gateway_start}]\nexpect: [{kind: no_loss}]\n")
    harness = subprocess.Popen(
        [sys.executable, "-m", "hil.harness", "run", "--out", str(tmp_path / "reports"),
         "--gateway-cmd", f"{sys.executable} {ROGUE} {{config}}", str(scenario)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "reports").glob("*/long/logs/gateway-1.log")):
            assert time.monotonic() < deadline, "the gateway never started"
            assert harness.poll() is None, harness.stderr.read() if harness.stderr else ""
            time.sleep(0.1)  # polling a file another process writes; bounded above
        children = _children(harness.pid)
        assert len(children) >= 3  # broker, sim, gateway
        harness.send_signal(signal.SIGTERM)
        assert harness.wait(timeout=60) == 128 + signal.SIGTERM
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
