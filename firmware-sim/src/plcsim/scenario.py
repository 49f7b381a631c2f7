"""Scenario files: a timeline of faults and writes played against the simulator.

```yaml
timeline:
  - at: 5                       # plant seconds after the scenario starts
    fault: {kind: dropout, target: modbus_tcp, duration_s: 3}
  - at: 8
    write: {name: speed_setpoint_rpm, value: 1600}
  - at: 20
    fault: {kind: bearing, target: vib_de, params: {mode: outer, severity: 0.2, growth_per_s: 0.01}}
  - at: 60
    clear: all                  # or a fault's position in this timeline (0-based)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from plcsim.faults import KINDS, FaultError

if TYPE_CHECKING:
    from plcsim.sim import Sim


class ScenarioError(ValueError):
    """A scenario document that cannot be played; the message says where."""


@dataclass(frozen=True, slots=True)
class Action:
    """One timeline entry."""

    at_s: float
    kind: str  # fault | write | clear
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated timeline, ordered by time."""

    actions: tuple[Action, ...]

    @classmethod
    def load(cls, path: Path) -> Scenario:
        """Read a YAML (or JSON) scenario file."""
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise ScenarioError(f"{path}: {err}") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> Scenario:
        """Validate a scenario document."""
        if not isinstance(doc, dict) or not isinstance(doc.get("timeline"), list):
            raise ScenarioError("a scenario is a mapping with a 'timeline' list")
        actions = []
        for index, entry in enumerate(doc["timeline"]):
            where = f"timeline[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("at"), int | float):
                raise ScenarioError(f"{where}: needs 'at' (seconds) and one action")
            kinds = [k for k in ("fault", "write", "clear") if k in entry]
            if len(kinds) != 1:
                raise ScenarioError(f"{where}: give exactly one of fault, write, clear")
            kind = kinds[0]
            body = entry[kind] if isinstance(entry[kind], dict) else {"which": entry[kind]}
            if kind == "fault" and body.get("kind") not in KINDS:
                raise ScenarioError(f"{where}.fault.kind: one of {', '.join(sorted(KINDS))}")
            if kind == "write" and not {"name", "value"} <= set(body):
                raise ScenarioError(f"{where}.write: needs name and value")
            actions.append(Action(float(entry["at"]), kind, body))
        return cls(tuple(sorted(actions, key=lambda a: a.at_s)))

    async def play(self, sim: Sim) -> None:
        """Apply each action when plant time reaches it (relative to the start of play)."""
        start_s = sim.now_s()
        started: list[int] = []
        for action in self.actions:
            while sim.now_s() - start_s < action.at_s:
                await sim.ticked.wait()
            if action.kind == "fault":
                body = action.body
                try:
                    fault = sim.faults.add(body["kind"], str(body.get("target", "*")),
                                           body.get("duration_s"), **dict(body.get("params", {})))
                except (FaultError, TypeError) as err:
                    sim.writes.record("scenario", "fault", "", body, accepted=False,
                                      reason=str(err))
                    continue
                started.append(fault.id)
            elif action.kind == "write":
                sim.write("scenario", "scenario", str(action.body["name"]), action.body["value"])
            else:
                which = action.body.get("which", "all")
                if which == "all":
                    sim.faults.clear()
                elif isinstance(which, int) and 0 <= which < len(started):
                    sim.faults.clear(started[which])
