"""Envelope (demodulation) analysis for bearing defects, done in the frequency domain.

FACTS 5.4 describes the textbook chain: zero-phase Butterworth band-pass around the
resonance (``sosfiltfilt``), Hilbert transform, magnitude, mean removed, spectrum. Here the
same chain runs on the windowed segment's spectrum, which the plain spectrum has already
computed:

- the band-pass is the Butterworth's squared magnitude ``|H(f)|**2`` sampled at the bins,
  which is exactly what ``sosfiltfilt``'s forward-backward pass applies, without its phase;
- keeping only positive frequencies (doubled) and inverse-transforming gives the analytic
  signal of the band (the Hilbert transform), and its magnitude the envelope;
- the segment was windowed before the transform, so it starts and ends at zero: the circular
  transform has no wrap-around step to ring, and the envelope comes out already windowed for
  its own spectrum. The window's DC bins are dropped instead of subtracting the mean.

One complex inverse FFT replaces ``sosfiltfilt`` + ``hilbert`` + a second forward FFT, which
is what keeps a window's features within a small multiple of one bare ``rfft`` + ``hilbert``
(``hil/bench/bench_vibration.py``); ``tests/analytics/test_vibration_envelope.py`` checks it
against the scipy chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft  # type: ignore[import-untyped]  # scipy ships no type information

from edgetwin.analytics.vibration.waveform import Array

BUTTERWORTH_ORDER = 4  # per pass; filtfilt doubles it (FACTS 5.4)
MASK_FLOOR = 1e-8  # bins where |H|**2 is below this are left out of the inverse transform


@dataclass(frozen=True, slots=True)
class EnvelopeFilter:
    """The band-pass as analytic-signal gains for bins ``start:stop`` of an ``rfft``."""

    band_hz: tuple[float, float]
    n: int  # segment length the gains are for
    start: int
    stop: int
    gains: Array  # 2 * |H(f_k)|**2 for bins start..stop-1 (1 at DC / Nyquist, never reached)


def envelope_filter(band_hz: tuple[float, float], sample_rate_hz: float, n: int
                    ) -> EnvelopeFilter:
    """Design the zero-phase band-pass for segments of ``n`` samples (done once, in the plan)."""
    from scipy.signal import butter, sosfreqz  # type: ignore[import-untyped]  # no stubs

    sos = butter(BUTTERWORTH_ORDER, band_hz, btype="bandpass", fs=sample_rate_hz,
                 output="sos")
    freq_hz = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    _, response = sosfreqz(sos, worN=freq_hz, fs=sample_rate_hz)
    gains = np.square(np.abs(np.asarray(response, dtype=np.complex128)))
    gains[1:(n + 1) // 2] *= 2.0  # one-sided: the negative frequencies' share goes here
    kept = np.flatnonzero(gains >= MASK_FLOOR)
    start, stop = int(kept[0]), int(kept[-1]) + 1
    band_gains: Array = gains[start:stop].copy()
    band_gains.flags.writeable = False
    return EnvelopeFilter(band_hz, n, start, stop, band_gains)


def envelope_spectra(spectra: npt.NDArray[np.complex128], bandpass: EnvelopeFilter,
                     dc_bins: int) -> npt.NDArray[np.complex128]:
    """Spectra of the windowed envelopes of the segments whose windowed ``rfft`` is given.

    Args:
        spectra: ``rfft(segment * window)``, one row per segment.
        bandpass: the plan's band-pass for this segment length.
        dc_bins: bins the window spreads a constant over; they are zeroed (the envelope's
            mean is not a line).
    """
    rows = spectra.shape[0]
    analytic_spectrum = np.zeros((rows, bandpass.n), dtype=np.complex128)
    analytic_spectrum[:, bandpass.start:bandpass.stop] = (
        spectra[:, bandpass.start:bandpass.stop] * bandpass.gains
    )
    analytic = scipy.fft.ifft(analytic_spectrum, axis=-1, overwrite_x=True)
    envelope = np.abs(analytic)
    result: npt.NDArray[np.complex128] = scipy.fft.rfft(envelope, axis=-1, overwrite_x=True)
    result[:, :dc_bins] = 0.0
    return result
