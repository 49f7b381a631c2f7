"""The soak scenario: hours of a randomized fault mix on an accelerated plant, from one seed.

Gateway kills and restarts happen only in the first ``KILLS_UNTIL_S``, so the process that
runs afterwards is long-lived and its memory trend means something. Faults never overlap:
each one ends, and the twin gets time to converge, before the next begins.
"""

from __future__ import annotations

import random
from typing import Any

from hil.harness.scenario import Scenario

KILLS_UNTIL_S = 600.0
GAP_S = (20.0, 60.0)  # quiet time between two faults


def _fault_mix(rng: random.Random, t: float, early: bool) -> list[dict[str, Any]]:
    """One randomly chosen fault (or a short sequence) starting at ``t``."""
    choices: list[list[dict[str, Any]]] = [
        [{"do": "broker_stop", "for": rng.uniform(5, 30)}],
        [{"do": "link_cut", "link": "broker", "for": rng.uniform(5, 20)}],
        [{"do": "link_blackhole", "link": "broker", "for": rng.uniform(5, 20)}],
        [{"do": "link_slow", "link": "broker", "latency": 0.2, "for": 30}],
        [{"do": "link_cut", "link": "plc", "for": rng.uniform(3, 10)}],
        [{"do": "link_slow", "link": "plc", "latency": 0.05, "for": 20}],
        # A rebooted PLC comes up with the pump stopped; the operator restarts it at the panel.
        [{"do": "plc_reboot", "for": 3},
         {"do": "plant_write", "input": "run", "value": True, "at_plus": 5}],
        [{"do": "sim_fault", "fault": {"kind": "stuck", "target": "motor_temp"}, "for": 20}],
        [{"do": "sim_fault", "fault": {"kind": "noise", "target": "tank_level",
                                       "params": {"sigma": 0.5}}, "for": 20}],
        [{"do": "sim_fault", "fault": {"kind": "bearing", "target": "vib_de",
                                       "params": {"mode": "outer", "severity": 0.3}},
          "for": 60}],
        [{"do": "fill_disk", "for": rng.uniform(10, 30)}],
        [{"do": "clock_jump", "seconds": rng.choice([-120, 600, 3600]), "for": 30}],
        [{"do": "command", "point": "pump1/speed_setpoint", "value": 1500},
         {"do": "command", "point": "pump1/speed_setpoint", "value": 2500,
          "expect": "denied", "at_plus": 2},
         {"do": "command", "point": "pump1/speed_setpoint", "value": 1600,
          "signature": "forged", "expect": "denied", "at_plus": 4},
         {"do": "command", "point": "pump1/speed_setpoint", "value": 1450, "at_plus": 6}],
    ]
    if early:
        choices += [[{"do": "gateway_kill", "for": 2}], [{"do": "gateway_restart"}]]
    actions = []
    for step in rng.choice(choices):
        action = {k: v for k, v in step.items() if k != "at_plus"}
        action["at"] = round(t + step.get("at_plus", 0), 1)
        if "for" in action:
            action["for"] = round(action["for"], 1)
        actions.append(action)
    return actions


def soak_scenario(hours: float, seed: int, *, speedup: float = 10.0) -> Scenario:
    """A soak of ``hours`` with the plant clock ``speedup`` times faster than the wall."""
    rng = random.Random(seed)
    duration = hours * 3600.0
    timeline: list[dict[str, Any]] = [{"at": 0, "do": "gateway_start"}]
    t = 30.0
    n = 0
    while True:
        actions = _fault_mix(rng, t, early=t < KILLS_UNTIL_S)
        end = max(a["at"] + a.get("for", 0) for a in actions)
        if end + 30 > duration:
            break
        for action in actions:
            n += 1
            action["id"] = f"f{n}"
        timeline += actions
        t = end + rng.uniform(*GAP_S)
    return Scenario.model_validate({
        "name": f"soak-{hours:g}h",
        "about": f"{hours:g} h of randomized faults (seed {seed}), plant clock x{speedup:g}",
        "duration": duration,
        "settle": 60,
        "sim": {"seed": seed, "speedup": speedup},
        "gateway": {"template": "skid.yaml", "state_tmpfs_kib": 65536, "faketime": True},
        "timeline": timeline,
        "expect": [
            {"kind": "no_loss"}, {"kind": "order"}, {"kind": "writes"},
            {"kind": "converge", "within": 30},
            {"kind": "restart_time", "max_s": 15},
            {"kind": "resources", "rss_mb": 400, "cpu_pct": 80, "rss_slope_mb_per_h": 1.0},
            {"kind": "sparkplug"},
        ],
    })
