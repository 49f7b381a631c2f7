"""An anomaly model loaded and checked: manifest, sha256, and an onnxruntime session.

onnxruntime is wrapped here and nowhere else; what leaves this module is numpy arrays and
``ModelError``. The session is made from the very bytes whose sha256 was checked, so the
file cannot change between the check and the load. The graph takes the raw input values
and holds everything that decides the score (normalisation included), so the sha256 names
the model's behaviour; the manifest's normalisation only explains a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgetwin.analytics.anomaly import manifest as manifests
from edgetwin.analytics.anomaly.manifest import Manifest, ModelError

_FLOAT_TENSOR = "tensor(float)"


def session_options() -> ort.SessionOptions:
    """One thread, sequential: the gateway decides concurrency, a model never spreads out.

    A Pi has four cores shared with polling and FFTs; onnxruntime's default (a pool as wide
    as the machine, spinning between runs) would steal them for a microsecond-sized graph.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings would bypass our logging
    return options


def open_session(model_bytes: bytes, where: str) -> ort.InferenceSession:
    """An onnxruntime session on the CPU provider for a serialised ONNX model.

    Raises:
        ModelError: onnxruntime cannot load the model (not ONNX, unsupported opset, ...).
    """
    try:
        return ort.InferenceSession(
            model_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own untyped exceptions (Fail, ...)
        msg = f"anomaly model {where} cannot be loaded by onnxruntime: {err}"
        raise ModelError(msg) from err


@dataclass(frozen=True, slots=True, eq=False)  # identity: each load is a different model
class LoadedModel:
    """A checked model: its manifest, the file's sha256 and a ready session.

    ``score`` may be called from one thread at a time per instance (the daemon's analytics
    executor); onnxruntime's ``run`` itself is thread-safe, the instance holds no state.
    """

    path: Path
    manifest: Manifest
    sha256: str
    session: ort.InferenceSession
    center: np.ndarray  # float64, per input: the healthy median
    scale: np.ndarray  # float64, per input, > 0: the healthy spread (1.4826 MAD)

    def score(self, values: np.ndarray) -> np.ndarray:
        """Scores (float64, one per row) of rows of raw input values, shape (n, len(inputs))."""
        out = self.session.run([self.manifest.output_name],
                               {self.manifest.input_name: values.astype(np.float32)})
        return np.asarray(out[0], dtype=np.float64).reshape(-1)

    def deviations(self, values: np.ndarray) -> np.ndarray:
        """Robust z-scores of one row against the healthy centre and scale: which input is off.

        For explaining a score to a person; the graph computes the score on its own.
        """
        deviations: np.ndarray = (values - self.center) / self.scale
        return deviations


def load(model_path: Path, expected_inputs: Sequence[str] | None = None) -> LoadedModel:
    """Read, check and open a model and its manifest.

    Checks, in order: the manifest parses; the model file's sha256 is the manifest's; the
    manifest's inputs are ``expected_inputs`` (the config's), same names, same order; the
    graph has one float input of width ``len(inputs)`` and the manifest's output; one
    vector scores to one finite number.

    Raises:
        ModelError: Any check failed; the message says which file and why.
    """
    manifest = manifests.read(model_path)
    try:
        model_bytes = model_path.read_bytes()
    except OSError as err:
        msg = f"anomaly model {model_path} cannot be read: {err.strerror}"
        raise ModelError(msg) from err
    digest = manifests.sha256_hex(model_bytes)
    if digest != manifest.sha256:
        msg = (
            f"anomaly model {model_path}: sha256 {digest} is not the {manifest.sha256} its"
            f" manifest names (the model was replaced without its manifest, or is damaged)"
        )
        raise ModelError(msg)
    if expected_inputs is not None:
        _check_inputs(model_path, manifest.inputs, tuple(expected_inputs))
    session = open_session(model_bytes, str(model_path))
    _check_graph(model_path, manifest, session)
    model = LoadedModel(
        path=model_path,
        manifest=manifest,
        sha256=digest,
        session=session,
        center=np.asarray(manifest.normalisation.center, dtype=np.float64),
        scale=np.asarray(manifest.normalisation.scale, dtype=np.float64),
    )
    probe = model.score(model.center.reshape(1, -1))
    if probe.shape != (1,) or not np.isfinite(probe[0]):
        msg = (
            f"anomaly model {model_path}: output {manifest.output_name!r} gave"
            f" {probe.tolist()} for one vector; expected one finite score"
        )
        raise ModelError(msg)
    return model


def _check_inputs(path: Path, have: tuple[str, ...], want: tuple[str, ...]) -> None:
    if have == want:
        return
    missing = [p for p in want if p not in have]
    extra = [p for p in have if p not in want]
    why = []
    if missing:
        why.append(f"the config's {', '.join(missing)} not among the model's inputs")
    if extra:
        why.append(f"the model also needs {', '.join(extra)}")
    if not why:
        why.append("same inputs in another order")
    msg = (
        f"anomaly model {path} was trained on inputs [{', '.join(have)}], but the config"
        f" gives [{', '.join(want)}]: {'; '.join(why)}. A model scores exactly the inputs it"
        f" was trained on, in that order; fix the config's inputs or retrain"
    )
    raise ModelError(msg)


def _check_graph(path: Path, manifest: Manifest, session: ort.InferenceSession) -> None:
    graph_inputs = session.get_inputs()
    if len(graph_inputs) != 1:
        names = [i.name for i in graph_inputs]
        msg = f"anomaly model {path}: the graph has inputs {names}; expected exactly one"
        raise ModelError(msg)
    (tensor,) = graph_inputs
    width = len(manifest.inputs)
    shape = list(tensor.shape)
    if tensor.name != manifest.input_name or tensor.type != _FLOAT_TENSOR or len(shape) != 2 or (
        isinstance(shape[1], int) and shape[1] != width
    ):
        msg = (
            f"anomaly model {path}: the graph's input is {tensor.name!r} {tensor.type}"
            f" {shape}; the manifest needs {manifest.input_name!r} {_FLOAT_TENSOR}"
            f" [batch, {width}]"
        )
        raise ModelError(msg)
    outputs = [o.name for o in session.get_outputs()]
    if manifest.output_name not in outputs:
        msg = (
            f"anomaly model {path}: no output {manifest.output_name!r} in the graph"
            f" (it has {outputs})"
        )
        raise ModelError(msg)
