"""Vibration features of analytic signals, whose right answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgetwin.analytics.vibration import (
    ZONE_BOUNDARIES_MM_S,
    build_plan,
    extract,
    iso_zone,
)
from edgetwin.config.model import Foundation, VibrationConfig

FS = 12000.0
G = 9.80665
TIME_AND_VELOCITY = ("rms", "peak", "peak_to_peak", "crest", "kurtosis", "skewness",
                     "velocity_rms", "iso_zone")


def sine(amplitude: float, freq_hz: float, n: int = 4096, phase: float = 0.3,
         fs: float = FS) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq_hz * np.arange(n) / fs + phase)


def velocity_rms_of(amplitude_g: float, freq_hz: float) -> float:
    """mm/s RMS of an acceleration sine: a / (2 pi f), in mm/s, over sqrt(2)."""
    return amplitude_g * G * 1000 / (2 * math.pi * freq_hz) / math.sqrt(2)


@pytest.mark.parametrize("phase", [0.0, 0.3, 1.9])
@pytest.mark.parametrize(("freq_hz", "n"), [(50.0, 4096), (159.2, 4096), (480.0, 4096),
                                            (25.0, 16384), (950.0, 16384)])
def test_sine_gives_rms_peak_crest_and_velocity_within_1_percent(freq_hz: float, n: int,
                                                                 phase: float) -> None:
    """A sine of amplitude A: RMS A/sqrt2, peak A, crest sqrt2, velocity A/(2 pi f sqrt2)."""
    amplitude = 0.7  # g
    plan = build_plan(VibrationConfig(point="p/v", window=n, features=TIME_AND_VELOCITY), FS)
    values = extract(plan, sine(amplitude, freq_hz, n, phase)).values
    assert values["rms"] == pytest.approx(amplitude / math.sqrt(2), rel=0.01)
    assert values["peak"] == pytest.approx(amplitude, rel=0.01)
    assert values["peak_to_peak"] == pytest.approx(2 * amplitude, rel=0.01)
    assert values["crest"] == pytest.approx(math.sqrt(2), rel=0.01)
    assert values["velocity_rms"] == pytest.approx(velocity_rms_of(amplitude, freq_hz),
                                                   rel=0.01)
    assert values["kurtosis"] == pytest.approx(1.5, rel=0.02)  # a sine's Pearson kurtosis
    assert abs(values["skewness"]) < 0.02


def test_velocity_ignores_offset_and_what_lies_outside_10_to_1000_hz() -> None:
    """A DC offset (sensor bias) and tones at 3 Hz and 2 kHz add nothing to velocity RMS."""
    plan = build_plan(VibrationConfig(point="p/v", window=16384), FS)
    inside = sine(0.5, 120.0, 16384)
    outside = 0.2 + sine(0.5, 2000.0, 16384) + sine(0.002, 3.0, 16384)
    alone = extract(plan, inside).values["velocity_rms"]
    both = extract(plan, inside + outside).values["velocity_rms"]
    assert both == pytest.approx(alone, rel=0.01)
    assert alone == pytest.approx(velocity_rms_of(0.5, 120.0), rel=0.01)


def test_acceleration_in_m_s2_gives_the_same_velocity() -> None:
    """The unit is converted before integrating: 1 g as 9.80665 m/s2 is the same vibration."""
    from edgetwin.analytics.vibration import AccelUnit

    config = VibrationConfig(point="p/v")
    in_g = extract(build_plan(config, FS), sine(0.3, 80.0)).values
    in_si = extract(build_plan(config, FS, unit=AccelUnit.M_S2), sine(0.3 * G, 80.0)).values
    assert in_si["velocity_rms"] == pytest.approx(in_g["velocity_rms"], rel=1e-9)
    assert in_si["rms"] == pytest.approx(in_g["rms"] * G, rel=1e-9)


def test_white_noise_has_kurtosis_3_and_crest_about_4() -> None:
    """Gaussian noise: Pearson kurtosis 3, skewness 0 (FACTS 5.3)."""
    plan = build_plan(VibrationConfig(point="p/v", window=16384, features=TIME_AND_VELOCITY),
                      FS)
    kurtoses = []
    for seed in range(8):
        noise = np.random.default_rng(seed).standard_normal(16384) * 0.1
        values = extract(plan, noise).values
        kurtoses.append(values["kurtosis"])
        assert values["kurtosis"] == pytest.approx(3.0, abs=0.15)
        assert abs(values["skewness"]) < 0.1
        assert 3.0 < values["crest"] < 5.5
    assert np.mean(kurtoses) == pytest.approx(3.0, abs=0.05)


def test_impulses_raise_kurtosis_and_crest() -> None:
    """Sparse impacts on noise (a bearing defect's signature) lift kurtosis far above 3."""
    plan = build_plan(VibrationConfig(point="p/v", features=TIME_AND_VELOCITY), FS)
    noise = np.random.default_rng(1).standard_normal(4096) * 0.05
    impacts = noise.copy()
    impacts[::400] += 1.0
    calm, struck = extract(plan, noise).values, extract(plan, impacts).values
    assert calm["kurtosis"] == pytest.approx(3.0, abs=0.3)
    assert struck["kurtosis"] > 10
    assert struck["crest"] > 2 * calm["crest"]


# -- ISO 10816-3 zones ----------------------------------------------------------------------


@pytest.mark.parametrize(("group", "foundation", "boundaries"), [
    (1, Foundation.RIGID, (2.3, 4.5, 7.1)),
    (1, Foundation.FLEXIBLE, (3.5, 7.1, 11.0)),
    (2, Foundation.RIGID, (1.4, 2.8, 4.5)),
    (2, Foundation.FLEXIBLE, (2.3, 4.5, 7.1)),
])
def test_iso_zone_boundaries_fall_where_the_standard_puts_them(
        group: int, foundation: Foundation, boundaries: tuple[float, float, float]) -> None:
    """ISO 10816-3 Annex A: a boundary value is still the lower zone, a hair above is not."""
    assert ZONE_BOUNDARIES_MM_S[group][foundation] == boundaries
    assert iso_zone(0.0, group, foundation) == 1
    for zone, boundary in enumerate(boundaries, start=1):
        assert iso_zone(boundary, group, foundation) == zone
        assert iso_zone(math.nextafter(boundary, math.inf), group, foundation) == zone + 1
        assert iso_zone(boundary * 0.99, group, foundation) == zone
        assert iso_zone(boundary * 1.01, group, foundation) == zone + 1
    assert iso_zone(100.0, group, foundation) == 4


def test_pump_groups_take_the_1998_values_of_groups_1_and_2() -> None:
    """Groups 3 and 4 (pumps, 1998 edition) share the boundaries of groups 1 and 2."""
    for foundation in Foundation:
        assert ZONE_BOUNDARIES_MM_S[3][foundation] == ZONE_BOUNDARIES_MM_S[1][foundation]
        assert ZONE_BOUNDARIES_MM_S[4][foundation] == ZONE_BOUNDARIES_MM_S[2][foundation]


@pytest.mark.parametrize(("velocity_mm_s", "zone"), [(1.0, 1), (2.0, 2), (3.5, 3), (6.0, 4)])
def test_iso_zone_of_a_measured_sine(velocity_mm_s: float, zone: int) -> None:
    """End to end on a rigid group-2 machine (A/B 1.4, B/C 2.8, C/D 4.5 mm/s)."""
    config = VibrationConfig(point="p/v", features=("velocity_rms", "iso_zone"),
                             machine={"iso_group": 2, "foundation": "rigid"})
    freq_hz = 80.0
    amplitude_g = velocity_mm_s * math.sqrt(2) * 2 * math.pi * freq_hz / (G * 1000)
    values = extract(build_plan(config, FS), sine(amplitude_g, freq_hz)).values
    assert values["velocity_rms"] == pytest.approx(velocity_mm_s, rel=0.01)
    assert values["iso_zone"] == zone
    assert isinstance(values["iso_zone"], int)


# -- lines and bands -----------------------------------------------------------------------


def test_harmonics_of_a_known_speed_are_read_as_velocity() -> None:
    """Tones at 1x, 2x, 3x of a given speed come back as their velocity RMS and ratios."""
    shaft_hz = 24.5
    amplitudes = {1: 0.2, 2: 0.1, 3: 0.05}
    signal = sum(sine(a, h * shaft_hz, phase=h) for h, a in amplitudes.items())
    plan = build_plan(VibrationConfig(point="p/v", features=("harmonics_1x_3x",)), FS)
    values = extract(plan, signal, shaft_hz).values
    expected = {h: velocity_rms_of(a, h * shaft_hz) for h, a in amplitudes.items()}
    assert values["shaft_hz"] == shaft_hz
    for h in (1, 2, 3):
        assert values[f"h{h}x"] == pytest.approx(expected[h], rel=0.01)
    assert values["h2x_h1x"] == pytest.approx(expected[2] / expected[1], rel=0.02)
    assert values["h3x_h1x"] == pytest.approx(expected[3] / expected[1], rel=0.02)


def test_line_tolerance_follows_a_speed_reading_that_is_slightly_off() -> None:
    """A reading 0.8 % off the true speed still finds the 1x line (1 % tolerance)."""
    plan = build_plan(VibrationConfig(point="p/v", features=("harmonics_1x_3x",)), FS)
    signal = sine(0.2, 30.0)
    assert extract(plan, signal, 30.0 * 1.008).values["h1x"] == pytest.approx(
        velocity_rms_of(0.2, 30.0), rel=0.01)


def test_band_energy_puts_a_tone_in_its_band_only() -> None:
    """A 3 kHz tone of RMS 0.5 g: 0.5 g in 1000-4687 Hz, nothing in 10-1000 Hz."""
    plan = build_plan(VibrationConfig(point="p/v", features=("band_energy",)), FS)
    values = extract(plan, sine(0.5 * math.sqrt(2), 3000.0)).values
    assert list(values) == ["band_10_1000hz", "band_1000_4687hz"]
    assert values["band_1000_4687hz"] == pytest.approx(0.5, rel=0.01)
    assert values["band_10_1000hz"] < 1e-3


def test_longer_waveforms_are_welch_averaged() -> None:
    """Four windows' worth of noise plus a tone: same tone level, steadier noise estimate."""
    config = VibrationConfig(point="p/v", features=("velocity_rms", "harmonics_1x_3x",
                                                    "band_energy"))
    plan = build_plan(config, FS)
    rng = np.random.default_rng(5)
    long = sine(0.3, 40.0, 4 * 4096) + 0.02 * rng.standard_normal(4 * 4096)
    values = extract(plan, long, 40.0).values
    assert values["h1x"] == pytest.approx(velocity_rms_of(0.3, 40.0), rel=0.01)
    assert values["velocity_rms"] == pytest.approx(velocity_rms_of(0.3, 40.0), rel=0.02)
    # Welch: 7 half-overlapping segments of one window each; the 10-1000 Hz band then
    # holds the tone and its share of the noise, like one window would on average.
    expected = math.sqrt(0.3**2 / 2 + 0.02**2 * (990 / (FS / 2)))
    assert values["band_10_1000hz"] == pytest.approx(expected, rel=0.02)
