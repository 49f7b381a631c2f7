"""Properties every waveform must satisfy: scaling, Parseval, tones in their bins, bands."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.analytics.vibration import Band, build_plan, extract
from edgetwin.analytics.vibration.spectrum import (
    MAIN_LOBE_HALF_WIDTH,
    line_power,
    mean_power,
    power_scale,
    spectral_window,
    windowed_spectra,
)
from edgetwin.analytics.vibration.waveform import demeaned
from edgetwin.config.model import VibrationConfig, WindowFn

FS = 12000.0
LINEAR = ("rms", "peak", "peak_to_peak", "velocity_rms", "h1x", "h2x", "h3x",
          "band_10_1000hz", "band_1000_4687hz")
SHAPE = ("crest", "kurtosis", "h2x_h1x", "h3x_h1x")
PLAN = build_plan(VibrationConfig(
    point="p/v", features=("rms", "peak", "peak_to_peak", "crest", "kurtosis", "skewness",
                           "velocity_rms", "harmonics_1x_3x", "band_energy")), FS)

seeds = st.integers(0, 2**32 - 1)
windows = st.sampled_from(list(WindowFn))


def machine_like(seed: int, n: int = 4096) -> np.ndarray:
    """Shaft harmonics at a random speed, a few impacts and noise: a plausible waveform."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    shaft_hz = rng.uniform(15.0, 50.0)
    x = sum(rng.uniform(0.01, 0.3) * np.sin(2 * np.pi * h * shaft_hz * t + rng.uniform(0, 6))
            for h in (1, 2, 3))
    x = x + rng.normal(0.0, rng.uniform(0.005, 0.1), n) + rng.uniform(-1, 1)
    x[rng.integers(0, n, 5)] += rng.uniform(-1, 1, 5)
    return np.asarray(x, dtype=np.float64)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, scale=st.floats(1e-3, 1e3).flatmap(lambda s: st.sampled_from([s, -s])))
def test_scaling_scales_levels_and_keeps_shapes(seed: int, scale: float) -> None:
    """Scaling by c: levels scale by |c|; crest, kurtosis, ratios stay; skewness takes c's sign."""
    x = machine_like(seed)
    shaft_hz = float(np.random.default_rng(seed).uniform(15.0, 50.0))
    base = extract(PLAN, x, shaft_hz).values
    scaled = extract(PLAN, scale * x, shaft_hz).values
    for name in LINEAR:
        assert scaled[name] == pytest.approx(abs(scale) * base[name], rel=1e-9), name
    for name in SHAPE:
        assert scaled[name] == pytest.approx(base[name], rel=1e-9), name
    assert scaled["skewness"] == pytest.approx(math.copysign(1, scale) * base["skewness"],
                                               rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=seeds, window_fn=windows, n=st.integers(64, 5000))
def test_parseval_the_bins_hold_the_windowed_mean_square(seed: int, window_fn: WindowFn,
                                                         n: int) -> None:
    """Summed bins = sum((x w)^2) / sum(w^2); with no window, the signal's mean square."""
    x = demeaned(np.random.default_rng(seed).normal(0, 1, n))
    window = spectral_window(window_fn, n)
    power = mean_power(windowed_spectra(x[None, :], window), power_scale(window))
    assert power.sum() == pytest.approx(float(np.sum((x * window) ** 2) / np.sum(window**2)),
                                        rel=1e-9)
    if window_fn is WindowFn.RECT:
        assert power.sum() == pytest.approx(float(np.mean(x**2)), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(window_fn=windows, k=st.integers(4, 2040), offset=st.floats(-0.5, 0.5),
       amplitude=st.floats(1e-3, 10.0))
def test_a_tone_lands_in_its_bin_with_its_power(window_fn: WindowFn, k: int, offset: float,
                                                amplitude: float) -> None:
    """A tone at bin k + offset peaks at the nearest bin; its lobe holds A**2 / 2."""
    n = 4096
    x = amplitude * np.sin(2 * np.pi * (k + offset) * np.arange(n) / n + 0.4)
    window = spectral_window(window_fn, n)
    power = mean_power(windowed_spectra(x[None, :], window), power_scale(window))
    assert abs(int(np.argmax(power)) - (k + offset)) <= 0.5 + 1e-9
    line = line_power(power, np.array([k + offset]), np.array([1.0]),
                      MAIN_LOBE_HALF_WIDTH[window_fn])[0]
    # A rectangular window spreads an off-bin tone past its lobe: 85 % of its power stays.
    floor = 0.85 if window_fn is WindowFn.RECT else 0.995
    assert floor * amplitude**2 / 2 <= line <= 1.001 * amplitude**2 / 2


@settings(max_examples=30, deadline=None)
@given(seed=seeds, split_hz=st.floats(20.0, 4000.0))
def test_adjacent_bands_add_in_quadrature(seed: int, split_hz: float) -> None:
    """Two bands that tile a third hold its mean square between them, bin for bin."""
    df = FS / 4096
    split = (math.floor(split_hz / df) + 0.5) * df  # between two bins: no bin counted twice
    bands = [Band(10.0, 4500.0), Band(10.0, split), Band(split, 4500.0)]
    plan = build_plan(VibrationConfig(point="p/v", features=("band_energy",)), FS, bands=bands)
    values = list(extract(plan, machine_like(seed)).values.values())
    assert values[0] ** 2 == pytest.approx(values[1] ** 2 + values[2] ** 2, rel=1e-9)
