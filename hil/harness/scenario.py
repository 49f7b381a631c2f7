"""A HIL scenario: the plant, the gateway template, a timeline of faults and the expectations.

Scenarios are YAML files in ``hil/scenarios/``. Times in a timeline are wall-clock seconds
from the start of the run; ``for`` undoes an action after that many seconds (the broker
comes back, the link is restored, the fault is cleared, the disk is freed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimSettings(_Model):
    """How firmware-sim runs: its seed, plant clock and tick."""

    seed: int = 7
    speedup: float = Field(default=1.0, gt=0)  # plant seconds per wall second
    tick: float = Field(default=0.1, gt=0)  # wall seconds per plant tick (the counter's rate)


class GatewaySettings(_Model):
    """Which config template of the gateway profile, with which variables."""

    template: str  # a file in the profile's folder
    vars: dict[str, str | int | float | bool] = Field(default_factory=dict)
    state_tmpfs_kib: int | None = Field(default=None, gt=0)  # a small real disk (needs root)
    faketime: bool = False  # run under libfaketime, so ``clock_jump`` can move its clock


Link = Literal["broker", "plc"]
Signature = Literal["valid", "forged", "unsigned", "expired", "unknown_key"]


class Action(_Model):
    """One step of the timeline."""

    at: float = Field(ge=0)
    do: Literal[
        "gateway_start", "gateway_stop", "gateway_kill", "gateway_restart",
        "broker_stop", "broker_start", "link_cut", "link_blackhole", "link_slow",
        "plc_reboot", "sim_fault", "plant_write", "command", "command_flood", "fill_disk",
        "clock_jump",
    ]
    id: str = ""
    for_s: float | None = Field(default=None, alias="for", gt=0)
    link: Link | None = None
    latency: float = Field(default=0.0, ge=0)  # link_slow: seconds one way
    rate: float | None = Field(default=None, gt=0)  # link_slow: bytes/s per direction
    fault: dict[str, Any] = Field(default_factory=dict)  # sim_fault: {kind, target, params}
    point: str = ""  # command
    input: str = ""  # plant_write: a plant input (run, speed_setpoint_rpm, ...), set at the panel
    value: bool | int | float | str | None = None  # command
    signature: Signature = "valid"  # command
    expect: Literal["accepted", "denied"] = "accepted"  # command: what the policy should say
    seconds: float = 0.0  # clock_jump: how far the gateway's wall clock moves
    count: int = Field(default=0, ge=0, le=100_000)  # command_flood: unsigned commands sent

    @model_validator(mode="after")
    def _fits_its_kind(self) -> Action:
        needs_link = self.do.startswith("link_")
        if needs_link != (self.link is not None):
            raise ValueError(f"{self.do}: 'link' is {'required' if needs_link else 'not used'}")
        if self.do == "sim_fault" and "kind" not in self.fault:
            raise ValueError("sim_fault needs fault: {kind, target, params}")
        if self.do == "command" and (not self.point or self.value is None):
            raise ValueError("command needs point and value")
        if self.do == "command_flood" and (not self.point or self.value is None
                                           or self.count < 1):
            raise ValueError("command_flood needs point, value and count")
        if self.do == "plant_write" and (not self.input or self.value is None):
            raise ValueError("plant_write needs input and value")
        if self.do == "clock_jump" and self.seconds == 0:
            raise ValueError("clock_jump needs seconds (+ ahead, - back)")
        undoable = {"gateway_stop", "gateway_kill", "broker_stop", "link_cut", "link_blackhole",
                    "link_slow", "plc_reboot", "sim_fault", "fill_disk", "clock_jump"}
        if self.for_s is not None and self.do not in undoable:
            raise ValueError(f"{self.do} cannot be undone: no 'for'")
        return self

    @property
    def label(self) -> str:
        """The id, or the action's name when it has none."""
        return self.id or self.do


class Expectation(_Model):
    """One thing the judges check; ``kind`` picks the judge, the rest are its settings."""

    kind: Literal["no_loss", "drops_counted", "order", "converge", "alarm", "writes",
                  "resources", "restart_time", "sparkplug", "point_reaches"]
    name: str = ""
    within: float = Field(default=15.0, gt=0)  # converge/alarm/point_reaches: seconds
    alarm: str = ""  # alarm: its name
    raised_by: str = ""  # alarm: the action id that should raise it
    cleared_by: str = ""  # alarm: the action id that should clear it ("" = never cleared)
    rss_mb: float | None = None  # resources: peak RSS budget
    cpu_pct: float | None = None  # resources: mean CPU budget (% of one core)
    rss_slope_mb_per_h: float | None = None  # resources: after warm-up
    max_s: float = 10.0  # restart_time
    point: str = ""  # point_reaches
    above: float | None = None  # point_reaches
    after: str = ""  # point_reaches: the action id it is measured from
    min_lost: int = 1  # drops_counted: the scenario must really overflow

    @property
    def title(self) -> str:
        """How the report names it."""
        return self.name or self.kind.replace("_", " ")


class Scenario(_Model):
    """One scenario file."""

    name: str
    about: str = ""
    duration: float = Field(gt=0)  # the timeline's length, seconds
    settle: float = Field(default=20.0, ge=0)  # at most this long to catch up afterwards
    sim: SimSettings = SimSettings()
    gateway: GatewaySettings
    broker_persistence: bool = True
    timeline: list[Action]
    expect: list[Annotated[Expectation, Field()]]

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        ids = [a.id for a in self.timeline if a.id]
        if len(ids) != len(set(ids)):
            raise ValueError("timeline ids must be unique")
        for action in self.timeline:
            end = action.at + (action.for_s or 0)
            if end > self.duration:
                raise ValueError(f"{action.label}: ends at {end} s, after duration "
                                 f"{self.duration} s")
        known = set(ids)
        for expectation in self.expect:
            for ref in (expectation.raised_by, expectation.cleared_by, expectation.after):
                if ref and ref not in known:
                    raise ValueError(f"expectation {expectation.title}: no action id {ref!r}")
        if self.gateway.state_tmpfs_kib is None and any(a.do == "fill_disk"
                                                        for a in self.timeline):
            raise ValueError("fill_disk needs gateway.state_tmpfs_kib (a small real disk)")
        if not self.gateway.faketime and any(a.do == "clock_jump" for a in self.timeline):
            raise ValueError("clock_jump needs gateway.faketime: true")
        return self


class ScenarioError(ValueError):
    """A scenario file that cannot be run, with the file and the reasons."""


def load_scenario(path: Path) -> Scenario:
    """Read and validate one scenario file.

    Raises:
        ScenarioError: unreadable YAML or a scenario that does not validate.
    """
    try:
        doc = yaml.safe_load(path.read_text())
        return Scenario.model_validate(doc)
    except (OSError, yaml.YAMLError) as err:
        raise ScenarioError(f"{path}: {err}") from None
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in err.errors())
        raise ScenarioError(f"{path}: {problems}") from None
