"""``edgetwin train``: fit an anomaly baseline on healthy features and export it to ONNX.

Needs the ``[train]`` extra (scikit-learn, skl2onnx, onnx), which is imported only when a
model is fitted; the gateway itself never imports this package.
"""

from edgetwin.analytics.train.command import KINDS, TAILS, TrainOptions, TrainReport, train
from edgetwin.analytics.train.errors import TrainingError

__all__ = ["KINDS", "TAILS", "TrainOptions", "TrainReport", "TrainingError", "train"]
