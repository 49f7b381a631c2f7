"""A gateway profile: how the bench starts, configures, signs for and reads one gateway.

A profile is a folder under ``hil/gateways/`` with ``profile.yaml`` and config templates.
The scenarios stay the same for every gateway; only its profile knows the gateway's
command line, config format, topics and point names. ``{name}`` placeholders in command
lines and ``${name}`` in templates are filled in by the runner.
"""

from __future__ import annotations

import string
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "config" / "models" / "pump1_bearing.onnx"  # the anomaly model templates use
# Template variables a scenario may override (gateway.vars).
DEFAULT_VARS: dict[str, Any] = {"max_bytes": "64MiB", "on_full": "drop_oldest",
                                "replay_rate": 2000, "keepalive": 5, "poll_interval": 0.05}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PointMap(_Model):
    """A gateway point and the sim signal it reads: gateway value = sim value * scale."""

    signal: str
    scale: float = 1.0
    tol: float = 0.0  # how far the twin may differ from the sim and count as converged


class Template(_Model):
    """One config template and the points it configures."""

    counter: str  # the point that reads the sim's counter
    points: dict[str, PointMap]
    writes: dict[str, str] = Field(default_factory=dict)  # point -> sim write-log name


class Northbound(_Model):
    """Where the gateway publishes (the JSON twin scheme the judges read)."""

    json_prefix: str  # e.g. edgetwin/v1/gw-hil
    sparkplug_group: str = ""
    sparkplug_node: str = ""


class Profile(_Model):
    """``profile.yaml``."""

    command: list[str]
    config_name: str = "gateway.yaml"
    northbound: Northbound
    metrics_url: str = ""  # Prometheus text endpoint, "{metrics_port}" filled in
    metrics: list[str] = Field(default_factory=list)  # the series to keep
    keygen: list[str] = Field(default_factory=list)  # makes the operator's signing key
    sign: list[str] = Field(default_factory=list)  # prints a signed cmd payload
    alarm_topic: str = "alarms"  # below json_prefix
    result_topic: str = "cmd/result"
    command_topic: str = "cmd"
    templates: dict[str, Template]
    folder: Path = Path()

    def template(self, name: str) -> Template:
        """The named template's description.

        Raises:
            KeyError: the profile has no such template.
        """
        return self.templates[name]

    def render_config(self, name: str, values: dict[str, Any]) -> str:
        """The template's text with ``${...}`` filled in (every placeholder must be given)."""
        text = (self.folder / name).read_text()
        return string.Template(text).substitute({k: str(v) for k, v in values.items()})

    def argv(self, argv: list[str], values: dict[str, Any]) -> list[str]:
        """A command line with ``{...}`` filled in; ``{python}`` is the harness's Python."""
        fill = {"python": sys.executable, **{k: str(v) for k, v in values.items()}}
        return [part.format(**fill) for part in argv]


def load_profile(folder: Path) -> Profile:
    """Read ``folder/profile.yaml``."""
    doc = yaml.safe_load((folder / "profile.yaml").read_text())
    return Profile.model_validate({**doc, "folder": folder})
