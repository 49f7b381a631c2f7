"""The vibration model: bearing geometry, fault signatures a gateway's analysis must find, Sim use.

Envelope analysis follows FACTS 5.4: band-pass around the resonance (zero-phase Butterworth),
Hilbert envelope, mean removed, spectrum. A ball defect is modelled with its dominant envelope
line at 2 x BSF (both races struck once per spin revolution), and that is what is tested.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import butter, hilbert, sosfiltfilt
from scipy.stats import kurtosis

from plcsim.faults import Fault
from plcsim.sim import Sim
from plcsim.vibration import (
    SKF_6205,
    BearingGeometry,
    FaultSpec,
    VibrationSensor,
    synthesize,
)

RESONANCE_BAND_HZ = (2500.0, 4500.0)  # around the model's 3500 Hz resonance


def envelope_peak_hz(x: np.ndarray, fs: float, lo_hz: float = 5.0, hi_hz: float = 500.0
                     ) -> float:
    """Frequency of the largest envelope-spectrum line between ``lo_hz`` and ``hi_hz``."""
    sos = butter(4, RESONANCE_BAND_HZ, "bandpass", fs=fs, output="sos")
    envelope = np.abs(hilbert(sosfiltfilt(sos, x)))
    envelope -= envelope.mean()
    n_fft = 8 * envelope.size  # zero padding: finer than 1 % even for short records
    spectrum = np.abs(np.fft.rfft(envelope * np.hanning(envelope.size), n_fft))
    freq_hz = np.fft.rfftfreq(n_fft, 1 / fs)
    band = (freq_hz >= lo_hz) & (freq_hz <= hi_hz)
    return float(freq_hz[band][np.argmax(spectrum[band])])


def line_g(x: np.ndarray, fs: float, freq_hz: float) -> float:
    """Amplitude in g of the spectral line at ``freq_hz`` (Hann window, amplitude-corrected)."""
    window = np.hanning(x.size)
    n_fft = 8 * x.size
    spectrum = np.abs(np.fft.rfft(x * window, n_fft)) * 2 / window.sum()
    near = np.abs(np.fft.rfftfreq(n_fft, 1 / fs) - freq_hz) <= fs / x.size
    return float(spectrum[near].max())


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def expected_line_hz(mode: str, shaft_hz: float) -> float:
    freqs = SKF_6205.frequencies(shaft_hz)
    return {"outer": freqs["bpfo"], "inner": freqs["bpfi"], "ball": 2 * freqs["bsf"]}[mode]


def one(mode: str | None, shaft_hz: float, *, fs: float = 12000.0, seconds: float = 1.0,
        severity: float = 0.5, seed: int = 1, t0_s: float = 7.3, **options: Any
        ) -> np.ndarray:
    faults = [FaultSpec(mode, severity)] if mode else []
    return synthesize(round(fs * seconds), fs, t0_s, shaft_hz, faults,
                      np.random.default_rng(seed), **options)


# -- geometry ------------------------------------------------------------------------------


def test_skf_6205_multiples_match_cwru() -> None:
    """Per 1 Hz of shaft: BPFO 3.5848, BPFI 5.4152, FTF 0.39828, 2 x BSF 4.7135 (CWRU)."""
    freqs = BearingGeometry().frequencies(1.0)
    assert freqs["bpfo"] == pytest.approx(3.5848, abs=1e-3)
    assert freqs["bpfi"] == pytest.approx(5.4152, abs=1e-3)
    assert freqs["ftf"] == pytest.approx(0.39828, abs=1e-3)
    assert 2 * freqs["bsf"] == pytest.approx(4.7135, abs=1e-3)
    assert BearingGeometry(9, 7.94, 39.04, 0.0) == SKF_6205


def test_frequencies_at_1797_rpm() -> None:
    """FACTS' worked example: BPFO 107.4, BPFI 162.2, FTF 11.9, BSF 70.6 Hz."""
    freqs = SKF_6205.frequencies(1797 / 60)
    assert freqs["bpfo"] == pytest.approx(107.4, abs=0.05)
    assert freqs["bpfi"] == pytest.approx(162.2, abs=0.05)
    assert freqs["ftf"] == pytest.approx(11.9, abs=0.05)
    assert freqs["bsf"] == pytest.approx(70.6, abs=0.05)


