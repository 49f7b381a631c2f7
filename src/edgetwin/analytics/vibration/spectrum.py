"""Windowed one-sided power spectra (Welch-averaged), spectral lines and band powers.

Every spectrum here is a *power per bin* in the signal's units squared: bin k holds the mean
square that the components near ``k * df`` contribute, so summing bins gives a band's mean
square (Parseval), and a line's RMS is the root of the few bins its window spreads it over.
This is the normalisation of FACTS 5.2, ``2 / (N * sum(w**2)) * |X_k|**2``, which stays right
for any window and needs no amplitude-correction factor.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.fft  # type: ignore[import-untyped]  # scipy ships no type information

from edgetwin.analytics.vibration.waveform import Array
from edgetwin.config.model import WindowFn

IndexArray = npt.NDArray[np.intp]

# Bins either side of its peak bin over which a window spreads a pure tone: summed, they hold
# its power whatever its position between bins (Hann: 99.9 %), so no scalloping correction
# is needed. A rectangular window leaks further; 3 bins hold 85 % of a tone between bins.
MAIN_LOBE_HALF_WIDTH = {WindowFn.RECT: 1, WindowFn.HANN: 2, WindowFn.HAMMING: 2,
                        WindowFn.BLACKMAN: 3}
# Bins at the bottom of a windowed spectrum that a constant (the envelope's mean) reaches:
# the window's own spectrum, one bin per cosine term.
WINDOW_DC_BINS = {WindowFn.RECT: 1, WindowFn.HANN: 2, WindowFn.HAMMING: 2,
                  WindowFn.BLACKMAN: 3}

_SCIPY_WINDOW_NAMES = {WindowFn.RECT: "boxcar", WindowFn.HANN: "hann",
                       WindowFn.HAMMING: "hamming", WindowFn.BLACKMAN: "blackman"}


def spectral_window(window_fn: WindowFn, n: int) -> Array:
    """The periodic (DFT-even) window of ``n`` samples, as spectral analysis uses it."""
    from scipy.signal import get_window  # type: ignore[import-untyped]  # scipy has no stubs

    window: Array = np.asarray(get_window(_SCIPY_WINDOW_NAMES[window_fn], n, fftbins=True),
                               dtype=np.float64)
    return window


def power_scale(window: Array) -> Array:
    """Per-bin factor turning ``|rfft(x * window)|**2`` into a one-sided mean square.

    DC and (for even lengths) the Nyquist bin have no negative-frequency twin, so they are
    not doubled; with that, the bins sum exactly to ``sum((x * w)**2) / sum(w**2)``.
    """
    n = window.size
    scale = np.full(n // 2 + 1, 2.0 / (n * float(window @ window)))
    scale[0] /= 2.0
    if n % 2 == 0:
        scale[-1] /= 2.0
    return scale


def windowed_spectra(centred_segments: Array, window: Array) -> npt.NDArray[np.complex128]:
    """``rfft`` of every segment (rows) times the window: the spectra both analyses share.

    scipy's FFT rather than numpy's: same pocketfft, but its plan cache keeps long complex
    transforms (the envelope's) several times faster.
    """
    windowed = centred_segments * window
    spectra: npt.NDArray[np.complex128] = scipy.fft.rfft(windowed, axis=-1, overwrite_x=True)
    return spectra


def mean_power(spectra: npt.NDArray[np.complex128], scale: Array) -> Array:
    """Welch average of the segments' (rows') power spectra: one mean square per bin."""
    power: Array = np.square(spectra.real)
    power += np.square(spectra.imag)
    averaged: Array = power[0] if power.shape[0] == 1 else power.mean(axis=0)
    averaged *= scale
    return averaged


def bin_range(lo_hz: float, hi_hz: float, df_hz: float) -> tuple[int, int]:
    """First and last bin whose frequency lies in ``[lo_hz, hi_hz]``."""
    return int(np.ceil(lo_hz / df_hz - 1e-9)), int(np.floor(hi_hz / df_hz + 1e-9))


def band_power(power: Array, lo_bins: IndexArray, hi_bins: IndexArray) -> Array:
    """Mean square in each band ``lo_bins[i] ..= hi_bins[i]`` (bins, inclusive; lo >= 1)."""
    cumulative = np.cumsum(power)
    result: Array = cumulative[hi_bins] - cumulative[lo_bins - 1]
    return result


def line_power(power: Array, centre_bins: Array, reach_bins: Array, half_width: int) -> Array:
    """Mean square of the strongest line within ``centre ± reach`` bins of each centre.

    The peak bin is searched in the reach (a slipping bearing or a speed reading that is a
    little off moves the line), then the bins ``peak ± half_width`` are summed: the whole
    main lobe of the window, so the value does not depend on where the line falls between
    bins. ``reach_bins`` must be at least 1 so that every search spans two bins or more.
    """
    last = power.size - 1
    lo = np.maximum(np.ceil(centre_bins - reach_bins), 1).astype(np.intp)
    hi = np.minimum(np.floor(centre_bins + reach_bins), last).astype(np.intp)
    np.minimum(lo, hi, out=lo)  # a centre past the last bin still gets one candidate
    offsets = np.arange(int((hi - lo).max()) + 1)
    candidates = lo[:, None] + offsets
    heights = power[np.minimum(candidates, last)]
    heights[candidates > hi[:, None]] = -1.0
    peaks = lo + heights.argmax(axis=1)
    # Zero-padded so the lobe of a line near either end needs no bounds check; the DC bin
    # is no part of any line.
    padded = np.zeros(power.size + 2 * half_width)
    padded[half_width + 1:half_width + power.size] = power[1:]
    lobes = peaks[:, None] + np.arange(2 * half_width + 1)
    summed: Array = padded[lobes].sum(axis=1)
    return summed
