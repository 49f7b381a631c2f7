"""Plans: feature names and units, config problems found at startup, bad waveforms refused."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from edgetwin.analytics.vibration import (
    AccelUnit,
    Band,
    FeatureError,
    accel_unit,
    build_plan,
    compute_features,
    defect_orders,
    extract,
    plan_problems,
)
from edgetwin.config.model import BearingConfig, VibrationConfig
from edgetwin.core.errors import ConfigError

FS = 12000.0
SKF_6205 = {"n_balls": 9, "ball_diameter": 7.94, "pitch_diameter": 39.04}
EVERYTHING = ("rms", "peak", "peak_to_peak", "crest", "kurtosis", "skewness", "velocity_rms",
              "iso_zone", "bpfo", "bpfi", "bsf", "ftf", "harmonics_1x_3x", "band_energy")


def full_entry(**overrides: Any) -> VibrationConfig:
    fields: dict[str, Any] = {"point": "pump1/vib_de", "features": EVERYTHING,
                              "bearing": SKF_6205, "envelope_band": (2000.0, 5000.0)}
    fields.update(overrides)
    return VibrationConfig(**fields)


def noise(n: int = 4096, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n) * 0.05


# -- names and units -----------------------------------------------------------------------


def test_feature_names_expand_in_config_order_with_units() -> None:
    """Groups expand to scalars; every name has a unit (None for ratios, zone, shape)."""
    plan = build_plan(full_entry(), FS)
    assert plan.feature_names == (
        "rms", "peak", "peak_to_peak", "crest", "kurtosis", "skewness", "velocity_rms",
        "iso_zone",
        "bpfo", "bpfo_2x", "bpfo_3x", "bpfi", "bpfi_2x", "bpfi_3x",
        "bsf", "bsf_2x", "bsf_3x", "ftf", "ftf_2x", "ftf_3x",
        "shaft_hz", "h1x", "h2x", "h3x", "h2x_h1x", "h3x_h1x",
        "band_10_1000hz", "band_1000_4687hz", "band_2000_5000hz",
    )
    units = plan.units
    assert units["rms"] == units["bpfo_2x"] == units["band_2000_5000hz"] == "g"
    assert units["velocity_rms"] == units["h1x"] == "mm/s"
    assert units["shaft_hz"] == "Hz"
    assert units["crest"] is units["iso_zone"] is units["h2x_h1x"] is None
    assert build_plan(full_entry(), FS, unit=AccelUnit.M_S2).units["peak"] == "m/s2"


def test_every_feature_is_a_value_or_unavailable_never_both() -> None:
    """The values and the unavailable partition feature_names: each twin point gets news."""
    plan = build_plan(full_entry(), FS)
    for shaft_hz in (24.0, 0.0, None):
        features = extract(plan, noise(), shaft_hz)
        assert set(features.values) | set(features.unavailable) == set(plan.feature_names)
        assert not set(features.values) & set(features.unavailable)
        assert all(math.isfinite(v) for v in features.values.values())


def test_custom_bands_are_named_after_their_edges() -> None:
    """Bands given to the plan become band_<lo>_<hi>hz, a decimal point written as p."""
    plan = build_plan(VibrationConfig(point="p/v", features=("band_energy",)), FS,
                      bands=[Band(2.5, 40.0), Band(40.0, 400.0)])
    assert plan.feature_names == ("band_2p5_40hz", "band_40_400hz")


def test_defect_orders_reproduce_the_cwru_multiples() -> None:
    """SKF 6205 per 1 Hz of shaft: BPFO 3.5848, BPFI 5.4152, FTF 0.3983, 2 BSF 4.7135."""
    orders = defect_orders(BearingConfig(**SKF_6205))
    assert orders["bpfo"] == pytest.approx(3.5848, abs=1e-3)
    assert orders["bpfi"] == pytest.approx(5.4152, abs=1e-3)
    assert orders["ftf"] == pytest.approx(0.39828, abs=1e-3)
    assert 2 * orders["bsf"] == pytest.approx(4.7135, abs=1e-3)


def test_plan_arrays_are_read_only() -> None:
    """One plan serves several executor threads: nothing in it can be changed in place."""
    plan = build_plan(full_entry(), FS)
    assert plan.envelope is not None
    for array in (plan.window, plan.power_scale, plan.velocity_weights, plan.band_lo,
                  plan.band_hi, plan.defect_orders, plan.envelope.gains):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1


def test_compute_features_keeps_one_plan_per_entry_and_rate() -> None:
    """The one-call form builds a plan on first use and reuses it."""
    entry = full_entry()
    first = compute_features(noise(), FS, entry, 24.0)
    assert first == extract(build_plan(entry, FS), noise(), 24.0)
    from edgetwin.analytics.vibration.features import _cached_plan

    before = _cached_plan.cache_info().hits
    compute_features(noise(seed=1), FS, entry, 24.0)
    assert _cached_plan.cache_info().hits == before + 1


# -- config problems, all at once, at startup ----------------------------------------------


def test_problems_are_reported_together_with_key_paths() -> None:
    """Bearing lines without geometry or band, a band past Nyquist, a repeated feature."""
    entry = VibrationConfig(point="p/v", features=("rms", "bpfo", "rms"),
                            envelope_band=(2000.0, 7000.0))
    problems = dict(plan_problems(entry, FS))
    assert problems[("features", 2)] == "rms is listed twice"
    assert "need the bearing geometry" in problems[("bearing",)]
    assert problems[("envelope_band",)] == (
        "[2000, 7000] Hz reaches the Nyquist frequency (6000 Hz) of this 12000 Hz waveform"
    )
    with pytest.raises(ConfigError, match=r"'p/v'.*features.2: rms is listed twice"):
        build_plan(entry, FS)


def test_missing_envelope_band_is_a_problem_for_bearing_lines() -> None:
    """Refuse rather than guess the resonance to demodulate."""
    problems = dict(plan_problems(full_entry(envelope_band=None), FS))
    assert "need envelope_band" in problems[("envelope_band",)]


def test_velocity_needs_a_rate_above_2_khz_and_fine_enough_bins() -> None:
    """10-1000 Hz cannot be integrated from a 1.5 kHz waveform or from 500 Hz bins."""
    entry = VibrationConfig(point="p/v", features=("velocity_rms",))
    assert dict(plan_problems(entry, 1500.0))[("features",)] == (
        "velocity_rms and iso_zone integrate 10-1000 Hz, which reaches the Nyquist frequency"
        " (750 Hz) of this 1500 Hz waveform"
    )
    coarse = VibrationConfig(point="p/v", window=64, features=("iso_zone",))
    assert "spans fewer than 8 bins of 500 Hz (64 samples at 32000 Hz)" in dict(
        plan_problems(coarse, 32000.0))[("features",)]
    assert plan_problems(entry, FS) == []


def test_speed_estimate_that_cannot_resolve_is_a_problem_without_a_speed_point() -> None:
    """64 samples at 12 kHz give 188 Hz bins: no shaft line to find, so ask for a point."""
    short = full_entry(window=64, features=("harmonics_1x_3x",))
    assert ("machine", "shaft_hz_point") in dict(plan_problems(short, FS))
    with_point = full_entry(window=64, features=("harmonics_1x_3x",),
                            machine={"shaft_hz_point": "p/speed"})
    assert plan_problems(with_point, FS) == []


def test_bad_sample_rate_and_bands_are_problems() -> None:
    """A rate that is not a positive number, or a band outside 0..Nyquist, is refused."""
    entry = VibrationConfig(point="p/v", features=("band_energy",))
    assert plan_problems(entry, math.nan)
    assert plan_problems(entry, 0.0)
    bad = dict(plan_problems(entry, FS, bands=[Band(100.0, 7000.0)]))
    assert "must lie inside 0-6000 Hz" in bad[("features",)]


def test_accel_unit_reads_the_waveform_unit() -> None:
    """Units g (also when unset) and the spellings of m/s2; anything else is a config error."""
    assert accel_unit(None) is AccelUnit.G
    assert accel_unit("g") is AccelUnit.G
    assert accel_unit("m/s²") is accel_unit("m/s^2") is accel_unit(" m/s2") is AccelUnit.M_S2
    with pytest.raises(ConfigError, match="'mm/s' is not an acceleration unit"):
        accel_unit("mm/s")


# -- bad waveforms -------------------------------------------------------------------------


@pytest.mark.parametrize(("waveform", "code", "message"), [
    (np.zeros((2, 4096)), "not_1d", r"shape \(2, 4096\)"),
    (np.float64(1.0), "not_1d", r"shape \(\)"),
    (np.ones(4096, dtype=bool), "not_numeric", "dtype bool"),
    (np.ones(4096, dtype=complex), "not_numeric", "dtype complex128"),
    (["a"] * 4096, "not_numeric", "dtype <U1"),
    (np.ones(4095), "too_short", "4095 samples; the window needs 4096"),
    (np.zeros(4096), "no_signal", "flat"),
    (np.full(4096, 0.731), "no_signal", "flat"),
    (np.r_[np.zeros(4095), 1e-200], "no_signal", "flat"),
    (np.r_[np.zeros(4095), 1e200], "out_of_range", "reaches 1e.200"),
])
def test_unusable_waveforms_raise_feature_error_with_a_code(waveform: Any, code: str,
                                                            message: str) -> None:
    """Each kind of bad input has its own error code for the stage's counter."""
    plan = build_plan(full_entry(), FS)
    with pytest.raises(FeatureError, match=message) as caught:
        extract(plan, waveform, 24.0)
    assert caught.value.code == code


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_samples_are_refused_with_their_position(bad: float) -> None:
    """One NaN or inf anywhere poisons every spectrum bin, so the waveform is refused."""
    waveform = noise()
    waveform[1234] = bad
    with pytest.raises(FeatureError, match=r"1 NaN or infinite samples \(first at index 1234\)"
                       ) as caught:
        extract(build_plan(full_entry(), FS), waveform, 24.0)
    assert caught.value.code == "non_finite"