def test_bad_geometry_and_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="ball_diameter"):
        BearingGeometry(ball_diameter_mm=40.0)
    with pytest.raises(ValueError, match="unknown vibration fault mode"):
        FaultSpec("cage")
    with pytest.raises(ValueError, match="severity"):
        FaultSpec("outer", 1.5)
    with pytest.raises(ValueError, match="Nyquist"):
        synthesize(100, 6000.0, 0.0, 25.0, [], np.random.default_rng(0))


# -- bearing defects in the envelope spectrum ----------------------------------------------


@pytest.mark.parametrize("fs", [12000.0, 25600.0])
@pytest.mark.parametrize("rpm", [1450.0, 1797.0])
@pytest.mark.parametrize("mode", ["outer", "inner", "ball"])
def test_envelope_peak_at_defect_frequency(mode: str, rpm: float, fs: float) -> None:
    """The largest envelope line (5-500 Hz) is BPFO / BPFI / 2 x BSF within 1 %."""
    shaft_hz = rpm / 60
    peak_hz = envelope_peak_hz(one(mode, shaft_hz, fs=fs), fs)
    assert peak_hz == pytest.approx(expected_line_hz(mode, shaft_hz), rel=0.01)


def test_envelope_peak_at_51_2_khz_and_low_severity() -> None:
    """A 51.2 kHz sensor works, and a faint (severity 0.1) outer-race defect still shows."""
    shaft_hz = 1772 / 60
    x = one("outer", shaft_hz, fs=51200.0, severity=0.1)
    assert x.shape == (51200,) and np.all(np.isfinite(x))
    assert envelope_peak_hz(x, 51200.0) == pytest.approx(expected_line_hz("outer", shaft_hz),
                                                         rel=0.01)


@settings(max_examples=20, deadline=None)
@given(mode=st.sampled_from(["outer", "inner", "ball"]),
       rpm=st.floats(900.0, 3600.0),
       fs=st.sampled_from([12000.0, 25600.0]),
       seed=st.integers(0, 2**32 - 1),
       t0_s=st.floats(0.0, 1e6))
def test_envelope_peak_property(mode: str, rpm: float, fs: float, seed: int, t0_s: float
                                ) -> None:
    """Any speed, seed and start time: the envelope peak sits within 1 % of the defect line.

    Below about 900 r/min the impacts are so sparse that the second envelope harmonic is
    nearly as tall as the first (as in real records), so "largest line" stops being the test.
    """
    shaft_hz = rpm / 60
    x = one(mode, shaft_hz, fs=fs, seconds=2.0, seed=seed, t0_s=t0_s)
    assert envelope_peak_hz(x, fs) == pytest.approx(expected_line_hz(mode, shaft_hz), rel=0.01)


def test_inner_race_has_shaft_sidebands() -> None:
    """Load-zone modulation: lines at BPFI +/- 1x stand well above the floor between them."""
    shaft_hz, fs = 1797 / 60, 12000.0
    x = one("inner", shaft_hz, fs=fs, seconds=2.0)
    sos = butter(4, RESONANCE_BAND_HZ, "bandpass", fs=fs, output="sos")
    envelope = np.abs(hilbert(sosfiltfilt(sos, x)))
    bpfi = SKF_6205.frequencies(shaft_hz)["bpfi"]
    upper, lower = line_g(envelope, fs, bpfi + shaft_hz), line_g(envelope, fs, bpfi - shaft_hz)
    floor = line_g(envelope, fs, bpfi + shaft_hz / 2)
    assert upper > 4 * floor and lower > 4 * floor


# -- shaft faults in the plain spectrum -----------------------------------------------------

SHAFT_HZ = 1450 / 60


def test_imbalance_1x_dominates() -> None:
    fs = 12000.0
    x = one("imbalance", SHAFT_HZ, fs=fs, seconds=2.0, severity=0.8)
    one_x = line_g(x, fs, SHAFT_HZ)
    assert one_x == pytest.approx(0.02 + 0.8 * 0.25, rel=0.05)
    for order in (0.5, 1.5, 2, 3, 4, 5):
        assert one_x > 10 * line_g(x, fs, order * SHAFT_HZ)


def test_misalignment_2x_exceeds_1x() -> None:
    fs = 12000.0
    x = one("misalignment", SHAFT_HZ, fs=fs, seconds=2.0, severity=0.8)
    two_x = line_g(x, fs, 2 * SHAFT_HZ)
    assert two_x > 1.5 * line_g(x, fs, SHAFT_HZ)
    assert two_x > line_g(x, fs, 3 * SHAFT_HZ) > 0.03


