"""AnomalyScorer with real onnxruntime: scores, no score without trusted inputs, alarms."""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.analytics.anomaly import (
    INFERENCE_SECONDS,
    AnomalyScorer,
    ModelError,
    ScoreResult,
    load,
    manifest_path,
)
from edgetwin.config.model import AnomalyConfig, Hysteresis
from edgetwin.core.types import PointState, Quality, RecordKind
from edgetwin.telemetry import Telemetry
from tests.analytics.test_anomaly_model import (
    DEFAULT_INPUTS,
    DEFAULT_MODEL,
    SMALL_INPUTS,
    small_model,
)

THRESHOLD = load(DEFAULT_MODEL).manifest.threshold
HEALTHY = (0.95, 2.97, 0.0016, 0.0015)  # mm/s, kurtosis, g, g: typical of the training data
OUTER_RACE = (0.93, 7.3, 0.049, 0.003)  # an outer-race defect at severity 0.1 (firmware-sim)
REPO = Path(__file__).resolve().parents[2]


def config(*, model: Path = DEFAULT_MODEL, inputs: Sequence[str] = DEFAULT_INPUTS,
           threshold: float = THRESHOLD, raise_after: int = 3, clear_after: int = 5,
           shadow: bool = False) -> AnomalyConfig:
    return AnomalyConfig(name="pump1-bearing", model=model, inputs=tuple(inputs),
                         threshold=threshold, shadow=shadow,
                         hysteresis=Hysteresis(raise_after=raise_after, clear_after=clear_after))


class Feeder:
    """Twin states for the scorer, with a fresh version per update as the twin gives."""

    def __init__(self, scorer: AnomalyScorer) -> None:
        self.scorer = scorer
        self.versions = itertools.count(1)

    def states(self, values: Sequence[object], quality: Quality = Quality.GOOD,
               ts_ns: int = 1_000) -> dict[str, PointState | None]:
        return {p: PointState(v, ts_ns, quality, next(self.versions))
                for p, v in zip(self.scorer.inputs, values, strict=True)}

    def __call__(self, values: Sequence[object], quality: Quality = Quality.GOOD) -> ScoreResult:
        result = self.scorer.update(self.states(values, quality))
        assert result is not None
        return result


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry(process_metrics=False)


@pytest.fixture
def feed(telemetry: Telemetry) -> Feeder:
    return Feeder(AnomalyScorer(config(), telemetry))


def test_healthy_scores_low_and_a_bearing_defect_high_with_the_default_model(
        feed: Feeder) -> None:
    """Typical healthy features stay under the threshold; an outer-race defect is far above."""
    healthy, faulty = feed(HEALTHY), feed(OUTER_RACE)
    assert healthy.quality is Quality.GOOD and healthy.reason is None
    assert healthy.score is not None and healthy.score < 1.5 and healthy.above is False
    assert faulty.score is not None and faulty.score > 10 * THRESHOLD and faulty.above is True
    assert faulty.sha256 == feed.scorer.sha256 and faulty.latency_s is not None


def _features_script() -> ModuleType:
    """hil/scripts/healthy_features.py, the default model's (provisional) feature code."""
    path = REPO / "hil" / "scripts" / "healthy_features.py"
    spec = importlib.util.spec_from_file_location("healthy_features", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and annotations look the module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.sim
def test_the_default_model_on_fresh_firmware_sim_captures() -> None:
    """Captures the model never saw: healthy ones stay below, early bearing defects go above."""
    from plcsim.vibration import FaultSpec

    script = _features_script()
    model = load(DEFAULT_MODEL, DEFAULT_INPUTS)

    def scores(faults: list[FaultSpec]) -> np.ndarray:
        rows = script.rows(40, seed=99, speed_rpm=(1200.0, 1650.0), faults=faults)
        return model.score(np.array([[r[f] for f in script.FEATURES] for r in rows]))

    assert scores([]).max() < THRESHOLD
    for mode in ("outer", "inner", "ball"):
        assert scores([FaultSpec(mode, 0.1)]).min() > THRESHOLD, mode


@pytest.mark.parametrize(("quality", "reason"), [
    (Quality.STALE, "pump1/vib_de.bpfo is STALE"),
    (Quality.BAD, "pump1/vib_de.bpfo is BAD"),
])
def test_a_stale_or_bad_input_gives_no_score(feed: Feeder, quality: Quality, reason: str) -> None:
    """One untrusted input: no score, quality BAD, and the reason names it."""
    states = feed.states(OUTER_RACE)
    bpfo = states["pump1/vib_de.bpfo"]
    assert bpfo is not None
    states["pump1/vib_de.bpfo"] = PointState(bpfo.value, bpfo.ts_ns, quality, bpfo.version)
    result = feed.scorer.update(states)
    assert result is not None
    assert (result.quality, result.score, result.reason) == (Quality.BAD, None, reason)
    assert result.above is None and result.event is None and result.latency_s is None


def test_missing_inputs_give_no_score_and_every_reason(feed: Feeder) -> None:
    """A point without state (absent, or None) is never replaced by a default."""
    states = feed.states(HEALTHY)
    del states["pump1/vib_de.kurtosis"]
    states["pump1/vib_de.bpfi"] = None
    result = feed.scorer.update(states)
    assert result is not None and result.quality is Quality.BAD and result.score is None
    assert result.reason == ("pump1/vib_de.kurtosis has no value yet;"
                             " pump1/vib_de.bpfi has no value yet")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "3.1", None, [1.0, 2.0]])
