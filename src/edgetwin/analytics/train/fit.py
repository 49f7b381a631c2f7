"""The two baseline models, as self-contained ONNX graphs from raw input values to a score.

Both output one score per row, higher meaning further from healthy:

- ``robust``: the largest robust z-score ``(x - median) / (1.4826 * MAD)`` over the inputs
  (``tail="upper"``: only increases count, for features that grow with damage, such as
  vibration levels; ``"both"``: either direction). Interpretable: a score of 6 means one
  input sits 6 robust standard deviations from its healthy median. Four standard ONNX
  operators, the medians and scales as constants in the graph.
- ``iforest``: scikit-learn's IsolationForest converted by skl2onnx; the score is the
  forest's anomaly score ``-score_samples`` in (0, 1] (around 0.4 for typical rows, higher
  for isolated ones). It catches unusual *combinations* the per-input robust model misses,
  but its score saturates: a row far outside the healthy range is isolated no faster than
  the most extreme healthy row. Trees split on one input at a time at random points
  between its minimum and maximum, so they need no normalisation.

scikit-learn, skl2onnx and onnx are the ``[train]`` extra: imported here, inside the
functions, so the gateway never loads them.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from edgetwin import __version__
from edgetwin.analytics.train.errors import EX_DATAERR, EX_UNAVAILABLE, TrainingError

INPUT_NAME: Final = "x"
OUTPUT_NAME: Final = "score"
OPSET: Final = 17  # ReduceMax takes axes as an attribute up to 17; any onnxruntime >= 1.14
ML_OPSET: Final = 3
IR_VERSION: Final = 8  # the IR of opset 17: older onnxruntime builds on gateways load it
MAD_TO_SIGMA: Final = 1.4826  # MAD of a normal distribution * this = its standard deviation
MEAN_AD_TO_SIGMA: Final = 1.2533  # sqrt(pi/2): the same for the mean absolute deviation


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as err:
        msg = "edgetwin train needs the [train] extra: pip install 'edgetwin[train]'"
        raise TrainingError(msg, EX_UNAVAILABLE) from err
    return onnx


def robust_normalisation(values: np.ndarray, inputs: tuple[str, ...]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust scale per column.

    The scale is 1.4826 * MAD; where more than half the rows share one value (MAD = 0) it
    falls back to 1.2533 * the mean absolute deviation from the median.

    Raises:
        TrainingError: A column is constant: its healthy spread cannot be learnt.
    """
    center = np.median(values, axis=0)
    deviation = np.abs(values - center)
    scale = MAD_TO_SIGMA * np.median(deviation, axis=0)
    fallback = MEAN_AD_TO_SIGMA * np.mean(deviation, axis=0)
    scale = np.where(scale > 0, scale, fallback)
    constant = [inputs[i] for i in np.flatnonzero(~(scale > 0))]
    if constant:
        msg = (f"input(s) {', '.join(constant)} never change in the training data; a model"
               f" cannot learn their healthy spread (record longer, or leave them out)")
        raise TrainingError(msg, EX_DATAERR)
    return center, scale


def robust_model(center: np.ndarray, scale: np.ndarray, tail: str) -> bytes:
    """``max_i(relu(z_i))`` (upper tail) or ``max_i(|z_i|)``, ``z = (x - center) / scale``."""
    onnx = _onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    n_inputs = center.size
    fold = "Relu" if tail == "upper" else "Abs"
    graph = helper.make_graph(
        [
            helper.make_node("Sub", [INPUT_NAME, "center"], ["centred"]),
            helper.make_node("Div", ["centred", "scale"], ["z"]),
            helper.make_node(fold, ["z"], ["deviation"]),
            helper.make_node("ReduceMax", ["deviation"], [OUTPUT_NAME], axes=[1], keepdims=0),
        ],
        f"edgetwin_robust_max_z_{tail}",
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT,
                                       ["batch", n_inputs])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch"])],
        initializer=[numpy_helper.from_array(center.astype(np.float32), "center"),
                     numpy_helper.from_array(scale.astype(np.float32), "scale")],
    )
    return _finish(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]),
                   f"largest robust z-score of {n_inputs} inputs ({tail} tail)")


def iforest_model(values: np.ndarray, trees: int, seed: int) -> bytes:
    """An IsolationForest fitted on rows of raw values, scoring ``-score_samples``."""
    onnx = _onnx()
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
        from sklearn.ensemble import IsolationForest
    except ImportError as err:
        msg = "edgetwin train --kind iforest needs the [train] extra: pip install 'edgetwin[train]'"
        raise TrainingError(msg, EX_UNAVAILABLE) from err
    forest = IsolationForest(n_estimators=trees, random_state=seed)
    forest.fit(values.astype(np.float32))  # the precision the graph will see
    n_inputs = values.shape[1]
    converted = convert_sklearn(
        forest,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_inputs]))],
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
        options={id(forest): {"score_samples": True}},
    )
    helper = onnx.helper
    graph = converted.graph
    # The converter's outputs are label, decision scores and score_samples (all [N, 1]);
    # keep one: the negated score_samples, flattened to [N] like the robust model's.
    graph.node.extend([
        helper.make_node("Neg", ["score_samples"], ["edgetwin_anomaly"]),
        helper.make_node("Reshape", ["edgetwin_anomaly", "edgetwin_flat"], [OUTPUT_NAME]),
    ])
    graph.initializer.append(
        onnx.numpy_helper.from_array(np.array([-1], dtype=np.int64), "edgetwin_flat"))
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, [None]))
    return _finish(converted, f"IsolationForest, {trees} trees, anomaly score -score_samples")


def _finish(model: Any, description: str) -> bytes:
    onnx = _onnx()
    model.ir_version = IR_VERSION
    model.producer_name = "edgetwin train"
    model.producer_version = __version__
    model.doc_string = description
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def library_versions(kind: str) -> dict[str, str]:
    """The versions that made a model, for its manifest."""
    import importlib.metadata

    names = ["numpy", "onnx"] + (["scikit-learn", "skl2onnx"] if kind == "iforest" else [])
    return {"edgetwin": __version__,
            **{name: importlib.metadata.version(name) for name in names}}
