"""The JSON manifest beside every anomaly model: what the ONNX file expects and how it was made.

A model is only meaningful with its manifest: the ONNX graph takes one row of input values
in a fixed order, so the manifest names the inputs, the output to read, the healthy centre
and scale of each input, the threshold training chose and the sha256 of the model file it
describes. ``NAME.onnx`` has its manifest in ``NAME.manifest.json``.

Invariants:
- a manifest is written only by ``edgetwin train`` (``dump``), after the model file;
- a model is loaded only when the file's sha256 equals the manifest's, so a model swapped
  without its manifest (or damaged on the SD card) is refused, never scored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgetwin.core.errors import ConfigError

FORMAT: Final = "edgetwin-anomaly-model/1"
SUFFIX: Final = ".manifest.json"

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class ModelError(ConfigError):
    """An anomaly model or its manifest is unusable; raised at load and reload, never later."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalisation(_Strict):
    """Each input's healthy centre and scale: ``z = (x - center) / scale``.

    The graph applies its own copy (so the model's sha256 covers it); the gateway uses this
    one to tell which input drove a score.
    """

    center: tuple[FiniteFloat, ...]
    scale: tuple[Annotated[float, Field(gt=0, allow_inf_nan=False)], ...]


class ManifestHysteresis(_Strict):
    """The hysteresis training suggests; the config's ``hysteresis`` is what is used."""

    raise_after: int = Field(ge=1)
    clear_after: int = Field(ge=1)


class Manifest(_Strict):
    """What an anomaly model file needs to be scored correctly."""

    format: Literal["edgetwin-anomaly-model/1"] = FORMAT
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    inputs: tuple[str, ...] = Field(min_length=1)
    normalisation: Normalisation
    input_name: str = Field(min_length=1)
    output_name: str = Field(min_length=1)
    threshold: FiniteFloat
    hysteresis: ManifestHysteresis
    training: dict[str, Any] = Field(default_factory=dict)  # free-form: how it was made

    @model_validator(mode="after")
    def _one_centre_and_scale_per_input(self) -> Manifest:
        n = len(self.inputs)
        if len(set(self.inputs)) != n:
            raise ValueError("inputs: each input may appear once")
        norm = self.normalisation
        if len(norm.center) != n or len(norm.scale) != n:
            raise ValueError(
                f"normalisation: {len(norm.center)} centres and {len(norm.scale)} scales"
                f" for {n} inputs"
            )
        return self


def manifest_path(model_path: Path) -> Path:
    """Where the manifest of ``model_path`` lives: ``NAME.onnx`` -> ``NAME.manifest.json``."""
    return model_path.with_name(model_path.stem + SUFFIX)


def sha256_hex(data: bytes) -> str:
    """The lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def parse(text: str, where: str) -> Manifest:
    """A manifest from its JSON text; ``where`` names the file in errors.

    Raises:
        ModelError: Not JSON, or a field missing, unknown or out of range (all listed).
    """
    try:
        doc = json.loads(text)
    except ValueError as err:
        msg = f"anomaly manifest {where} is not JSON: {err}"
        raise ModelError(msg) from err
    try:
        return Manifest.model_validate(doc)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        )
        msg = f"anomaly manifest {where}: {problems}"
        raise ModelError(msg) from None


def read(model_path: Path) -> Manifest:
    """The manifest beside ``model_path``.

    Raises:
        ModelError: Missing, unreadable or invalid.
    """
    path = manifest_path(model_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        msg = f"anomaly model {model_path}: its manifest {path} cannot be read: {err.strerror}"
        raise ModelError(msg) from err
    return parse(text, str(path))


def dump(manifest: Manifest) -> str:
    """The manifest as stable, human-readable JSON (sorted training keys, 2-space indent)."""
    doc = manifest.model_dump(mode="json")
    doc["training"] = dict(sorted(doc["training"].items()))
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"