def test_an_input_that_is_not_a_finite_number_gives_no_score(feed: Feeder,
                                                            value: object) -> None:
    """NaN, infinity, text and arrays are not scored, even with GOOD quality."""
    result = feed((0.95, value, 0.0016, 0.0015))
    assert result.quality is Quality.BAD and result.score is None
    assert result.reason is not None
    assert result.reason.startswith("pump1/vib_de.kurtosis is not a finite number")


def test_an_uncertain_input_scores_with_uncertain_quality(feed: Feeder) -> None:
    """UNCERTAIN values are scored, and the score says it is uncertain and why."""
    result = feed(HEALTHY, Quality.UNCERTAIN)
    assert result.quality is Quality.UNCERTAIN and result.score is not None
    assert result.reason == f"uncertain input: {', '.join(DEFAULT_INPUTS)}"


def test_the_same_input_versions_are_scored_once(feed: Feeder) -> None:
    """Called once per changed input point, the scorer still scores each update once."""
    states = feed.states(HEALTHY)
    assert feed.scorer.update(states) is not None
    assert feed.scorer.update(states) is None
    assert feed.scorer.update({**states, "other/point": None}) is None


def test_an_alarm_is_raised_and_cleared_with_hysteresis(feed: Feeder) -> None:
    """raise_after=3 highs raise; clear_after=5 lows clear; each transition once."""
    results = [feed(OUTER_RACE) for _ in range(4)] + [feed(HEALTHY) for _ in range(5)]
    events = [(i, r.event) for i, r in enumerate(results) if r.event is not None]
    assert [(i, e.active) for i, e in events] == [(2, True), (8, False)]
    assert [r.alarm_active for r in results] == [False, False, True, True] + [True] * 4 + [False]
    raised = events[0][1]
    assert raised.model == "pump1-bearing" and raised.asset == "pump1"
    assert raised.inputs == dict(zip(DEFAULT_INPUTS, OUTER_RACE, strict=True))
    record = raised.record()
    assert record.kind is RecordKind.ALARM and record.asset == "pump1"
    body = json.loads(json.dumps(record.body, allow_nan=False))  # what the encoder will do
    assert body["alarm"] == "pump1-bearing" and body["active"] is True
    assert body["source"] == "anomaly" and body["threshold"] == THRESHOLD
    assert body["sha256"] == feed.scorer.sha256 and body["score"] > THRESHOLD
    assert "for 3 consecutive scores" in body["message"]
    worst = max(body["deviations"], key=body["deviations"].get)
    assert worst == "pump1/vib_de.bpfo" and body["deviations"][worst] > 50


def test_updates_without_a_score_neither_count_nor_clear(feed: Feeder) -> None:
    """BAD inputs between high scores do not break the run; a raised alarm survives them."""
    feed(OUTER_RACE)
    feed(OUTER_RACE, Quality.STALE)
    feed(OUTER_RACE)
    assert feed(OUTER_RACE).event is not None  # the third *score* raises
    for _ in range(10):
        assert feed(HEALTHY, Quality.BAD).alarm_active is True


@settings(max_examples=40, deadline=None)
@given(highs=st.lists(st.booleans(), max_size=30), raise_after=st.integers(1, 4),
       clear_after=st.integers(1, 4))
def test_alarm_events_follow_the_scores_through_onnxruntime(
        highs: list[bool], raise_after: int, clear_after: int) -> None:
    """Whatever the sequence: a raise ends raise_after highs, a clear ends clear_after lows."""
    feed = Feeder(AnomalyScorer(config(raise_after=raise_after, clear_after=clear_after),
                                Telemetry(process_metrics=False)))
    active = False
    for i, high in enumerate(highs):
        event = feed(OUTER_RACE if high else HEALTHY).event
        if event is not None:
            window = highs[max(0, i + 1 - (raise_after if event.active else clear_after)):i + 1]
            assert event.active != active
            assert all(window) if event.active else not any(window)
            assert len(window) == (raise_after if event.active else clear_after)
            active = event.active


