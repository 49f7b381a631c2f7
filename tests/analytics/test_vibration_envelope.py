"""Envelope analysis: a modulated carrier's known envelope, and the textbook scipy chain."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import butter, hilbert, sosfiltfilt

from edgetwin.analytics.vibration import build_plan, defect_orders, extract
from edgetwin.analytics.vibration.spectrum import line_power, power_scale
from edgetwin.config.model import BearingConfig, VibrationConfig
from plcsim.vibration import FaultSpec, synthesize

FS = 12000.0
BAND_HZ = (2000.0, 5000.0)  # around firmware-sim's 3.5 kHz resonance
SKF_6205 = {"n_balls": 9, "ball_diameter": 7.94, "pitch_diameter": 39.04}
LINES = ("bpfo", "bpfi", "bsf", "ftf")


def entry(window: int = 4096) -> VibrationConfig:
    return VibrationConfig(point="pump1/vib_de", window=window, features=LINES,
                           bearing=SKF_6205, envelope_band=BAND_HZ)


@pytest.mark.parametrize("defect", ["bpfo", "bpfi", "bsf"])
def test_modulated_carrier_gives_its_modulation_depth_at_the_defect_line(defect: str) -> None:
    """(1 + m cos 2 pi f_d t) cos 2 pi f_c t: envelope line at f_d of RMS m / sqrt 2."""
    shaft_hz, depth, n = 25.0, 0.4, 16384
    defect_hz = defect_orders(BearingConfig(**SKF_6205))[defect] * shaft_hz
    t = np.arange(n) / FS
    carrier = np.cos(2 * np.pi * 3500.0 * t)
    signal = (1 + depth * np.cos(2 * np.pi * defect_hz * t)) * carrier
    values = extract(build_plan(entry(n), FS), signal, shaft_hz).values
    assert values[defect] == pytest.approx(depth / math.sqrt(2), rel=0.02)
    for other in set(LINES) - {defect}:
        assert values[other] < 0.05 * values[defect]


def scipy_envelope_lines(x: np.ndarray, window: np.ndarray, centres: np.ndarray,
                         half_width: int) -> np.ndarray:
    """FACTS 5.4 step by step: sosfiltfilt Butterworth, hilbert, |.|, mean off, window, rfft."""
    sos = butter(4, BAND_HZ, "bandpass", fs=FS, output="sos")
    envelope = np.abs(hilbert(sosfiltfilt(sos, x - x.mean())))
    envelope -= envelope.mean()
    power = np.abs(np.fft.rfft(envelope * window)) ** 2 * power_scale(window)
    return np.sqrt(line_power(power, centres, np.maximum(0.02 * centres, 1.0), half_width))


@pytest.mark.parametrize("window", [4096, 16384])
@pytest.mark.parametrize("mode", ["outer", "inner", "ball"])
def test_frequency_domain_envelope_matches_the_scipy_chain(mode: str, window: int) -> None:
    """Band-pass gains + one inverse FFT give the same lines as sosfiltfilt + hilbert (1 %)."""
    shaft_hz = 1450 / 60
    plan = build_plan(entry(window), FS)
    x = synthesize(window, FS, 2.0, shaft_hz, [FaultSpec(mode, 0.5)],
                   np.random.default_rng(3))
    ours = extract(plan, x, shaft_hz).values
    reference = scipy_envelope_lines(x, plan.window, plan.defect_orders * shaft_hz / plan.df_hz,
                                     plan.half_width)
    for name, expected in zip(plan.defect_features, reference, strict=True):
        assert ours[name] == pytest.approx(expected, rel=0.01), name
