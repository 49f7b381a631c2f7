"""Loading anomaly models: the manifest, the sha256, the inputs and the graph are all checked."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgetwin.analytics.anomaly import ModelError, load, manifest_path
from edgetwin.analytics.train import TrainOptions, train

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "config" / "models" / "pump1_bearing.onnx"
DEFAULT_INPUTS = ("pump1/vib_de.velocity_rms", "pump1/vib_de.kurtosis", "pump1/vib_de.bpfo",
                  "pump1/vib_de.bpfi")
SMALL_INPUTS = ("skid1/temp", "skid1/pressure")


def small_model(directory: Path, *, seed: int = 0, name: str = "small") -> Path:
    """A robust model of two Gaussian inputs (temp ~ 50 +/- 2, pressure ~ 3 +/- 0.1)."""
    rng = np.random.default_rng(seed)
    data = directory / f"{name}.csv"
    with data.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(SMALL_INPUTS)
        writer.writerows(rng.normal([50.0, 3.0], [2.0, 0.1], size=(300, 2)).tolist())
    out = directory / f"{name}.onnx"
    train(TrainOptions(inputs=SMALL_INPUTS, out=out, csv=data, false_alarm_rate=0.01))
    return out


def copy_default(directory: Path) -> Path:
    """The default model and its manifest, copied where a test may damage them."""
    target = directory / DEFAULT_MODEL.name
    shutil.copy(DEFAULT_MODEL, target)
    shutil.copy(manifest_path(DEFAULT_MODEL), manifest_path(target))
    return target


def rewrite_manifest(model: Path, **changes: object) -> None:
    path = manifest_path(model)
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_the_default_model_loads_with_its_manifest() -> None:
    """The shipped model: its sha256 is the file's, its inputs the contract's, one thread."""
    model = load(DEFAULT_MODEL, DEFAULT_INPUTS)
    assert model.sha256 == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert model.manifest.sha256 == model.sha256
    assert model.manifest.inputs == DEFAULT_INPUTS
    assert model.manifest.training["kind"] == "robust"
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert model.session.get_providers() == ["CPUExecutionProvider"]


def test_a_model_replaced_without_its_manifest_is_refused(tmp_path: Path) -> None:
    """A model file whose sha256 is not the manifest's is never scored."""
    model = copy_default(tmp_path)
    shutil.copy(small_model(tmp_path), model)
    with pytest.raises(ModelError, match=r"sha256 [0-9a-f]{64} is not the [0-9a-f]{64}"):
        load(model, DEFAULT_INPUTS)


def test_a_damaged_model_file_is_refused(tmp_path: Path) -> None:
    """One flipped byte is enough."""
    model = copy_default(tmp_path)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="replaced without its manifest, or is damaged"):
        load(model, DEFAULT_INPUTS)


def test_a_model_without_a_manifest_is_refused(tmp_path: Path) -> None:
    """The manifest is not optional: without it the inputs and normalisation are unknown."""
    model = tmp_path / "lonely.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    with pytest.raises(ModelError, match=r"its manifest .*lonely\.manifest\.json cannot be read"):
        load(model, DEFAULT_INPUTS)


def refusal(model: Path, inputs: tuple[str, ...]) -> str:
    """The text of the ModelError that loading ``model`` for ``inputs`` must raise."""
    with pytest.raises(ModelError) as caught:
        load(model, inputs)
    return str(caught.value)


def test_inputs_that_differ_from_the_config_are_refused() -> None:
    """A model trained on other inputs says which ones, and that it must match exactly."""
    text = refusal(DEFAULT_MODEL, (*DEFAULT_INPUTS[:3], "pump1/vib_de.bsf"))
    assert "was trained on inputs [pump1/vib_de.velocity_rms, pump1/vib_de.kurtosis," in text
    assert "the config's pump1/vib_de.bsf not among the model's inputs" in text
    assert "the model also needs pump1/vib_de.bpfi" in text
    with pytest.raises(ModelError, match="same inputs in another order"):
        load(DEFAULT_MODEL, tuple(reversed(DEFAULT_INPUTS)))


def test_a_manifest_with_bad_fields_lists_every_problem(tmp_path: Path) -> None:
    """Scale 0, a missing output name and an unknown key are all named at once."""
    model = copy_default(tmp_path)
    doc = json.loads(manifest_path(model).read_text())
    doc["normalisation"]["scale"][1] = 0
    del doc["output_name"]
    doc["colour"] = "red"
    manifest_path(model).write_text(json.dumps(doc))
    text = refusal(model, DEFAULT_INPUTS)
    assert "normalisation.scale.1: Input should be greater than 0" in text
    assert "output_name: Field required" in text
    assert "colour: Extra inputs are not permitted" in text


def test_a_manifest_that_is_not_json_is_refused(tmp_path: Path) -> None:
    """A truncated manifest is an error, not an empty one."""
    model = copy_default(tmp_path)
    manifest_path(model).write_text('{"sha256": ')
    with pytest.raises(ModelError, match="is not JSON"):
        load(model, DEFAULT_INPUTS)


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    """Matching sha256 but not a model: onnxruntime's refusal becomes a ModelError."""
    model = copy_default(tmp_path)
    model.write_bytes(b"not an onnx graph")
    rewrite_manifest(model, sha256=hashlib.sha256(b"not an onnx graph").hexdigest())
    with pytest.raises(ModelError, match="cannot be loaded by onnxruntime"):
        load(model, DEFAULT_INPUTS)


def test_a_graph_narrower_or_wider_than_the_manifest_is_refused(tmp_path: Path) -> None:
    """A manifest naming three inputs for a four-input graph is caught at load."""
    model = copy_default(tmp_path)
    doc = json.loads(manifest_path(model).read_text())
    rewrite_manifest(model, inputs=DEFAULT_INPUTS[:3], normalisation={
        "center": doc["normalisation"]["center"][:3], "scale": doc["normalisation"]["scale"][:3]})
    with pytest.raises(ModelError, match=r"the manifest needs 'x' tensor\(float\) \[batch, 3\]"):
        load(model, DEFAULT_INPUTS[:3])


def test_a_manifest_naming_an_output_the_graph_lacks_is_refused(tmp_path: Path) -> None:
    """The output to read must exist in the graph."""
    model = copy_default(tmp_path)
    rewrite_manifest(model, output_name="anomaly")
    with pytest.raises(ModelError, match=r"no output 'anomaly' in the graph \(it has \['score"):
        load(model, DEFAULT_INPUTS)


def test_scores_are_computed_on_normalised_inputs() -> None:
    """The robust model's score is the largest upward robust z-score, as the manifest says."""
    model = load(DEFAULT_MODEL, DEFAULT_INPUTS)
    center, scale = model.center, model.scale
    rows = np.array([center, center + 7 * scale * np.array([0, 0, 1, 0]),
                     center - 9 * scale])  # a drop is not anomalous with --tail upper
    assert model.score(rows) == pytest.approx([0.0, 7.0, 0.0], abs=1e-4)
