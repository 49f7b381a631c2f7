"""Scoring one configured anomaly model from twin state, with its alarm.

The daemon owns one ``AnomalyScorer`` per ``anomaly:`` entry and calls ``update`` with the
twin's state of the model's inputs after every twin batch that changed one of them. The
scorer refuses to guess: an input that is missing, BAD, STALE or not a finite number gives
a result without a score (quality BAD, with the reason), never a score from a default.

Invariants:
- one score per distinct set of input versions: calling ``update`` again with the same
  states returns None, so calling it once per changed input point is harmless;
- in shadow mode no ``AlarmEvent`` is ever produced (``would_alarm`` still tells what the
  alarm would be doing, to compare a candidate model with the live one);
- a failed ``reload`` leaves the running model in place.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import structlog
from structlog.typing import FilteringBoundLogger

from edgetwin.analytics.anomaly.alarm import AlarmMachine, Transition
from edgetwin.analytics.anomaly.model import LoadedModel, load
from edgetwin.config.model import AnomalyConfig
from edgetwin.core.types import PointState, Quality, Record, RecordKind, asset_of
from edgetwin.telemetry import Telemetry

_log: FilteringBoundLogger = structlog.get_logger("edgetwin.analytics.anomaly")

INFERENCE_SECONDS: Final = "edgetwin_anomaly_inference_seconds"
SCORES_TOTAL: Final = "edgetwin_anomaly_scores_total"
INFERENCE_BUCKETS_S: Final = (
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 10e-3, 50e-3,
)
"""One vector through a small model takes tens of microseconds; a big forest, milliseconds."""

_SCORED = (Quality.GOOD, Quality.UNCERTAIN)


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """An anomaly alarm raised or cleared; ``record()`` is what goes on the alarms topic."""

    model: str  # the anomaly entry's name
    active: bool  # True: raised; False: cleared
    asset: str  # the inputs' asset, or "" when they span several
    ts_ns: int
    score: float | None  # None for a clear without a score (``retire``)
    threshold: float
    sha256: str
    message: str
    inputs: Mapping[str, float] = field(default_factory=dict)  # the values scored
    # Each input's robust z-score against its healthy centre: which input drove the score.
    deviations: Mapping[str, float] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON-able alarm body, shaped like the gateway's other alarms."""
        return {
            "alarm": self.model,
            "active": self.active,
            "source": "anomaly",
            "message": self.message,
            "score": self.score,
            "threshold": self.threshold,
            "sha256": self.sha256,
            "inputs": dict(self.inputs),
            "deviations": dict(self.deviations),
        }

    def record(self) -> Record:
        """The outbox record for this event."""
        return Record(RecordKind.ALARM, self.asset, self.ts_ns, self.body())


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """The outcome of one ``update``: a score (GOOD or UNCERTAIN) or why there is none (BAD)."""

    model: str
    ts_ns: int  # the newest input's timestamp: the moment the score describes
    quality: Quality  # GOOD; UNCERTAIN when an input was; BAD: no score, see ``reason``
    score: float | None
    reason: str | None
    threshold: float
    above: bool | None  # score > threshold; None without a score
    alarm_active: bool  # the published alarm state; always False in shadow mode
    would_alarm: bool  # the hysteresis state in any mode (equals alarm_active unless shadow)
    event: AlarmEvent | None  # a raise or clear to publish; always None in shadow mode
    shadow: bool
    sha256: str
    latency_s: float | None  # onnxruntime's run for this vector


