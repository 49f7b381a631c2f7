"""The vibration stage: features per waveform off the loop, bounded, BAD when unusable."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from edgetwin.analytics.stage import VibrationStage, WaveformSource
from edgetwin.config.model import VibrationConfig, VibrationFeature
from edgetwin.core.types import Quality, Sample
from edgetwin.telemetry import Telemetry

ENTRY = VibrationConfig(point="pump1/vib", window=4096,
                        features=(VibrationFeature.RMS, VibrationFeature.VELOCITY_RMS))
SOURCE = {"pump1/vib": WaveformSource(12000.0, "g")}


def wave(amplitude_g: float, ts_ns: int) -> Sample:
    t = np.arange(4096) / 12000.0
    return Sample("pump1/vib", amplitude_g * np.sin(2 * np.pi * 100.0 * t), Quality.GOOD, ts_ns)


async def test_waveforms_become_feature_points_and_a_backlog_never_grows() -> None:
    """Three waveforms at once: the first is processed, the newest waiting one replaces.

    The one replaced is counted as skipped; nothing else queues.
    """
    delivered: list[Sequence[Sample]] = []
    done = asyncio.Event()

    async def deliver(samples: Sequence[Sample]) -> None:
        delivered.append(samples)
        if len(delivered) == 2:
            done.set()

    telemetry = Telemetry(process_metrics=False)
    stage = VibrationStage([ENTRY], SOURCE, telemetry, deliver, lambda _p: None)
    for i, amplitude in enumerate((1.0, 2.0, 3.0), start=1):
        stage.offer(wave(amplitude, i))
    await asyncio.wait_for(done.wait(), 10)
    await stage.close()
    first, second = ({s.point: s for s in batch} for batch in delivered)
    assert abs(first["pump1/vib.rms"].value - 1 / np.sqrt(2)) < 0.01
    assert abs(second["pump1/vib.rms"].value - 3 / np.sqrt(2)) < 0.03  # the 2.0 one was skipped
    assert second["pump1/vib.rms"].ts_ns == 3
    skipped = telemetry.registry.get_sample_value("edgetwin_vibration_skipped_total",
                                                  {"point": "pump1/vib"})
    assert skipped == 1


async def test_an_unusable_waveform_gives_bad_features_never_zeros() -> None:
    got: list[Sequence[Sample]] = []
    done = asyncio.Event()

    async def deliver(samples: Sequence[Sample]) -> None:
        got.append(samples)
        done.set()

    telemetry = Telemetry(process_metrics=False)
    stage = VibrationStage([ENTRY], SOURCE, telemetry, deliver, lambda _p: None)
    stage.offer(Sample("pump1/vib", np.full(4096, np.nan), Quality.GOOD, 7))
    await asyncio.wait_for(done.wait(), 10)
    await stage.close()
    assert {s.quality for s in got[0]} == {Quality.BAD}
    assert {s.value for s in got[0]} == {None}
    assert telemetry.errors_count("vibration", "non_finite") == 1
