"""ONNX anomaly models scored from twin state, with hysteresis alarms and shadow mode.

The daemon makes one ``AnomalyScorer`` per ``anomaly:`` entry and calls ``update`` with the
twin state of its inputs; each ``ScoreResult`` carries the score (or why there is none) and,
when the alarm changes, an ``AlarmEvent`` whose ``record()`` goes to the outbox. See
``README.md`` in this folder for the manifest format and the calling contract.
"""

from edgetwin.analytics.anomaly.alarm import AlarmMachine, Transition
from edgetwin.analytics.anomaly.manifest import Manifest, ModelError, manifest_path
from edgetwin.analytics.anomaly.model import LoadedModel, load
from edgetwin.analytics.anomaly.scorer import (
    INFERENCE_SECONDS,
    SCORES_TOTAL,
    AlarmEvent,
    AnomalyScorer,
    ScoreResult,
)

__all__ = [
    "INFERENCE_SECONDS",
    "SCORES_TOTAL",
    "AlarmEvent",
    "AlarmMachine",
    "AnomalyScorer",
    "LoadedModel",
    "Manifest",
    "ModelError",
    "ScoreResult",
    "Transition",
    "load",
    "manifest_path",
]
