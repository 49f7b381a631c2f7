"""``python -m hil.harness``: run HIL scenarios (or a soak) against a gateway and write the report.

    python -m hil.harness run [SCENARIO.yaml ...]      # default: every file in hil/scenarios
    python -m hil.harness soak --hours 1 [--seed 1]
    python -m hil.harness judge hil/reports/<run>[/<scenario>] # judge recorded runs again
    ... --gateway-cmd "mygateway --config {config}"    # another gateway, same scenarios

Exit status 0 when every expectation passed, 1 when one failed, 2 for a bad scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hil.harness.judges import JudgeInputs
from hil.harness.profile import REPO, load_profile
from hil.harness.report import write_report, write_run_summary
from hil.harness.runner import judge_again, run_scenario
from hil.harness.scenario import Scenario, ScenarioError, load_scenario
from hil.harness.soak import soak_scenario

SCENARIOS = REPO / "hil" / "scenarios"
REPORTS = REPO / "hil" / "reports"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hil.harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "soak"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--profile", type=Path, default=REPO / "hil" / "gateways" / "edgetwin",
                         help="the gateway profile folder")
        cmd.add_argument("--gateway-cmd",
                         help="the gateway's command line ({config} is its rendered config)")
        cmd.add_argument("--out", type=Path, default=REPORTS, help="where run folders go")
    sub.choices["run"].add_argument("scenarios", nargs="*", type=Path)
    soak = sub.choices["soak"]
    soak.add_argument("--hours", type=float, required=True)
    soak.add_argument("--seed", type=int, default=1)
    soak.add_argument("--speedup", type=float, default=10.0, help="plant seconds per second")
    judge = sub.add_parser("judge", help="judge recorded runs again and rewrite their reports")
    judge.add_argument("folders", nargs="+", type=Path,
                       help="a run folder (every scenario in it) or one scenario folder")
    return parser


async def _run_all(scenarios: list[Scenario], args: argparse.Namespace) -> bool:
    # `kill` ends a run like Ctrl-C does: cancelled, so the gateway, broker and sim stop too.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    profile = load_profile(args.profile)
    gateway_cmd = shlex.split(args.gateway_cmd) if args.gateway_cmd else None
    run_dir = args.out / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folders, passed = [], True
    for scenario in scenarios:
        folder = run_dir / scenario.name
        print(f"== {scenario.name}: {scenario.about}", flush=True)
        results = await run_scenario(scenario, profile, folder, gateway_cmd=gateway_cmd,
                                     report=write_report)
        folders.append(folder)
        _print(results)
        passed = passed and bool(results["passed"])
    summary = write_run_summary(run_dir, folders)
    print(f"report: {summary}", flush=True)
    return passed


def _print(results: dict[str, Any]) -> None:
    for outcome in results["outcomes"]:
        mark = "PASS" if outcome["passed"] else "FAIL"
        print(f"   {mark}  {outcome['name']}: {outcome['summary']}", flush=True)


def _judge_folders(folders: list[Path]) -> bool:
    """``judge``: each folder is a scenario folder, or a run folder holding several."""
    passed = True
    for folder in folders:
        scenario_dirs = [folder] if (folder / "data" / JudgeInputs.FILE).is_file() else sorted(
            d for d in folder.iterdir() if (d / "data" / JudgeInputs.FILE).is_file())
        if not scenario_dirs:
            print(f"{folder}: no recorded scenario (data/{JudgeInputs.FILE}) in it",
                  file=sys.stderr)
            return False
        for scenario_dir in scenario_dirs:
            print(f"== {scenario_dir}", flush=True)
            results = judge_again(scenario_dir, report=write_report)
            _print(results)
            passed = passed and bool(results["passed"])
        if scenario_dirs != [folder]:
            print(f"report: {write_run_summary(folder, scenario_dirs)}", flush=True)
    return passed


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    if args.command == "judge":
        return 0 if _judge_folders(args.folders) else 1
    try:
        if args.command == "soak":
            scenarios = [soak_scenario(args.hours, args.seed, speedup=args.speedup)]
        else:
            files = args.scenarios or sorted(SCENARIOS.glob("*.yaml"))
            scenarios = [load_scenario(path) for path in files]
    except ScenarioError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        return 0 if asyncio.run(_run_all(scenarios, args)) else 1
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("stopped before the end: no verdict", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())
