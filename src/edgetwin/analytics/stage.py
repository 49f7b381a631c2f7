"""The analytics stages between the sources and the twin: vibration features, anomaly scores.

Invariants:
- FFT work runs in one worker thread, off the event loop; each waveform point has at most
  one waveform in work and one waiting (the newest): a waveform that cannot be processed in
  time replaces the waiting one and is counted as skipped, so nothing queues without bound;
- every feature of a processed waveform becomes a sample with the waveform's timestamp:
  its value when computed, BAD with the reason when not (a bad waveform, a feature the
  signal cannot give) — never a silent default;
- scores come only from trusted inputs (the scorer says why not, as a BAD score point).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edgetwin.config.model import AnomalyConfig, VibrationConfig
from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import PointState, Quality, Record, Sample, asset_of
from edgetwin.telemetry import Telemetry

if TYPE_CHECKING:
    from edgetwin.analytics.anomaly import AnomalyScorer
    from edgetwin.analytics.vibration import VibrationPlan

log = structlog.get_logger("edgetwin.analytics")

Deliver = Callable[[Sequence[Sample]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WaveformSource:
    """What the stage must know of a waveform point: its sample rate and unit."""

    sample_rate_hz: float
    unit: str | None


def plan_for(entry: VibrationConfig, source: WaveformSource) -> VibrationPlan:
    """The analysis plan of one entry on its waveform point (``ConfigError`` if unusable)."""
    from edgetwin.analytics.vibration import accel_unit, build_plan

    return build_plan(entry, source.sample_rate_hz, unit=accel_unit(source.unit))


def feature_points(entry: VibrationConfig, source: WaveformSource) -> list[str]:
    """The twin points a ``vibration:`` entry produces: ``<asset>/<point>.<feature>``."""
    return [f"{entry.point}.{name}" for name in plan_for(entry, source).feature_names]


class VibrationStage:
    """Waveform samples in, feature samples out through ``deliver``."""

    def __init__(self, entries: Sequence[VibrationConfig], sources: Mapping[str, WaveformSource],
                 telemetry: Telemetry, deliver: Deliver,
                 speed_of: Callable[[str], float | None]) -> None:
        self._plans: dict[str, VibrationPlan] = {}
        self._entries = {e.point: e for e in entries}
        for entry in entries:
            self._plans[entry.point] = plan_for(entry, sources[entry.point])
        self._deliver = deliver
        self._speed_of = speed_of
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="vibration")
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._waiting: dict[str, Sample] = {}
        self._telemetry = telemetry
        self._processed = telemetry.counter(
            "edgetwin_vibration_waveforms_total", "Waveforms turned into features", ("point",))
        self._skipped = telemetry.counter(
            "edgetwin_vibration_skipped_total",
            "Waveforms replaced by a newer one before they could be processed", ("point",))
        self._seconds = telemetry.histogram(
            "edgetwin_vibration_seconds", "Feature extraction time per waveform", ("point",))

    def handles(self, point: str) -> bool:
        """Whether ``point`` is a waveform this stage analyses."""
        return point in self._plans

    def offer(self, sample: Sample) -> None:
        """Take one waveform; it is processed soon, or replaced by a newer one (counted)."""
        point = sample.point
        if point in self._busy:
            if point in self._waiting:
                self._skipped.labels(point).inc()
            self._waiting[point] = sample
            return
        self._start(sample)

    def _start(self, sample: Sample) -> None:
        task = asyncio.get_running_loop().create_task(self._process(sample),
                                                      name=f"vibration[{sample.point}]")
        self._busy[sample.point] = task
        task.add_done_callback(functools.partial(self._done, sample.point))

    def _done(self, point: str, _task: asyncio.Task[None]) -> None:
        self._next(point)

    def _next(self, point: str) -> None:
        self._busy.pop(point, None)
        waiting = self._waiting.pop(point, None)
        if waiting is not None:
            self._start(waiting)

    async def _process(self, sample: Sample) -> None:
        from edgetwin.analytics.vibration import FeatureError, extract

        plan = self._plans[sample.point]
        names = plan.feature_names
        out: list[Sample] = []
        if sample.quality is Quality.BAD or sample.value is None:
            out = [Sample(f"{sample.point}.{n}", None, Quality.BAD, sample.ts_ns) for n in names]
        else:
            shaft_point = self._entries[sample.point].machine.shaft_hz_point
            shaft_hz = self._speed_of(shaft_point) if shaft_point else None
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                features = await loop.run_in_executor(self._thread, extract, plan,
                                                      sample.value, shaft_hz)
            except FeatureError as err:
                self._telemetry.emit_error("vibration", err.code, "extract", err,
                                           point=sample.point, log=False)
                out = [Sample(f"{sample.point}.{n}", None, Quality.BAD, sample.ts_ns)
                       for n in names]
            else:
                self._seconds.labels(sample.point).observe(loop.time() - started)
                self._processed.labels(sample.point).inc()
                quality = sample.quality
                for name in names:
                    value = features.values.get(name)
                    out.append(Sample(f"{sample.point}.{name}", value,
                                      quality if value is not None else Quality.BAD,
                                      sample.ts_ns))
        await self._deliver(out)

    async def close(self) -> None:
        """Stop: cancel the work in hand and the worker thread."""
        self._waiting.clear()
        for task in list(self._busy.values()):
            await cancel_and_wait(task)
        self._thread.shutdown(wait=False, cancel_futures=True)


def score_points(scorer: AnomalyScorer) -> tuple[str, str]:
    """The twin points of one model: its score and its alarm state."""
    asset = scorer.asset or "gateway"
    return f"{asset}/anomaly.{scorer.name}.score", f"{asset}/anomaly.{scorer.name}.alarm"


def anomaly_points(entries: Sequence[AnomalyConfig]) -> list[str]:
    """The score and alarm points every ``anomaly:`` entry adds to the twin."""
    out = []
    for entry in entries:
        assets = {asset_of(p) for p in entry.inputs}
        asset = assets.pop() if len(assets) == 1 else "gateway"
        out += [f"{asset}/anomaly.{entry.name}.score", f"{asset}/anomaly.{entry.name}.alarm"]
    return out


class AnomalyStage:
    """Scores each model whenever one of its inputs changed in the twin."""

    def __init__(self, entries: Sequence[AnomalyConfig], telemetry: Telemetry,
                 base_dir: Path) -> None:
        """Load every model (``ModelError`` names the one that cannot be used)."""
        from edgetwin.analytics.anomaly import AnomalyScorer

        self.scorers: list[AnomalyScorer] = []
        for entry in entries:
            path = entry.model if entry.model.is_absolute() else base_dir / entry.model
            self.scorers.append(AnomalyScorer(entry, telemetry, model_path=path))
        self._by_input: dict[str, list[AnomalyScorer]] = {}
        for scorer in self.scorers:
            for point in scorer.inputs:
                self._by_input.setdefault(point, []).append(scorer)

    def update(self, changed: Iterable[str], state_of: Callable[[str], PointState | None]
               ) -> tuple[list[Sample], list[Record]]:
        """Score the models whose inputs changed: score samples and alarm records."""
        touched: dict[int, AnomalyScorer] = {}
        for point in changed:
            for scorer in self._by_input.get(point, ()):
                touched[id(scorer)] = scorer
        samples: list[Sample] = []
        records: list[Record] = []
        for scorer in touched.values():
            result = scorer.update({p: state_of(p) for p in scorer.inputs})
            if result is None:
                continue
            score_point, alarm_point = score_points(scorer)
            samples.append(Sample(score_point, result.score, result.quality, result.ts_ns))
            samples.append(Sample(alarm_point, result.alarm_active, Quality.GOOD, result.ts_ns))
            if result.event is not None:
                records.append(result.event.record())
        return samples, records

    def reload(self) -> dict[str, str]:
        """Re-read every model file (SIGHUP); returns each model's sha256 now."""
        out = {}
        for scorer in self.scorers:
            try:
                out[scorer.name] = scorer.reload()
            except Exception as err:  # a bad new file keeps the old model; say so
                log.error("Model reload failed; keeping the loaded one", model=scorer.name,
                          error=str(err))
                out[scorer.name] = scorer.sha256
        return out

    def status(self) -> list[dict[str, Any]]:
        """Each model's state for ``edgetwin status``."""
        return [scorer.status() for scorer in self.scorers]
