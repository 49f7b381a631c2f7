"""The HIL scenarios and the edgetwin profile: files load, templates are valid configs."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from hil.harness.profile import DEFAULT_VARS, MODEL, load_profile
from hil.harness.scenario import ScenarioError, load_scenario
from hil.harness.soak import KILLS_UNTIL_S, soak_scenario

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "hil" / "scenarios").glob("*.yaml"))
LONG = sorted((REPO / "hil" / "scenarios" / "long").glob("*.yaml"))
PROFILE = load_profile(REPO / "hil" / "gateways" / "edgetwin")


@pytest.mark.parametrize("path", SCENARIOS + LONG, ids=[p.stem for p in SCENARIOS + LONG])
def test_every_scenario_loads_and_uses_a_known_template(path: Path) -> None:
    """A scenario file validates and names a template of the edgetwin profile."""
    scenario = load_scenario(path)
    assert scenario.gateway.template in PROFILE.templates
    assert scenario.timeline[0].do == "gateway_start"


def test_the_quick_set_covers_every_fault_kind() -> None:
    """Every action kind appears in the quick set at least once."""
    used = {a.do for p in SCENARIOS for a in load_scenario(p).timeline}
    kinds = {"gateway_start", "gateway_kill", "gateway_restart", "broker_stop", "link_cut",
             "link_blackhole", "link_slow", "plc_reboot", "sim_fault", "command", "fill_disk",
             "clock_jump"}
    assert kinds <= used, f"not exercised: {kinds - used}"


@pytest.mark.parametrize("template", sorted(PROFILE.templates))
def test_each_template_renders_a_config_edgetwin_accepts(tmp_path: Path, template: str) -> None:
    """The rendered template passes `edgetwin check-config` (the real CLI)."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "operator.pub").write_text("placeholder")
    values = {**DEFAULT_VARS, "broker_port": 1883, "plc_port": 502, "state_dir": tmp_path,
              "metrics_port": 9108, "keys": tmp_path / "keys", "model": MODEL}
    config = tmp_path / "gateway.yaml"
    config.write_text(PROFILE.render_config(template, values))
    check = subprocess.run([sys.executable, "-m", "edgetwin", "check-config", str(config)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_bad_scenario_names_the_file_and_the_problem(tmp_path: Path) -> None:
    """An unknown action and a fault past the end are both reported."""
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nduration: 10\ngateway: {template: skid.yaml}\n"
                    "timeline: [{at: 0, do: explode}]\nexpect: []\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml.*timeline\.0\.do"):
        load_scenario(path)
    path.write_text("name: bad\nduration: 10\ngateway: {template: skid.yaml}\n"
                    "timeline: [{at: 8, do: broker_stop, for: 5}]\nexpect: []\n")
    with pytest.raises(ScenarioError, match="after duration"):
        load_scenario(path)


def test_the_soak_plan_never_overlaps_faults_and_kills_only_early() -> None:
    """A one-hour plan: faults one after another, gateway kills only in the first minutes."""
    scenario = soak_scenario(1.0, seed=3)
    assert scenario.duration == 3600
    faults = [a for a in scenario.timeline if a.do != "gateway_start"]
    assert len(faults) > 40
    groups: dict[str, tuple[float, float]] = {}
    for action in faults:
        group = action.id if action.do != "command" else f"cmd@{int(action.at) // 10}"
        start, end = groups.get(group, (action.at, action.at))
        groups[group] = (min(start, action.at), max(end, action.at + (action.for_s or 0)))
    spans = sorted(groups.values())
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans))
    assert all(a.at < KILLS_UNTIL_S for a in faults if a.do in ("gateway_kill",
                                                                "gateway_restart"))
    assert soak_scenario(1.0, seed=3) == scenario  # one seed, one plan