def test_shadow_mode_scores_but_never_raises(telemetry: Telemetry) -> None:
    """A shadow model reports what its alarm would do and never produces an event."""
    feed = Feeder(AnomalyScorer(config(shadow=True), telemetry))
    results = [feed(OUTER_RACE) for _ in range(10)]
    assert all(r.shadow and r.event is None and not r.alarm_active for r in results)
    assert all(r.score is not None and r.score > THRESHOLD for r in results)
    assert [r.would_alarm for r in results] == [False, False] + [True] * 8
    assert feed.scorer.retire(2_000, "removed") is None
    assert telemetry.registry.get_sample_value("edgetwin_anomaly_alarm",
                                               {"model": "pump1-bearing"}) == 0


def test_every_inference_is_timed_and_every_update_counted(feed: Feeder,
                                                           telemetry: Telemetry) -> None:
    """Latency goes to the histogram per inference; updates are counted by quality."""
    for _ in range(3):
        feed(HEALTHY)
    feed(HEALTHY, Quality.BAD)
    sample = telemetry.registry.get_sample_value
    assert sample(f"{INFERENCE_SECONDS}_count", {"model": "pump1-bearing"}) == 3
    assert 0 < (sample(f"{INFERENCE_SECONDS}_sum", {"model": "pump1-bearing"}) or 0) < 1
    assert sample("edgetwin_anomaly_scores_total", {"model": "pump1-bearing",
                                                    "quality": "GOOD"}) == 3
    assert sample("edgetwin_anomaly_scores_total", {"model": "pump1-bearing",
                                                    "quality": "BAD"}) == 1


@pytest.fixture
def small(tmp_path: Path, telemetry: Telemetry) -> Feeder:
    model = small_model(tmp_path)
    threshold = load(model).manifest.threshold
    return Feeder(AnomalyScorer(config(model=model, inputs=SMALL_INPUTS, threshold=threshold,
                                      raise_after=1, clear_after=1), telemetry))


def test_reload_returns_the_new_sha256_and_keeps_a_raised_alarm(small: Feeder,
                                                                tmp_path: Path) -> None:
    """A retrained model is picked up by reload; a raised alarm stays until the new one clears."""
    before = small.scorer.sha256
    assert small((80.0, 3.0)).event is not None  # far above: raised
    (tmp_path / "new").mkdir()
    retrained = small_model(tmp_path / "new", seed=1)
    shutil.copy(retrained, tmp_path / "small.onnx")
    shutil.copy(manifest_path(retrained), manifest_path(tmp_path / "small.onnx"))
    after = small.scorer.reload()
    assert after != before and small.scorer.sha256 == after
    assert small.scorer.alarm_active
    result = small((50.0, 3.0))
    assert result.sha256 == after and result.event is not None and not result.event.active


def test_a_failed_reload_keeps_the_running_model(small: Feeder, tmp_path: Path) -> None:
    """A broken manifest on disk is refused and the old model goes on scoring."""
    before = small.scorer.sha256
    manifest_path(tmp_path / "small.onnx").write_text("{}")
    with pytest.raises(ModelError, match="sha256: Field required"):
        small.scorer.reload()
    result = small((50.0, 3.0))
    assert result.sha256 == before and result.score is not None


def test_retire_clears_a_raised_alarm(small: Feeder) -> None:
    """A scorer going away (config changed, model removed) clears its alarm once."""
    assert small.scorer.retire(1, "unused") is None
    small((80.0, 3.0))
    event = small.scorer.retire(5_000, "model removed from the configuration")
    assert event is not None and not event.active and event.ts_ns == 5_000
    assert event.message == "cleared: model removed from the configuration"
    assert event.score is None and not small.scorer.alarm_active
    assert small.scorer.retire(6_000, "again") is None


def test_status_tells_the_model_its_sha256_and_the_last_score(feed: Feeder) -> None:
    """What `edgetwin status` shows for a model, JSON-able."""
    feed(OUTER_RACE)
    status = json.loads(json.dumps(feed.scorer.status()))
    assert status["sha256"] == feed.scorer.sha256 and status["model"] == "pump1-bearing"
    assert status["threshold"] == status["trained_threshold"] == THRESHOLD
    assert status["quality"] == "GOOD" and status["score"] > THRESHOLD
    assert status["alarm_active"] is False and status["shadow"] is False


def test_a_config_whose_inputs_differ_from_the_model_is_refused(telemetry: Telemetry) -> None:
    """The scorer cannot be built for inputs the model was not trained on."""
    with pytest.raises(ModelError, match="was trained on inputs"):
        AnomalyScorer(config(inputs=("pump1/vib_de.velocity_rms", "pump1/vib_de.kurtosis")),
                      telemetry)
