"""Per-window cost of the vibration features next to a bare rfft + hilbert of the same window.

For 4,096 and 16,384 samples of a firmware-sim waveform (12 kHz, outer-race defect) it
times, on one core:

- the baseline: ``numpy.fft.rfft`` of the windowed samples plus ``scipy.signal.hilbert`` of
  the samples, the least any envelope analysis does;
- ``extract`` with every feature of a ``vibration:`` entry (time domain, velocity and ISO
  zone, 1x-3x, bearing lines with two harmonics, bands), the speed given, then estimated;
- ``extract`` with the time-domain and velocity features only.

Goal: the full set within 3x the baseline. Each figure is CPU time, the median of many
batches, so one busy moment of the machine does not decide it. Prints one human line per
window and one JSON line for machines.
"""
# ruff: noqa: E402  (the thread limits must be set before numpy is imported)

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy is imported: one core, comparable runs

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy
from scipy.signal import hilbert

from edgetwin.analytics.vibration import build_plan, extract
from edgetwin.config.model import VibrationConfig
from plcsim.vibration import FaultSpec, synthesize

SAMPLE_RATE_HZ = 12000.0
SHAFT_HZ = 1450.0 / 60.0
GOAL_RATIO = 3.0
EVERYTHING = ("rms", "peak", "peak_to_peak", "crest", "kurtosis", "skewness", "velocity_rms",
              "iso_zone", "bpfo", "bpfi", "bsf", "ftf", "harmonics_1x_3x", "band_energy")
TIME_AND_VELOCITY = ("rms", "peak", "peak_to_peak", "crest", "kurtosis", "skewness",
                     "velocity_rms", "iso_zone")


def per_call_us(action: Callable[[], object], seconds: float) -> float:
    """CPU time of one call in microseconds: the median over batches of about 20 ms each.

    CPU time (``process_time``) rather than wall time, so that other processes on a busy
    machine do not count; the median, so that one batch hit by cache-cold moments does not.
    """
    action()  # warm caches and FFT plans
    started = time.process_time()
    calls = 0
    while time.process_time() - started < 0.02:
        action()
        calls += 1
    batch = max(1, calls)
    samples = []
    deadline = time.process_time() + seconds
    while time.process_time() < deadline or len(samples) < 5:
        begin = time.process_time()
        for _ in range(batch):
            action()
        samples.append((time.process_time() - begin) / batch * 1e6)
    return statistics.median(samples)


def entry(window: int, features: tuple[str, ...]) -> VibrationConfig:
    return VibrationConfig(point="pump1/vib_de", window=window, features=features,
                           bearing={"n_balls": 9, "ball_diameter": 7.94,
                                    "pitch_diameter": 39.04},
                           envelope_band=(2000.0, 5000.0))


def run(window: int, seconds: float) -> dict[str, Any]:
    """Time the baseline and the feature cases for one window length."""
    waveform = synthesize(window, SAMPLE_RATE_HZ, 12.3, SHAFT_HZ, [FaultSpec("outer", 0.5)],
                          np.random.default_rng(1))
    waveform = np.clip(np.rint(waveform / 0.001), -32768, 32767) * 0.001  # as read
    started = time.perf_counter()
    full = build_plan(entry(window, EVERYTHING), SAMPLE_RATE_HZ)
    plan_ms = (time.perf_counter() - started) * 1000
    light = build_plan(entry(window, TIME_AND_VELOCITY), SAMPLE_RATE_HZ)
    hann = full.window

    def baseline() -> None:
        np.fft.rfft(waveform * hann)
        hilbert(waveform)

    base_us = per_call_us(baseline, seconds)
    given_us = per_call_us(lambda: extract(full, waveform, SHAFT_HZ), seconds)
    estimated_us = per_call_us(lambda: extract(full, waveform, None), seconds)
    light_us = per_call_us(lambda: extract(light, waveform, None), seconds)
    features = extract(full, waveform, None)
    return {
        "window": window, "sample_rate_hz": SAMPLE_RATE_HZ, "plan_ms": round(plan_ms, 2),
        "features": len(full.feature_names), "baseline_us": round(base_us, 1),
        "all_given_speed_us": round(given_us, 1),
        "all_estimated_speed_us": round(estimated_us, 1),
        "time_and_velocity_us": round(light_us, 1),
        "ratio_given": round(given_us / base_us, 2),
        "ratio_estimated": round(estimated_us / base_us, 2),
        "goal_ratio": GOAL_RATIO,
        "within_goal": max(given_us, estimated_us) <= GOAL_RATIO * base_us,
        "estimated_shaft_hz": round(features.values.get("shaft_hz", float("nan")), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="measuring time per case (default 1 s)")
    args = parser.parse_args()
    results = [run(window, args.seconds) for window in (4096, 16384)]
    for r in results:
        print(f"vibration {r['window']:>6} samples: baseline rfft+hilbert {r['baseline_us']:7.1f}"
              f" us | all {r['features']} features {r['all_given_speed_us']:7.1f} us"
              f" ({r['ratio_given']:.2f}x), speed estimated {r['all_estimated_speed_us']:7.1f}"
              f" us ({r['ratio_estimated']:.2f}x) | time+velocity {r['time_and_velocity_us']:6.1f}"
              f" us | plan {r['plan_ms']:.1f} ms | goal <= {GOAL_RATIO:g}x:"
              f" {'met' if r['within_goal'] else 'MISSED'}")
    print(json.dumps({"bench": "vibration", "python": platform.python_version(),
                      "numpy": np.__version__, "scipy": scipy.__version__,
                      "machine": platform.machine(), "results": results}))


if __name__ == "__main__":
    main()
