"""One waveform in, the configured features out: the numeric part of a plan.

Pure and synchronous; the daemon runs it in its bounded executor. Feature names, units and
what makes a feature unavailable are listed in this package's README.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgetwin.analytics.vibration import speed
from edgetwin.analytics.vibration.envelope import envelope_spectra
from edgetwin.analytics.vibration.plan import (
    HARMONIC_FEATURES,
    SLIP_TOLERANCE,
    SPEED_TOLERANCE,
    VibrationPlan,
    build_plan,
)
from edgetwin.analytics.vibration.severity import iso_zone
from edgetwin.analytics.vibration.spectrum import (
    band_power,
    line_power,
    mean_power,
    windowed_spectra,
)
from edgetwin.analytics.vibration.timedomain import time_stats
from edgetwin.analytics.vibration.waveform import (
    Array,
    checked_waveform,
    demeaned,
    require_signal,
    segments,
)
from edgetwin.config.model import VibrationConfig, VibrationFeature

F = VibrationFeature
_TIME_FEATURES = (F.RMS, F.PEAK, F.PEAK_TO_PEAK, F.CREST, F.KURTOSIS, F.SKEWNESS)


@dataclass(frozen=True, slots=True)
class Features:
    """What one waveform yielded: every name of ``plan.feature_names`` is in exactly one map.

    ``values`` holds the features computed (floats; ``iso_zone`` is an int 1-4).
    ``unavailable`` maps each feature this waveform cannot give to the reason, e.g. the
    shaft standing still for the 1x amplitude; publish those as BAD rather than as a value.
    """

    values: dict[str, float]
    unavailable: dict[str, str]


def extract(plan: VibrationPlan, waveform: Any, shaft_hz: float | None = None) -> Features:
    """The features of ``waveform`` (acceleration samples in ``plan.accel_unit``).

    Args:
        plan: from ``build_plan`` for the waveform's entry and sample rate.
        waveform: 1-D real samples, at least ``plan.window_samples`` of them; more are
            Welch-averaged in segments of that length overlapping by half.
        shaft_hz: the running speed now (the entry's ``shaft_hz_point``), or None to
            estimate it from the spectrum. Its sign is ignored (direction does not change a
            frequency); 0 means the shaft stands still.

    Raises:
        FeatureError: the waveform is unusable as a whole (shape, length, NaN or inf,
            flat, out of any sensor's range); its ``code`` names which.
    """
    n = plan.window_samples
    samples = checked_waveform(waveform, n)
    require_signal(samples)
    centred = demeaned(samples)
    rows = centred[None, :] if samples.size == n else demeaned(segments(samples, n, plan.hop))
    values: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    if any(plan.wants(f) for f in _TIME_FEATURES):
        stats = time_stats(centred)
        for feature in _TIME_FEATURES:
            if plan.wants(feature):
                values[feature.value] = float(getattr(stats, feature.value))
    if len(values) == len(plan.feature_names):
        return Features(values, unavailable)

    spectra = windowed_spectra(rows, plan.window)
    power = mean_power(spectra, plan.power_scale)
    if plan.wants(F.VELOCITY_RMS) or plan.wants(F.ISO_ZONE):
        lo, hi = plan.velocity_bins
        velocity = math.sqrt(float((power[lo:hi + 1] * plan.velocity_weights[lo:hi + 1]).sum()))
        if plan.wants(F.VELOCITY_RMS):
            values["velocity_rms"] = velocity
        if plan.wants(F.ISO_ZONE):
            machine = plan.config.machine
            values["iso_zone"] = iso_zone(velocity, machine.iso_group, machine.foundation)
    if plan.bands:
        band_rms = np.sqrt(band_power(power, plan.band_lo, plan.band_hi))
        for band, rms in zip(plan.bands, band_rms.tolist(), strict=True):
            values[band.name] = rms
    if plan.needs_shaft:
        running_hz, why = _running_speed(plan, power, shaft_hz)
        if plan.wants(F.HARMONICS_1X_3X):
            _harmonics(plan, power, running_hz, why, values, unavailable)
        if plan.defect_features:
            _bearing_lines(plan, spectra, running_hz, why, values, unavailable)
    ordered = {name: values[name] for name in plan.feature_names if name in values}
    return Features(ordered, unavailable)


def _running_speed(plan: VibrationPlan, power: Array, shaft_hz: float | None
                   ) -> tuple[float | None, str]:
    """The speed to use, or None with the reason the speed features are unavailable."""
    if shaft_hz is None:
        lo, hi = plan.speed_bins
        if lo > hi:
            return None, "no speed reading, and the window is too short to estimate one"
        estimate = speed.estimate_shaft_hz(power, plan.velocity_weights, plan.df_hz, lo, hi)
        if estimate is None:
            return None, "no speed reading, and no clear 1x/2x/3x family in the spectrum"
        return estimate, ""
    if not math.isfinite(shaft_hz):
        return None, f"speed reading {shaft_hz!r} is not a number"
    shaft_hz = abs(float(shaft_hz))
    if shaft_hz == 0.0:
        return None, "shaft not turning (speed reading 0)"
    if shaft_hz < speed.MIN_SPEED_BINS * plan.df_hz:
        return None, (f"speed {shaft_hz:g} Hz is below the resolution of"
                      f" {plan.df_hz:.3g} Hz bins")
    return shaft_hz, ""


def _harmonics(plan: VibrationPlan, power: Array, running_hz: float | None, why: str,
               values: dict[str, float], unavailable: dict[str, str]) -> None:
    """1x, 2x, 3x as velocity RMS (mm/s) and their ratios to 1x; the speed used."""
    if running_hz is None:
        unavailable.update(dict.fromkeys(HARMONIC_FEATURES, why))
        return
    values["shaft_hz"] = running_hz
    centres = running_hz * np.arange(1.0, 4.0) / plan.df_hz
    reach = np.maximum(SPEED_TOLERANCE * centres, 1.0)
    top = int(centres[-1] + reach[-1]) + plan.half_width + 2
    velocity_power = power[:top] * plan.velocity_weights[:top]
    lines = np.sqrt(line_power(velocity_power, centres, reach, plan.half_width))
    amplitude: dict[int, float] = {}
    for h, (centre, slack, line) in enumerate(zip(centres, reach, lines.tolist(),
                                                  strict=True), start=1):
        if (centre + slack) * plan.df_hz > plan.highest_line_hz:
            unavailable[f"h{h}x"] = f"{h}x ({centre * plan.df_hz:.4g} Hz) is above Nyquist"
        else:
            values[f"h{h}x"] = amplitude[h] = line
    for h in (2, 3):
        name = f"h{h}x_h1x"
        if h not in amplitude or 1 not in amplitude:
            unavailable[name] = unavailable.get(f"h{h}x", "") or unavailable["h1x"]
        elif amplitude[1] == 0.0:
            unavailable[name] = "no 1x line to compare with"
        else:
            values[name] = amplitude[h] / amplitude[1]


def _bearing_lines(plan: VibrationPlan, spectra: npt.NDArray[np.complex128],
                   running_hz: float | None, why: str, values: dict[str, float],
                   unavailable: dict[str, str]) -> None:
    """Envelope-spectrum line RMS at each defect frequency and its harmonics."""
    if running_hz is None or plan.envelope is None:
        unavailable.update(dict.fromkeys(plan.defect_features, why))
        return
    envelope = mean_power(envelope_spectra(spectra, plan.envelope, plan.dc_bins),
                          plan.power_scale)
    centres = plan.defect_orders * (running_hz / plan.df_hz)
    reach = np.maximum(SLIP_TOLERANCE * centres, 1.0)
    lines = np.sqrt(line_power(envelope, centres, reach, plan.half_width))
    for name, centre, slack, line in zip(plan.defect_features, centres.tolist(),
                                         reach.tolist(), lines.tolist(), strict=True):
        hz = centre * plan.df_hz
        if centre - slack < plan.dc_bins:
            unavailable[name] = (f"{name} ({hz:.3g} Hz) is below the resolution of"
                                 f" {plan.df_hz:.3g} Hz bins")
        elif (centre + slack) * plan.df_hz > plan.highest_envelope_hz:
            unavailable[name] = (f"{name} ({hz:.4g} Hz) is above what the envelope band"
                                 f" carries ({plan.highest_envelope_hz:g} Hz)")
        else:
            values[name] = line


@functools.lru_cache(maxsize=32)
def _cached_plan(config: VibrationConfig, sample_rate_hz: float) -> VibrationPlan:
    return build_plan(config, sample_rate_hz)


def compute_features(waveform: Any, sample_rate_hz: float, config: VibrationConfig,
                     shaft_hz: float | None = None) -> Features:
    """``extract`` with a plan built on first use and kept (samples in g, default bands).

    Handy for scripts and tests; a long-running stage should build its plan once with
    ``build_plan`` (which also takes the unit and the bands) and call ``extract``.

    Raises:
        ConfigError: the entry cannot be analysed at this sample rate.
        FeatureError: the waveform is unusable.
    """
    return extract(_cached_plan(config, float(sample_rate_hz)), waveform, shaft_hz)
