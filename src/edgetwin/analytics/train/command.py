"""``edgetwin train``: healthy rows -> model -> threshold -> ``NAME.onnx`` + its manifest.

The threshold is placed on the scores *onnxruntime* gives the healthy rows (float32, the
very graph the gateway will run), at their (1 - false-alarm rate) quantile, times a margin:
healthy data recorded over a few days never covers every healthy condition of a machine.
For the IsolationForest a quarter of the rows is held out of the fit and the threshold is
placed on those alone, because a forest scores the rows it was grown on too kindly.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from edgetwin.analytics.anomaly import ModelError, load, manifest_path
from edgetwin.analytics.anomaly.manifest import (
    Manifest,
    ManifestHysteresis,
    Normalisation,
    dump,
    sha256_hex,
)
from edgetwin.analytics.anomaly.model import open_session
from edgetwin.analytics.train import fit
from edgetwin.analytics.train.data import Table, read_csv, read_export
from edgetwin.analytics.train.errors import (
    EX_CANTCREAT,
    EX_DATAERR,
    EX_SOFTWARE,
    EX_USAGE,
    TrainingError,
)

KINDS: Final = ("robust", "iforest")
TAILS: Final = ("both", "upper")
MIN_ROWS: Final = 50  # below this a median and MAD say little about a machine
DEFAULT_MARGIN: Final = {"robust": 1.1, "iforest": 1.0}
"""A robust z-score is unbounded, so 10 % more costs little sensitivity; a forest's score
saturates near the healthy extremes (an outlier is isolated no faster than the most extreme
healthy row), so a margin there would hide real anomalies."""
HOLDOUT: Final = 0.25  # IsolationForest: share of rows kept out of the fit for the threshold
_POINT_ID = re.compile(r"^[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+$")  # as config.model.POINT_ID_PATTERN


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """What ``edgetwin train`` was asked to do."""

    inputs: tuple[str, ...]
    out: Path
    csv: Path | None = None
    export: Path | None = None
    kind: str = "robust"
    false_alarm_rate: float = 0.001
    margin: float | None = None  # None: DEFAULT_MARGIN[kind]
    tail: str = "both"
    trees: int = 100
    seed: int = 0
    raise_after: int = 3
    clear_after: int = 5

    @property
    def margin_used(self) -> float:
        """The margin given, or the kind's default."""
        return DEFAULT_MARGIN.get(self.kind, 1.0) if self.margin is None else self.margin

    def command_line(self) -> str:
        """The ``edgetwin train`` command that makes this model again (every option spelt)."""
        source = f"--csv {self.csv}" if self.csv is not None else f"--export {self.export}"
        words = [
            "edgetwin train", source, f"--inputs {','.join(self.inputs)}", f"--kind {self.kind}",
            f"--false-alarm-rate {self.false_alarm_rate:g}", f"--margin {self.margin_used:g}",
        ]
        words += [f"--tail {self.tail}"] if self.kind == "robust" else [
            f"--trees {self.trees}", f"--seed {self.seed}"]
        words += [f"--raise-after {self.raise_after}", f"--clear-after {self.clear_after}",
                  f"--out {self.out}"]
        return " ".join(words)


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What was written, and how the healthy data scores against the new threshold."""

    out: Path
    manifest: Path
    sha256: str
    rows: int
    threshold: float
    training: dict[str, Any]
    notes: tuple[str, ...]

    def render(self) -> str:
        """A few lines for the terminal, ending with the config entry to paste."""
        t = self.training
        lines = [
            f"trained {t['kind']} model on {self.rows} healthy rows from {t['source_file']}",
            *(f"  {note}" for note in self.notes),
            f"  healthy scores: median {t['healthy_score_p50']:.4g},"
            f" 99th percentile {t['healthy_score_p99']:.4g}, max {t['healthy_score_max']:.4g}",
            f"  threshold {self.threshold:.6g} = {t['score_quantile']:.6g}"
            f" (the {(1 - t['false_alarm_rate']) * 100:g}th percentile) x margin {t['margin']:g};"
            f" {t['healthy_exceedance']:.3%} of the healthy rows score above it",
            f"wrote {self.out} (sha256 {self.sha256})",
            f"wrote {self.manifest}",
        ]
        return "\n".join(lines)


def train(options: TrainOptions) -> TrainReport:
    """Fit, export and check a model; see the module docstring for how the threshold is set.

    Raises:
        TrainingError: Bad options, unusable data, missing [train] extra, or the files
            cannot be written; ``exit_code`` says which.
    """
    _check_options(options)
    table = _read(options)
    rows = table.values.shape[0]
    threshold_rows = rows - int(rows * (1 - HOLDOUT)) if options.kind == "iforest" else rows
    _check_rows(options, rows, threshold_rows)
    center, scale = (_round(a) for a in fit.robust_normalisation(table.values, options.inputs))
    if options.kind == "robust":
        model_bytes = fit.robust_model(center, scale, options.tail)
        held_out = table.values
    else:
        order = np.random.default_rng(options.seed).permutation(rows)
        fit_rows, held_rows = order[: rows - threshold_rows], order[rows - threshold_rows:]
        model_bytes = fit.iforest_model(table.values[fit_rows], options.trees, options.seed)
        held_out = table.values[held_rows]
    try:
        session = open_session(model_bytes, "(new model)")
    except ModelError as err:
        msg = f"onnxruntime refuses the new model (a bug in edgetwin train): {err}"
        raise TrainingError(msg, EX_SOFTWARE) from err
    scores = np.asarray(
        session.run([fit.OUTPUT_NAME], {fit.INPUT_NAME: held_out.astype(np.float32)})[0],
        dtype=np.float64,
    ).reshape(-1)
    quantile = float(np.quantile(scores, 1.0 - options.false_alarm_rate, method="higher"))
    threshold = float(f"{quantile * options.margin_used:.6g}")  # six digits read better
    training = _training_record(options, table, rows, threshold_rows, scores, quantile,
                                threshold)
    manifest = Manifest(
        sha256=sha256_hex(model_bytes),
        inputs=options.inputs,
        normalisation=Normalisation(center=tuple(center.tolist()),
                                    scale=tuple(scale.tolist())),
        input_name=fit.INPUT_NAME,
        output_name=fit.OUTPUT_NAME,
        threshold=threshold,
        hysteresis=ManifestHysteresis(raise_after=options.raise_after,
                                      clear_after=options.clear_after),
        training=training,
    )
    _write(options.out, model_bytes, dump(manifest))
    try:
        load(options.out, options.inputs)  # what the gateway will do with it, before anyone
    except ModelError as err:
        msg = f"the model just written does not load (a bug in edgetwin train): {err}"
        raise TrainingError(msg, EX_SOFTWARE) from err
    return TrainReport(options.out, manifest_path(options.out), manifest.sha256, rows,
                       threshold, training, table.notes)


def _check_options(options: TrainOptions) -> None:
    problems = []
    if not options.inputs:
        problems.append("--inputs: name at least one input point")
    bad = [p for p in options.inputs if not _POINT_ID.match(p)]
    if bad:
        problems.append(f"--inputs: {', '.join(bad)} not point ids like pump1/vib_de.bpfo")
    if len(set(options.inputs)) != len(options.inputs):
        problems.append("--inputs: an input is named twice")
    if (options.csv is None) == (options.export is None):
        problems.append("give exactly one of --csv and --export")
    if options.kind not in KINDS:
        problems.append(f"--kind: {options.kind!r}, not one of {', '.join(KINDS)}")
    if options.tail not in TAILS:
        problems.append(f"--tail: {options.tail!r}, not one of {', '.join(TAILS)}")
    if not 0 < options.false_alarm_rate < 0.5:
        problems.append(f"--false-alarm-rate: {options.false_alarm_rate} is not in (0, 0.5)")
    margin = options.margin_used
    if not (math.isfinite(margin) and margin >= 1):
        problems.append(f"--margin: {margin} is below 1 (it would lower the threshold)")
    if options.trees < 1 or options.raise_after < 1 or options.clear_after < 1:
        problems.append("--trees, --raise-after and --clear-after must be at least 1")
    if options.out.suffix != ".onnx":
        problems.append(f"--out: {options.out} must end in .onnx (its manifest goes beside it)")
    if problems:
        raise TrainingError("; ".join(problems), EX_USAGE)


def _read(options: TrainOptions) -> Table:
    if options.csv is not None:
        return read_csv(options.csv, options.inputs)
    assert options.export is not None  # _check_options: exactly one source
    return read_export(options.export, options.inputs)


def _check_rows(options: TrainOptions, rows: int, threshold_rows: int) -> None:
    """Enough rows for a median, and for the quantile the false-alarm rate asks for."""
    far = options.false_alarm_rate
    needed = max(MIN_ROWS, math.ceil(1.0 / far))
    if options.kind == "iforest":
        needed = max(MIN_ROWS, math.ceil(math.ceil(1.0 / far) / HOLDOUT))
    if rows < needed:
        why = (f"a false-alarm rate of {far:g} puts the threshold at the {1 - far:.4%}"
               f" quantile of the healthy scores, which {math.ceil(1.0 / far)} scores are"
               f" needed to place")
        if options.kind == "iforest":
            why += f" (and a quarter of the rows, {threshold_rows} here, is held out for it)"
        msg = (f"too few rows: {rows} healthy rows, at least {needed} needed; {why}."
               f" Record longer, or ask for a higher --false-alarm-rate")
        raise TrainingError(msg, EX_DATAERR)


def _training_record(options: TrainOptions, table: Table, rows: int, threshold_rows: int,
                     scores: np.ndarray, quantile: float, threshold: float) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": options.kind,
        "source_format": table.source,
        "source_file": table.path,
        "source_sha256": table.sha256,
        "rows": rows,
        "rows_for_threshold": threshold_rows,
        "false_alarm_rate": options.false_alarm_rate,
        "margin": options.margin_used,
        "score_quantile": _round(quantile),
        "healthy_score_p50": _round(np.median(scores)),
        "healthy_score_p99": _round(np.quantile(scores, 0.99)),
        "healthy_score_max": _round(scores.max()),
        "healthy_exceedance": float(np.mean(scores > threshold)),
        "versions": fit.library_versions(options.kind),
    }
    if options.kind == "robust":
        record["score"] = f"max over inputs of the robust z-score ({options.tail} tail)"
        record["tail"] = options.tail
    else:
        record["score"] = "IsolationForest anomaly score, -score_samples, in (0, 1]"
        record["trees"] = options.trees
        record["seed"] = options.seed
    record["command"] = options.command_line()
    return record


def _round(values: Any, digits: int = 7) -> Any:
    """Seven significant digits: a manifest a person can read, and float32 loses more."""
    if isinstance(values, np.ndarray):
        return np.array([float(f"{v:.{digits}g}") for v in values.tolist()])
    return float(f"{float(values):.{digits}g}")


def _write(out: Path, model_bytes: bytes, manifest_text: str) -> None:
    """The model first, then its manifest, each by rename: a reader never sees half a file.

    Between the two renames the old manifest names the old sha256, so a gateway reloading
    right then refuses the pair and keeps scoring with what it has.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for path, data in ((out, model_bytes), (manifest_path(out),
                                                manifest_text.encode("utf-8"))):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
    except OSError as err:
        msg = f"{out} cannot be written: {err.strerror}"
        raise TrainingError(msg, EX_CANTCREAT) from err
