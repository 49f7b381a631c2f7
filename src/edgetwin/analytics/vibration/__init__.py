"""Vibration features from acceleration waveforms: pure numpy, no I/O, no asyncio.

Build a plan once per ``vibration:`` entry, then extract features from each waveform::

    plan = build_plan(entry, waveform.sample_rate, unit=accel_unit(waveform.unit))
    features = extract(plan, sample.value, shaft_hz=speed_or_none)
    features.values       # {"rms": 0.21, "velocity_rms": 2.4, "iso_zone": 2, ...}
    features.unavailable  # {"h1x": "shaft not turning (speed reading 0)", ...}

Names, units and limits: README.md in this folder.
"""

from edgetwin.analytics.vibration.bearing import defect_orders
from edgetwin.analytics.vibration.errors import FeatureError
from edgetwin.analytics.vibration.features import Features, compute_features, extract
from edgetwin.analytics.vibration.plan import (
    AccelUnit,
    Band,
    VibrationPlan,
    accel_unit,
    build_plan,
    default_bands,
    feature_names,
    plan_problems,
)
from edgetwin.analytics.vibration.severity import ZONE_BOUNDARIES_MM_S, ZONE_LETTERS, iso_zone

__all__ = [
    "ZONE_BOUNDARIES_MM_S",
    "ZONE_LETTERS",
    "AccelUnit",
    "Band",
    "FeatureError",
    "Features",
    "VibrationPlan",
    "accel_unit",
    "build_plan",
    "compute_features",
    "default_bands",
    "defect_orders",
    "extract",
    "feature_names",
    "iso_zone",
    "plan_problems",
]