def test_int16_counts_are_accepted() -> None:
    """Raw integer samples are analysed as numbers (the plan's unit says what they mean)."""
    counts = (noise() * 1000).astype(np.int16)
    features = extract(build_plan(full_entry(), FS), counts, 24.0)
    assert features.values["rms"] == pytest.approx(float(np.std(counts)), rel=1e-6)


@pytest.mark.parametrize(("shaft_hz", "reason"), [
    (0.0, "shaft not turning"),
    (math.nan, "speed reading nan is not a number"),
    (2.0, "below the resolution"),
])
def test_speed_features_are_unavailable_with_a_reason(shaft_hz: float, reason: str) -> None:
    """A stopped shaft or an unusable reading: speed features unavailable, the rest computed."""
    plan = build_plan(full_entry(), FS)
    features = extract(plan, noise(), shaft_hz)
    speed_dependent = {"shaft_hz", "h1x", "h2x", "h3x", "h2x_h1x", "h3x_h1x",
                       *(f"{d}{s}" for d in ("bpfo", "bpfi", "bsf", "ftf")
                         for s in ("", "_2x", "_3x"))}
    assert set(features.unavailable) == speed_dependent
    assert all(reason in why for why in features.unavailable.values())
    assert {"rms", "velocity_rms", "iso_zone", "band_10_1000hz"} <= set(features.values)


def test_reverse_rotation_reads_like_forward() -> None:
    """A signed speed reading (a drive turning backwards) uses its magnitude."""
    plan = build_plan(full_entry(), FS)
    assert extract(plan, noise(), -24.0) == extract(plan, noise(), 24.0)


def test_noise_alone_gives_no_speed_estimate() -> None:
    """Without a reading and without a 1x/2x/3x family, the speed is not invented."""
    features = extract(build_plan(full_entry(), FS), noise(), None)
    assert "no clear 1x/2x/3x family" in features.unavailable["h1x"]


def test_lines_beyond_what_the_window_or_band_carries_are_unavailable() -> None:
    """At 240 Hz shaft speed on a 1.5 kHz-wide envelope band, 3 x BPFI (3.9 kHz) is out."""
    entry = full_entry(envelope_band=(3000.0, 4500.0))
    features = extract(build_plan(entry, FS), noise(), 240.0)
    assert "above what the envelope band carries" in features.unavailable["bpfi_3x"]
    assert "ftf" in features.values
    fast = extract(build_plan(entry, FS), noise(), 2000.0)
    assert "above Nyquist" in fast.unavailable["h3x"]
    assert fast.unavailable["h3x_h1x"] == fast.unavailable["h3x"]