def test_looseness_has_many_harmonics_and_half_harmonics() -> None:
    fs = 12000.0
    loose = one("looseness", SHAFT_HZ, fs=fs, seconds=2.0, severity=0.8)
    healthy = one(None, SHAFT_HZ, fs=fs, seconds=2.0)
    strong = [k for k in range(1, 11) if line_g(loose, fs, k * SHAFT_HZ) > 0.02]
    assert len(strong) >= 6
    assert all(line_g(loose, fs, h * SHAFT_HZ) > 0.01 for h in (0.5, 1.5, 2.5))
    assert [k for k in range(2, 11) if line_g(healthy, fs, k * SHAFT_HZ) > 0.02] == []  # 1x: 0.02
    assert all(line_g(healthy, fs, h * SHAFT_HZ) < 0.005 for h in (0.5, 1.5, 2.5))


def test_shaft_phase_follows_t0() -> None:
    """A record starting one revolution later is the same; half a revolution, it is not."""
    def quiet(t0_s: float) -> np.ndarray:
        return one("misalignment", SHAFT_HZ, seconds=0.2, t0_s=t0_s, noise_g=0.0,
                   resonance_noise_g=0.0)

    start, one_rev, half_rev = quiet(100.0), quiet(100 + 1 / SHAFT_HZ), quiet(100 + 0.5 / SHAFT_HZ)
    np.testing.assert_allclose(one_rev, start, atol=1e-9)
    assert np.max(np.abs(half_rev - start)) > 0.05


# -- severity, growth, determinism, a stopped shaft ---------------------------------------


@pytest.mark.parametrize("mode", ["outer", "inner", "ball", "imbalance", "misalignment",
                                  "looseness"])
def test_rms_grows_with_severity(mode: str) -> None:
    levels = [rms(one(mode, SHAFT_HZ, severity=s)) for s in (0.0, 0.1, 0.4, 1.0)]
    assert levels == sorted(levels) and levels[-1] > 2 * levels[0]


def test_growth_raises_severity_until_1() -> None:
    """Run to failure: severity(t) = min(1, severity + growth_per_s * (t - started_s))."""
    fault = Fault(1, "bearing", "vib_de", {"mode": "outer", "severity": 0.1,
                                           "growth_per_s": 0.05}, started_s=10.0)
    assert FaultSpec.from_fault(fault, 10.0).severity == pytest.approx(0.1)
    assert FaultSpec.from_fault(fault, 20.0).severity == pytest.approx(0.6)
    assert FaultSpec.from_fault(fault, 100.0).severity == 1.0

    sensor = VibrationSensor(seed=4, capture_interval_s=5.0)
    severities: list[float] = []
    levels: list[float] = []
    for tick in range(101, 400):
        sensor.advance(tick / 10, 0.1, SHAFT_HZ, [fault])
        if sensor.capture_counter > len(levels):
            severities.append(sensor.describe()["faults"][0]["severity"])
            levels.append(rms(sensor.capture))
    assert len(levels) == 6 and severities == sorted(severities) and severities[-1] == 1.0
    assert levels[-1] > 3 * levels[0]


def test_deterministic_for_a_seed() -> None:
    faults = [FaultSpec("inner", 0.7), FaultSpec("looseness", 0.3)]
    first = synthesize(12000, 12000.0, 5.0, SHAFT_HZ, faults, np.random.default_rng(9))
    again = synthesize(12000, 12000.0, 5.0, SHAFT_HZ, faults, np.random.default_rng(9))
    other = synthesize(12000, 12000.0, 5.0, SHAFT_HZ, faults, np.random.default_rng(10))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)

    def captures(seed: int) -> list[np.ndarray]:
        sim = Sim(seed=seed)
        sim.faults.add("bearing", "vib_de", mode="ball", severity=0.6)
        out: list[np.ndarray] = []
        for _ in range(25):
            sim.step(0.1)
            if sim.vibration.capture_counter > len(out):
                out.append(sim.vibration.capture)
        return out

    assert all(np.array_equal(a, b) for a, b in zip(captures(3), captures(3), strict=True))