class AnomalyScorer:
    """One configured model: scoring from twin state, hysteresis, shadow mode, reload.

    Calling contract: ``update`` and ``retire`` are called by one thread at a time (the
    daemon's analytics executor, or the event loop). ``reload`` may run on another thread
    while an ``update`` is in flight: it builds the new model aside and swaps it in with
    one assignment, so an update uses the old model or the new one, never a mix, and the
    next update notices the swap by itself.

    Args:
        config: The ``anomaly:`` entry.
        telemetry: The daemon's metrics; the inference latency histogram is created here.
        model_path: The model file when ``config.model`` is relative to somewhere other
            than the working directory (the daemon resolves it).

    Raises:
        ModelError: The model or its manifest is unusable (see ``model.load``).
    """

    def __init__(self, config: AnomalyConfig, telemetry: Telemetry, *,
                 model_path: Path | None = None) -> None:
        self._config = config
        self._path = model_path or config.model
        self._model: LoadedModel = load(self._path, config.inputs)
        hysteresis = config.hysteresis
        self._alarm = AlarmMachine(hysteresis.raise_after, hysteresis.clear_after)
        assets = {asset_of(p) for p in config.inputs}
        self.asset = assets.pop() if len(assets) == 1 else ""
        self._last_key: tuple[object, ...] | None = None  # the model and input versions
        self._runs_model = self._model  # the model whose scores the alarm's runs count
        self._last: ScoreResult | None = None
        self._last_values: dict[str, float] = {}
        self._latency = telemetry.histogram(
            INFERENCE_SECONDS, "Time of one anomaly model inference (one vector).",
            labels=("model",), buckets=INFERENCE_BUCKETS_S,
        ).labels(model=config.name)
        self._scores = telemetry.counter(
            SCORES_TOTAL, "Anomaly model updates by outcome quality (BAD: no score).",
            labels=("model", "quality"),
        )
        self._alarm_gauge = telemetry.gauge(
            "edgetwin_anomaly_alarm", "1 while the anomaly alarm is raised (never in shadow).",
            labels=("model",),
        ).labels(model=config.name)
        self._log_loaded("Anomaly model loaded")

    # -- what the daemon reads ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The anomaly entry's name."""
        return self._config.name

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input point ids, in the model's order."""
        return self._config.inputs

    @property
    def sha256(self) -> str:
        """The sha256 of the model file being scored (for ``edgetwin status``)."""
        return self._model.sha256

    @property
    def shadow(self) -> bool:
        """Scores are reported but alarms never raised."""
        return self._config.shadow

    @property
    def alarm_active(self) -> bool:
        """The published alarm state (always False in shadow mode)."""
        return self._alarm.active and not self._config.shadow

    def status(self) -> dict[str, Any]:
        """A JSON-able summary for ``edgetwin status``."""
        last = self._last
        manifest = self._model.manifest
        return {
            "model": self.name,
            "path": str(self._path),
            "sha256": self.sha256,
            "shadow": self.shadow,
            "threshold": self._config.threshold,
            "trained_threshold": manifest.threshold,
            "alarm_active": self.alarm_active,
            "would_alarm": self._alarm.active,
            "score": None if last is None else last.score,
            "quality": None if last is None else last.quality.value,
            "reason": None if last is None else last.reason,
            "ts_ns": None if last is None else last.ts_ns,
        }

    # -- scoring -----------------------------------------------------------------------------

    def update(self, states: Mapping[str, PointState | None]) -> ScoreResult | None:
        """Score the inputs' current states; None when they are those scored last time.

        Args:
            states: The twin state of (at least) every input point; a missing key or None
                means the point has no state yet. Other keys are ignored.
        """
        model = self._model  # read once: a concurrent reload swaps the whole model
        picked = [states.get(point) for point in self._config.inputs]
        key = (model, *(None if s is None else (s.version, s.quality) for s in picked))
        if key == self._last_key:
            return None
        self._last_key = key
        if model is not self._runs_model:  # reloaded: runs start again, the state stays
            self._alarm.run_above = self._alarm.run_below = 0
            self._runs_model = model
        ts_ns = max((s.ts_ns for s in picked if s is not None), default=0) or time.time_ns()
        values, quality, reason = self._vector(picked)
        if values is None:
            return self._finish(self._no_score(ts_ns, reason or "no inputs"))
        started = time.perf_counter()
        score = float(model.score(values.reshape(1, -1))[0])
        latency_s = time.perf_counter() - started
        self._latency.observe(latency_s)
        if not math.isfinite(score):
            return self._finish(self._no_score(ts_ns, f"the model gave {score} for {values}"))
        self._last_values = dict(zip(self._config.inputs, values.tolist(), strict=True))
        threshold = self._config.threshold
        above = score > threshold
        transition = self._alarm.step(above)
        event = None
        if transition is not None:
            event = self._transition(transition, ts_ns, score, model)
        return self._finish(ScoreResult(
            model=self.name, ts_ns=ts_ns, quality=quality, score=score, reason=reason,
            threshold=threshold, above=above, alarm_active=self.alarm_active,
            would_alarm=self._alarm.active, event=event, shadow=self.shadow,
            sha256=model.sha256, latency_s=latency_s,
        ))

    def _vector(self, picked: Sequence[PointState | None]
                ) -> tuple[np.ndarray | None, Quality, str | None]:
        """The input values, or None and every reason they cannot be scored."""
        problems: list[str] = []
        uncertain: list[str] = []
        values = np.empty(len(picked), dtype=np.float64)
        for i, (point, state) in enumerate(zip(self._config.inputs, picked, strict=True)):
            if state is None:
                problems.append(f"{point} has no value yet")
            elif state.quality not in _SCORED:
                problems.append(f"{point} is {state.quality.value}")
            elif not isinstance(state.value, numbers.Real) or not math.isfinite(state.value):
                problems.append(f"{point} is not a finite number ({state.value!r:.40})")
            else:
                values[i] = float(state.value)
                if state.quality is Quality.UNCERTAIN:
                    uncertain.append(point)
        if problems:
            return None, Quality.BAD, "; ".join(problems)
        if uncertain:
            return values, Quality.UNCERTAIN, f"uncertain input: {', '.join(uncertain)}"
        return values, Quality.GOOD, None

    def _no_score(self, ts_ns: int, reason: str) -> ScoreResult:
        return ScoreResult(
            model=self.name, ts_ns=ts_ns, quality=Quality.BAD, score=None, reason=reason,
            threshold=self._config.threshold, above=None, alarm_active=self.alarm_active,
            would_alarm=self._alarm.active, event=None, shadow=self.shadow,
            sha256=self._model.sha256, latency_s=None,
        )

    def _finish(self, result: ScoreResult) -> ScoreResult:
        """Count the result and log when scoring stops or resumes (once each, not per score)."""
        self._scores.labels(model=self.name, quality=result.quality.value).inc()
        was_bad = self._last is not None and self._last.quality is Quality.BAD
        if result.quality is Quality.BAD and not was_bad:
            _log.warning("Anomaly model cannot score", model=self.name, reason=result.reason)
        elif result.quality is not Quality.BAD and was_bad:
            _log.info("Anomaly model scoring again", model=self.name)
        self._last = result
        return result

    def _transition(self, transition: Transition, ts_ns: int, score: float,
                    model: LoadedModel) -> AlarmEvent | None:
        raised = transition is Transition.RAISED
        threshold = self._config.threshold
        hysteresis = self._config.hysteresis
        if raised:
            message = (f"anomaly score {score:.4g} above {threshold:g} for"
                       f" {hysteresis.raise_after} consecutive scores")
        else:
            message = (f"anomaly score {score:.4g} at or below {threshold:g} for"
                       f" {hysteresis.clear_after} consecutive scores")
        if self._config.shadow:
            _log.info("Anomaly alarm would change (shadow model)", model=self.name,
                      would=transition.value, score=score, threshold=threshold)
            return None
        self._alarm_gauge.set(1 if raised else 0)
        (_log.warning if raised else _log.info)(
            f"Anomaly alarm {transition.value}", model=self.name, score=score,
            threshold=threshold, sha256=model.sha256,
        )
        values = np.array([self._last_values[p] for p in self._config.inputs])
        deviations = model.deviations(values).tolist()
        return AlarmEvent(
            model=self.name, active=raised, asset=self.asset, ts_ns=ts_ns, score=score,
            threshold=threshold, sha256=model.sha256, message=message,
            inputs=dict(self._last_values),
            deviations={p: round(z, 3) for p, z in zip(self._config.inputs, deviations,
                                                        strict=True)},
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def reload(self) -> str:
        """Load the model file and manifest again (SIGHUP); the new sha256.

        The alarm's state carries over (a raised alarm stays raised until the new model
        clears it); its runs of consecutive scores start again, and the next ``update``
        scores even if no input changed.

        Raises:
            ModelError: The new files are unusable; the running model is kept.
        """
        fresh = load(self._path, self._config.inputs)
        old = self._model.sha256
        self._model = fresh  # the only write: update() notices the new model by itself
        self._log_loaded("Anomaly model reloaded", previous_sha256=old)
        return fresh.sha256

    def retire(self, ts_ns: int, reason: str) -> AlarmEvent | None:
        """Clear a raised alarm because this scorer goes away (model removed, reconfigured).

        Returns the clear to publish, or None when no alarm was raised (or in shadow mode).
        """
        was_active = self.alarm_active
        self._alarm.reset()
        self._alarm_gauge.set(0)
        if not was_active:
            return None
        _log.info("Anomaly alarm cleared", model=self.name, reason=reason)
        return AlarmEvent(
            model=self.name, active=False, asset=self.asset, ts_ns=ts_ns, score=None,
            threshold=self._config.threshold, sha256=self._model.sha256,
            message=f"cleared: {reason}", inputs=dict(self._last_values),
        )

    def _log_loaded(self, event: str, **fields: Any) -> None:
        manifest = self._model.manifest
        _log.info(event, model=self.name, path=str(self._path), sha256=self._model.sha256,
                  shadow=self.shadow, threshold=self._config.threshold, **fields)
        if manifest.threshold != self._config.threshold:
            _log.warning(
                "Anomaly threshold differs from the one the model was trained for",
                model=self.name, threshold=self._config.threshold,
                trained_threshold=manifest.threshold,
            )
