"""Waveform intake: refuse what cannot be analysed, cut Welch segments, remove the offset."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edgetwin.analytics.vibration.errors import FeatureError

Array = npt.NDArray[np.float64]

# Samples spanning less than this fraction of their magnitude differ only by floating-point
# rounding: the sensor is stuck or disconnected, and a crest factor or kurtosis of rounding
# noise would be a confident-looking lie.
FLAT_SPAN = 1e-12
# Outside these magnitudes fourth powers and squared FFT sums would overflow or underflow
# float64; no accelerometer reads 1e60 g or resolves 1e-60 g, so such samples are a decoding
# or scaling error, refused rather than turned into inf or a division by zero.
MAX_MAGNITUDE = 1e60
MIN_SPAN = 1e-60


def checked_waveform(waveform: Any, min_samples: int) -> Array:
    """The waveform as a 1-D float64 array of at least ``min_samples`` finite samples.

    Raises:
        FeatureError: ``not_numeric``, ``not_1d``, ``too_short`` or ``non_finite``.
    """
    array = np.asarray(waveform)
    if array.dtype.kind not in "iuf":  # bool, complex, object, strings: not an acceleration
        raise FeatureError("not_numeric", f"waveform has dtype {array.dtype}, not real numbers")
    if array.ndim != 1:
        raise FeatureError("not_1d", f"waveform has shape {array.shape}, not one dimension")
    if array.size < min_samples:
        raise FeatureError(
            "too_short", f"waveform has {array.size} samples; the window needs {min_samples}"
        )
    samples = array.astype(np.float64, copy=False)
    finite = np.isfinite(samples)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise FeatureError(
            "non_finite",
            f"waveform has {bad.size} NaN or infinite samples (first at index {bad[0]})",
        )
    return samples


def segments(samples: Array, length: int, hop: int) -> Array:
    """Welch segments of ``length`` samples every ``hop`` samples, as a read-only view.

    Samples after the last whole segment (fewer than ``hop``) take no part in the spectra.
    """
    windows: Array = np.lib.stride_tricks.sliding_window_view(samples, length)
    return windows[::hop]


def demeaned(rows: Array) -> Array:
    """``rows`` (1-D, or 2-D segment by segment) minus their mean.

    The mean is accelerometer bias (or gravity, for a MEMS sensor), not vibration. A
    straight-line fit is not removed as well: over a record of a few cycles it would bend
    a pure tone and shift its peak by several per cent; slow drift is the window's job.
    """
    out: Array = rows - np.expand_dims(rows.mean(axis=-1), -1)
    return out


def require_signal(samples: Array) -> None:
    """Refuse a flat waveform (all zero, constant, stuck) or one no sensor could produce.

    Raises:
        FeatureError: ``no_signal`` (flat) or ``out_of_range`` (beyond ``MAX_MAGNITUDE``).
    """
    high, low = float(samples.max()), float(samples.min())
    magnitude = max(abs(high), abs(low))
    if magnitude > MAX_MAGNITUDE:
        raise FeatureError("out_of_range", f"waveform reaches {magnitude:.3g}: no acceleration"
                           " is that large (a decoding or scale error?)")
    span = high - low
    if span <= FLAT_SPAN * magnitude or span < MIN_SPAN:
        raise FeatureError(
            "no_signal", "waveform is flat (all samples equal: zero, stuck or disconnected)"
        )