def test_stopped_shaft_gives_noise_only() -> None:
    """No shaft speed: every fault falls silent; what is left is Gaussian noise."""
    every = [FaultSpec(mode, 1.0) for mode in ("outer", "inner", "ball", "imbalance",
                                               "misalignment", "looseness")]
    stopped = synthesize(24000, 12000.0, 3.0, 0.0, every, np.random.default_rng(5))
    healthy_stopped = synthesize(24000, 12000.0, 3.0, 0.0, [], np.random.default_rng(5))
    np.testing.assert_array_equal(stopped, healthy_stopped)
    assert rms(stopped) == pytest.approx(np.hypot(0.03, 0.015), rel=0.1)
    assert kurtosis(stopped, fisher=False) == pytest.approx(3.0, abs=0.3)
    assert abs(float(np.mean(stopped))) < 1e-3
    running = synthesize(24000, 12000.0, 3.0, SHAFT_HZ, every, np.random.default_rng(5))
    assert kurtosis(running, fisher=False) > 4  # impacts make a running faulty bearing spiky


def test_synthesis_is_cheap() -> None:
    """Target: well under 6 ms of CPU per second of 25.6 kHz signal (loose bound here)."""
    faults = [FaultSpec(mode, 0.5) for mode in ("outer", "inner", "ball", "looseness")]
    rng = np.random.default_rng(0)
    costs = []
    for i in range(5):
        started = time.process_time()
        synthesize(25600, 25600.0, float(i), 29.95, faults, rng)
        costs.append(time.process_time() - started)
    assert min(costs) < 0.015


# -- the sensor in a Sim --------------------------------------------------------------------


def new_capture(sim: Sim) -> np.ndarray:
    """Step the sim until the sensor makes its next capture."""
    counter = sim.vibration.capture_counter
    for _ in range(1000):
        sim.step(0.1)
        if sim.vibration.capture_counter == counter + 1:
            return sim.vibration.capture
    raise AssertionError("no new capture")


def test_sim_capture_shows_bpfo_at_plant_speed() -> None:
    sim = Sim(seed=11)
    sim.faults.add("bearing", "vib_de", mode="outer", severity=0.8)
    vib = sim.vibration
    capture = new_capture(sim)
    assert capture.dtype == np.float64 and capture.shape == (vib.capture_samples,)
    bpfo = SKF_6205.frequencies(sim.plant.speed_rpm / 60)["bpfo"]
    assert envelope_peak_hz(capture, vib.sample_rate_hz) == pytest.approx(bpfo, rel=0.01)

    assert sim.write("test", "speed", "speed_setpoint_rpm", 1750.0).accepted
    while sim.plant.speed_rpm != 1750.0:
        sim.step(0.1)
    capture = new_capture(sim)
    bpfo = SKF_6205.frequencies(1750.0 / 60)["bpfo"]
    assert envelope_peak_hz(capture, vib.sample_rate_hz) == pytest.approx(bpfo, rel=0.01)
    described = sim.state()["vibration"]
    assert json.loads(json.dumps(described)) == described
    assert described["faults"] == [{"mode": "outer", "severity": 0.8}]
    assert described["bearing"]["bpfo_hz"] == pytest.approx(bpfo, abs=1e-3)


def test_sensor_captures_once_per_interval_on_a_fixed_grid() -> None:
    sim = Sim(seed=2)
    for _ in range(50):
        sim.step(0.1)
    assert sim.vibration.capture_counter == 5  # the first tick, then one per second of plant time


def test_sensor_ignores_other_targets_and_reports_bad_faults() -> None:
    """A fault for another sensor changes nothing; a malformed one is listed, not raised."""
    plain, other = VibrationSensor(seed=8), VibrationSensor(seed=8)
    elsewhere = Fault(1, "bearing", "vib_nde", {"mode": "imbalance", "severity": 1.0}, 0.0)
    bad = Fault(2, "bearing", "vib_de", {"mode": "cage"}, 0.0)
    plain.advance(0.1, 0.1, SHAFT_HZ, [])
    other.advance(0.1, 0.1, SHAFT_HZ, [elsewhere, bad])
    np.testing.assert_array_equal(plain.capture, other.capture)
    ignored = other.describe()["ignored_faults"]
    assert [entry["id"] for entry in ignored] == [2] and "cage" in ignored[0]["reason"]


def test_sensor_accepts_fault_specs_directly() -> None:
    sensor = VibrationSensor(seed=1, sample_rate_hz=25600.0, capture_samples=25600)
    sensor.advance(1.0, 0.1, 1797 / 60, [FaultSpec("inner", 0.6)])
    assert envelope_peak_hz(sensor.capture, 25600.0) == pytest.approx(
        expected_line_hz("inner", 1797 / 60), rel=0.01)
