"""Vibration features of healthy pump runs from firmware-sim's model, as a CSV for training.

``edgetwin train --csv`` fits the default anomaly model (``config/models/pump1_bearing``) on
the file this writes: one row per 4,096-sample capture of the drive-end accelerometer, one
column per feature point (``pump1/vib_de.velocity_rms`` ...), the shaft speed drawn from the
skid's operating range so the model knows that healthy vibration grows with speed.

PROVISIONAL FEATURES: the gateway's own feature code (``edgetwin.analytics.vibration``) is
being written on another branch. Until it lands, ``features`` below computes the four inputs
of the default model the way the issue defines them (velocity RMS 10-1000 Hz by frequency-domain
integration, 3-based kurtosis, Hilbert envelope amplitudes at BPFO/BPFI). When it lands,
replace ``features`` with calls to it and retrain with the command in the README: a model is
only valid for the exact feature definitions it was trained on.

``--fault MODE:SEVERITY`` writes rows of a faulty machine instead, to check what the model
detects (``hil/bench/bench_anomaly.py`` does not need it; the README's detection table does).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np
from scipy import signal, stats

from plcsim.vibration import MODES, SKF_6205, BearingGeometry, FaultSpec, synthesize

POINT = "pump1/vib_de"
FEATURES = ("velocity_rms", "kurtosis", "bpfo", "bpfi")
SAMPLE_RATE_HZ = 12000.0  # firmware-sim's drive-end sensor, as the gateway reads it
WINDOW_SAMPLES = 4096  # vibration[].window in config/example.yaml
ENVELOPE_BAND_HZ = (2000.0, 5000.0)  # vibration[].envelope_band in config/example.yaml
VELOCITY_BAND_HZ = (10.0, 1000.0)  # ISO 10816-3 for machines above 600 r/min
SLIP_TOLERANCE = 0.02  # real defect lines sit 1-2 % off the formula
STANDARD_GRAVITY = 9.80665


def velocity_rms_mm_s(accel_g: np.ndarray, fs_hz: float) -> float:
    """Velocity RMS in mm/s over 10-1000 Hz from one Hann-windowed FFT."""
    accel = (accel_g - accel_g.mean()) * STANDARD_GRAVITY
    window = np.hanning(accel.size)
    spectrum = np.fft.rfft(accel * window)
    freq_hz = np.fft.rfftfreq(accel.size, 1.0 / fs_hz)
    band = (freq_hz >= VELOCITY_BAND_HZ[0]) & (freq_hz <= VELOCITY_BAND_HZ[1])
    power = np.abs(spectrum[band]) ** 2 / (2 * np.pi * freq_hz[band]) ** 2
    v_ms = math.sqrt(2.0 / (accel.size * float(np.sum(window**2))) * float(np.sum(power)))
    return v_ms * 1000.0


def envelope_amplitudes_g(accel_g: np.ndarray, fs_hz: float,
                          lines_hz: dict[str, float]) -> dict[str, float]:
    """Peak amplitude (g) of the envelope spectrum within the slip tolerance of each line."""
    sos = signal.butter(4, ENVELOPE_BAND_HZ, "bandpass", fs=fs_hz, output="sos")
    envelope = np.abs(signal.hilbert(signal.sosfiltfilt(sos, accel_g)))
    envelope -= envelope.mean()
    window = np.hanning(envelope.size)
    amplitude = 2.0 * np.abs(np.fft.rfft(envelope * window)) / float(np.sum(window))
    freq_hz = np.fft.rfftfreq(envelope.size, 1.0 / fs_hz)
    resolution_hz = fs_hz / envelope.size
    out = {}
    for name, line_hz in lines_hz.items():
        half = max(SLIP_TOLERANCE * line_hz, resolution_hz)
        near = (freq_hz >= line_hz - half) & (freq_hz <= line_hz + half)
        out[name] = float(amplitude[near].max())
    return out


def features(accel_g: np.ndarray, fs_hz: float, shaft_hz: float,
             geometry: BearingGeometry = SKF_6205) -> dict[str, float]:
    """The default model's four inputs for one capture (provisional; see the module doc)."""
    defect_hz = geometry.frequencies(shaft_hz)
    lines = envelope_amplitudes_g(accel_g, fs_hz, {k: defect_hz[k] for k in ("bpfo", "bpfi")})
    return {
        "velocity_rms": velocity_rms_mm_s(accel_g, fs_hz),
        "kurtosis": float(stats.kurtosis(accel_g, fisher=False)),  # Gaussian = 3
        "bpfo": lines["bpfo"],
        "bpfi": lines["bpfi"],
    }


def rows(count: int, seed: int, speed_rpm: tuple[float, float],
         faults: list[FaultSpec]) -> list[dict[str, float]]:
    """``count`` captures at speeds drawn uniformly from ``speed_rpm``, seeded."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        shaft_hz = rng.uniform(*speed_rpm) / 60.0
        t0_s = rng.uniform(0.0, 86400.0)  # any moment of a day: the shaft phase varies
        accel_g = synthesize(WINDOW_SAMPLES, SAMPLE_RATE_HZ, t0_s, shaft_hz, faults, rng)
        out.append(features(accel_g, SAMPLE_RATE_HZ, shaft_hz))
    return out


def _fault(text: str) -> FaultSpec:
    mode, _, severity = text.partition(":")
    if mode not in MODES:
        raise argparse.ArgumentTypeError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    return FaultSpec(mode, float(severity or 0.5))


def _speed_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    return float(low), float(high or low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--speed-rpm", type=_speed_range, default=(1200.0, 1650.0),
                        help="LOW:HIGH shaft speed range (default 1200:1650, nominal 1450)")
    parser.add_argument("--fault", type=_fault, action="append", default=[],
                        help="MODE:SEVERITY, e.g. outer:0.1 (repeatable; default: healthy)")
    parser.add_argument("--out", type=Path, help="CSV file (default: stdout)")
    args = parser.parse_args(argv)
    data = rows(args.rows, args.seed, args.speed_rpm, args.fault)
    columns = [f"{POINT}.{name}" for name in FEATURES]
    with (args.out.open("w", newline="") if args.out else sys.stdout) as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for row in data:
            writer.writerow([f"{row[name]:.6g}" for name in FEATURES])
    return 0


if __name__ == "__main__":
    sys.exit(main())
