"""Running speed estimated from the spectrum, for machines without a speed reading.

Every rotating machine shows its speed as a family of lines at 1x, 2x, 3x. The estimate:

1. takes the strongest peak of the *velocity* spectrum in the search range: velocity favours
   low frequencies, so this is 1x on most machines (bearing tones sit higher), or 2x when
   misalignment dominates;
2. tries that peak and its half and third as the 1x, and keeps the one whose first three
   harmonics are jointly strongest in the *acceleration* spectrum (a harmonic product: the
   sum of log powers, each harmonic's bin taken only if it is a local peak). A product is
   not fooled by half the speed (its odd multiples fall on noise), and acceleration, unlike
   velocity, does not favour the lower candidate for its own sake;
3. refuses the result unless its 1x stands 10 dB above the median bin, then refines it below
   one bin from the harmonics' interpolated peaks: bearing lines at 3-6 x the speed inherit
   its error.

Known limits: a machine whose strongest low-frequency line is not shaft-related (a gear mesh,
a fan's blade pass, a strong bearing tone at low speed) can be mistaken for it; a machine
with half-order lines (looseness, rubs) is periodic over two turns and can read as half its
speed; below about 3 bins (9 Hz for 4096 samples at 12 kHz) there is nothing to resolve. A
configured speed point (``machine.shaft_hz_point``) avoids the guess.
"""

from __future__ import annotations

import math

import numpy as np

from edgetwin.analytics.vibration.waveform import Array

HARMONICS = 3
PROMINENCE = 10.0  # the 1x line must stand 10 dB above the median bin of the search range
SPEED_RANGE_HZ = (2.0, 250.0)  # 120-15 000 r/min, the span ISO 10816-3 covers
MIN_SPEED_BINS = 3  # 1x must sit above the window's DC lobe (Blackman spans bins 0-2)
_TINY = float(np.finfo(np.float64).tiny)


def estimate_shaft_hz(power: Array, velocity_weights: Array, df_hz: float, lo_bin: int,
                      hi_bin: int) -> float | None:
    """The running speed in Hz from a power spectrum, or None when no clear family is seen.

    Args:
        power: one-sided acceleration power per bin (``spectrum.mean_power``).
        velocity_weights: per-bin factors to velocity power (``severity.velocity_weights``).
        df_hz: bin spacing.
        lo_bin: lowest 1x candidate bin (at least ``MIN_SPEED_BINS``).
        hi_bin: highest 1x candidate bin; ``HARMONICS * hi_bin + 2`` must be a valid bin.
    """
    velocity = power[lo_bin - 1:hi_bin + 2] * velocity_weights[lo_bin - 1:hi_bin + 2]
    inner = velocity[1:-1]
    local_max = (inner >= velocity[:-2]) & (inner >= velocity[2:])
    if not local_max.any():
        return None
    strongest = lo_bin + int(np.argmax(np.where(local_max, inner, 0.0)))

    region = power[:HARMONICS * hi_bin + 3]  # every bin the candidates' harmonics can reach
    floor = _median(region[lo_bin:])
    peaks = np.zeros_like(region)
    middle = region[1:-1]
    peaks[1:-1] = np.where((middle >= region[:-2]) & (middle >= region[2:]), middle, 0.0)
    near_peak = peaks.copy()  # a harmonic of a speed between bins lands between bins too
    near_peak[1:-1] = np.maximum(np.maximum(peaks[:-2], peaks[1:-1]), peaks[2:])
    # A handful of scalar steps follow: Python floats beat numpy scalars at that.
    bins: list[float] = region.tolist()
    near: list[float] = near_peak.tolist()

    top = strongest + _vertex(bins, strongest)
    best_score, best = -math.inf, top
    for divisor in range(1, HARMONICS + 1):
        candidate = top / divisor
        if divisor > 1 and candidate < lo_bin:
            break
        score = 0.0
        for h in range(1, HARMONICS + 1):
            score += math.log(near[round(h * candidate)] + floor)
        if score > best_score:
            best_score, best = score, candidate
    if near[round(best)] < PROMINENCE * floor:
        return None
    return _refine(bins, best, floor) * df_hz


def _refine(bins: list[float], first: float, floor: float) -> float:
    """Least-squares 1x position, in bins, from the interpolated peaks of prominent harmonics."""
    last = len(bins) - 1
    numerator = denominator = 0.0
    for h in range(1, HARMONICS + 1):
        guess = round(h * first)
        peak = max(1, guess - 1)
        for k in range(peak + 1, min(last - 1, guess + 1) + 1):
            if bins[k] > bins[peak]:
                peak = k
        if bins[peak] < PROMINENCE * floor:
            continue
        position = peak + _vertex(bins, peak)
        # Fit position_h = h * speed, each harmonic weighted by its power (its SNR).
        numerator += bins[peak] * h * position
        denominator += bins[peak] * h * h
    return numerator / denominator if denominator else first


def _median(values: Array) -> float:
    """Median without ``np.median``'s overhead (this runs once per waveform)."""
    middle = values.size // 2
    return float(np.partition(values, middle)[middle])


def _vertex(bins: list[float], peak: int) -> float:
    """Offset (-0.5..0.5 bins) of a peak: a parabola through the log powers of three bins."""
    a = math.log(bins[peak - 1] + _TINY)
    b = math.log(bins[peak] + _TINY)
    c = math.log(bins[peak + 1] + _TINY)
    curvature = a - 2.0 * b + c
    if curvature >= 0.0:  # not a peak (flat or a trough); keep the bin
        return 0.0
    return max(-0.5, min(0.5, 0.5 * (a - c) / curvature))
