"""Condition indicators read straight from the samples (FACTS 5.3)."""

from __future__ import annotations

from dataclasses import dataclass

from edgetwin.analytics.vibration.waveform import Array


@dataclass(frozen=True, slots=True)
class TimeStats:
    """Time-domain statistics of an acceleration signal with its mean removed, in its units."""

    rms: float
    peak: float  # largest magnitude, not half the peak-to-peak
    peak_to_peak: float
    crest: float  # peak / rms: sqrt(2) for a sine, rises with early localized damage
    kurtosis: float  # Pearson (3 for Gaussian noise), not Fisher's excess kurtosis
    skewness: float


def time_stats(centred: Array) -> TimeStats:
    """Statistics of ``centred`` samples (mean already zero, so moments are central).

    The caller has refused flat signals (``require_signal``), so ``rms`` is positive.
    """
    d = centred
    # Elementwise products and sums, not np.dot: dot goes to BLAS, and a multithreaded BLAS
    # (OpenBLAS starts threads above a few thousand elements) costs milliseconds of thread
    # hand-off on a busy 2-4 core gateway for work that takes microseconds on one core.
    square = d * d
    m2 = float(square.sum()) / d.size
    m3 = float((square * d).sum()) / d.size
    m4 = float((square * square).sum()) / d.size
    high, low = float(d.max()), float(d.min())
    rms = m2**0.5
    peak = max(high, -low)
    return TimeStats(
        rms=rms,
        peak=peak,
        peak_to_peak=high - low,
        crest=peak / rms,
        kurtosis=m4 / (m2 * m2),
        skewness=m3 / (m2 * rms),
    )
