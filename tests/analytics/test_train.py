"""`edgetwin train` end to end: CSV and outbox export in, a model the gateway loads out."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgetwin.analytics.anomaly import AnomalyScorer, load, manifest_path
from edgetwin.analytics.train.data import read_export
from edgetwin.config.model import AnomalyConfig, BufferConfig
from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import PointSpec, Quality, Sample
from edgetwin.daemon.cli import main
from edgetwin.outbox import DurableOutbox
from edgetwin.outbox.durable import DB_FILE
from edgetwin.outbox.inspect import export
from edgetwin.telemetry import Telemetry
from edgetwin.twin import TwinStore

INPUTS = ("skid1/temp", "skid1/pressure")
INPUTS_ARG = ",".join(INPUTS)


def write_csv(path: Path, rows: int = 300, *, header: str = "ts,skid1/temp,skid1/pressure",
              seed: int = 0) -> Path:
    """A CSV with a timestamp column the trainer ignores and two Gaussian inputs."""
    values = np.random.default_rng(seed).normal([50.0, 3.0], [2.0, 0.1], size=(rows, 2))
    lines = [header] + [f"{i},{t:.5f},{p:.5f}" for i, (t, p) in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_train(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["train", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_on_a_csv_writes_a_model_the_gateway_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """main(): the model, its manifest, the report; normal rows score low, odd ones high."""
    out = tmp_path / "models" / "skid1.onnx"
    code, text, err = run_train(capsys, "--csv", str(write_csv(tmp_path / "h.csv")),
                                "--inputs", INPUTS_ARG, "--false-alarm-rate", "0.01",
                                "--out", str(out))
    assert (code, err) == (0, "")
    assert "trained robust model on 300 healthy rows" in text
    assert f"wrote {out} (sha256 " in text and f"wrote {manifest_path(out)}" in text
    model = load(out, INPUTS)
    manifest = model.manifest
    training = manifest.training
    assert manifest.threshold == pytest.approx(training["score_quantile"] * 1.1, rel=1e-5)
    assert training["rows"] == 300 and training["kind"] == "robust"
    assert training["source_format"] == "csv" and len(training["source_sha256"]) == 64
    assert training["command"].startswith("edgetwin train --csv ")
    assert (manifest.hysteresis.raise_after, manifest.hysteresis.clear_after) == (3, 5)
    assert manifest.normalisation.center == pytest.approx((50.0, 3.0), abs=0.3)
    assert manifest.normalisation.scale == pytest.approx((2.0, 0.1), rel=0.2)
    normal, hot, low = model.score(np.array([[50.0, 3.0], [62.0, 3.0], [50.0, 2.4]]))
    assert normal < 0.5 < manifest.threshold < hot and low > manifest.threshold  # both tails


def test_train_runs_as_the_installed_command(tmp_path: Path) -> None:
    """A real subprocess, as an operator runs it."""
    out = tmp_path / "m.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "edgetwin", "train", "--csv", str(write_csv(tmp_path / "h.csv")),
         "--inputs", INPUTS_ARG, "--false-alarm-rate", "0.01", "--tail", "upper",
         "--out", str(out)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert load(out, INPUTS).manifest.training["tail"] == "upper"


def test_the_gateway_never_imports_the_train_extra() -> None:
    """The daemon and the scorer load without scikit-learn, skl2onnx or onnx."""
    code = ("import sys, edgetwin.daemon.app, edgetwin.daemon.cli, edgetwin.analytics.anomaly;"
            "print(sorted(m for m in ('sklearn', 'skl2onnx', 'onnx') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_train_an_isolation_forest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """skl2onnx's forest, thresholded on held-out rows, scored by the gateway's scorer."""
    out = tmp_path / "forest.onnx"
    code, text, err = run_train(capsys, "--csv", str(write_csv(tmp_path / "h.csv", rows=600)),
                                "--inputs", INPUTS_ARG, "--kind", "iforest", "--trees", "25",
                                "--false-alarm-rate", "0.01", "--out", str(out))
    assert code == 0, err
    assert "trained iforest model on 600 healthy rows" in text
    manifest = load(out, INPUTS).manifest
    assert manifest.training["rows_for_threshold"] == 150 and manifest.training["trees"] == 25
    assert manifest.training["margin"] == 1.0  # the forest's default: its score saturates
    assert 0.4 < manifest.threshold < 1.0
    config = AnomalyConfig(name="skid1", model=out, inputs=INPUTS, threshold=manifest.threshold)
    scorer = AnomalyScorer(config, Telemetry(process_metrics=False))
    model = load(out, INPUTS)
    normal, odd = model.score(np.array([[50.0, 3.0], [70.0, 2.0]]))
    assert normal < manifest.threshold < odd
    assert scorer.sha256 == manifest.sha256


async def _export_from_a_real_pipeline(state: Path) -> list[str]:
    """Samples -> twin (deadband, qualities) -> durable outbox -> `buffer export` lines.

    Returns the lines; the rows training should rebuild from them are documented inline.
    """
    specs = {p: PointSpec(p, "plc") for p in (*INPUTS, "skid1/other")}
    box = DurableOutbox(state, BufferConfig(), Telemetry(process_metrics=False),
                        max_delay_s=0.01)
    committer = asyncio.create_task(box.run())
    twin = TwinStore(specs, state, box.restored_twin)
    rng = np.random.default_rng(5)
    good = Quality.GOOD
    batches = [[Sample("skid1/temp", 50.0, good, 1)]]  # pressure unknown yet: no row
    for i in range(2, 122):  # 120 rows
        temp, pressure = rng.normal(50.0, 2.0), rng.normal(3.0, 0.1)
        batch = [Sample("skid1/temp", temp, good, i)]
        if i % 3:  # every third time the pressure repeats: not in the delta, carried forward
            batch.append(Sample("skid1/pressure", pressure, good, i))
        batches.append(batch)
    batches.append([Sample("skid1/other", 1.0, good, 200)])  # not an input: no row
    batches.append([Sample("skid1/pressure", None, Quality.BAD, 201)])  # a gap: no row
    batches.append([Sample("skid1/temp", 51.0, good, 202)])  # pressure still BAD: no row
    batches.append([Sample("skid1/pressure", 3.05, good, 203)])  # back: row 121
    try:
        for batch in batches:
            await box.put(twin.apply(batch))
        await box.commit()
    finally:
        await cancel_and_wait(committer)
        await box.close()
    return list(export(state / DB_FILE))


async def test_train_from_a_real_outbox_export(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Rows are rebuilt by carrying GOOD values forward; gaps and other points make none."""
    state = tmp_path / "state"
    state.mkdir()
    lines = await _export_from_a_real_pipeline(state)
    exported = tmp_path / "backlog.jsonl"
    exported.write_text("\n".join(lines) + "\n")
    table = read_export(exported, INPUTS)
    assert table.values.shape == (121, 2)
    assert table.values[-1].tolist() == [51.0, 3.05]
    out = tmp_path / "from_export.onnx"
    code, text, err = run_train(capsys, "--export", str(exported), "--inputs", INPUTS_ARG,
                                "--false-alarm-rate", "0.01", "--out", str(out))
    assert code == 0, err
    assert "on 121 healthy rows" in text and "deltas read" in text
    assert load(out, INPUTS).manifest.training["source_format"] == "export"


def test_export_lines_skip_records_and_undecodable_entries(tmp_path: Path) -> None:
    """Alarms, command results and entries the export could not decode are not rows."""
    def delta(seq: int, changes: dict[str, tuple[object, str]]) -> str:
        return json.dumps({"seq": seq, "kind": "delta", "asset": "skid1", "version": seq,
                           "changes": {k: {"v": v, "ts_ns": seq, "q": q, "ver": seq}
                                       for k, (v, q) in changes.items()}})

    lines = [
        delta(1, {"temp": (50, "GOOD"), "pressure": (3.0, "GOOD")}),
        json.dumps({"seq": 2, "kind": "alarm", "asset": "", "body": {"alarm": "x"}}),
        json.dumps({"seq": 3, "priority": 0, "asset": "skid1", "error": "cannot decode"}),
        delta(4, {"temp": (51.5, "UNCERTAIN")}),  # not trusted for a healthy baseline
        delta(5, {"pressure": (3.1, "GOOD")}),
        delta(6, {"temp": (52, "GOOD")}),
    ]
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(lines))
    table = read_export(path, INPUTS)
    assert table.values.tolist() == [[50.0, 3.0], [52.0, 3.1]]
    assert table.notes[0] == "4 deltas read, 2 other entries skipped"


@pytest.mark.parametrize(("content", "message"), [
    ("ts,skid1/temp\n1,50\n", "h.csv: no column for input(s) skid1/pressure"
                              " (the header has: ts, skid1/temp)"),
    ("skid1/temp,skid1/pressure\n50,3\n51,nan\n", "h.csv:3: column skid1/pressure: nan is not"
                                                  " a finite number; remove incomplete rows"),
    ("skid1/temp,skid1/pressure\n50,3\nwarm,3\n", "h.csv:3: column skid1/temp: 'warm' is not"
                                                  " a number"),
    ("skid1/temp,skid1/pressure\n50,3\n51\n", "h.csv:3: 1 fields, the header has 2"),
    ("skid1/temp,skid1/temp,skid1/pressure\n", "column(s) skid1/temp appear more than once"),
    ("", "h.csv: empty; expected a header row"),
])
def test_bad_csv_files_are_refused_with_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    """Missing columns, NaN, text, short rows: exit 65 and the file, line and column."""
    (tmp_path / "h.csv").write_text(content)
    code, _, err = run_train(capsys, "--csv", str(tmp_path / "h.csv"), "--inputs", INPUTS_ARG,
                             "--out", str(tmp_path / "m.onnx"))
    assert code == 65 and message in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_too_few_rows_for_the_false_alarm_rate_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0.001 needs 1,000 healthy scores; the message says how many and why."""
    code, _, err = run_train(capsys, "--csv", str(write_csv(tmp_path / "h.csv", rows=300)),
                             "--inputs", INPUTS_ARG, "--out", str(tmp_path / "m.onnx"))
    assert code == 65
    assert "too few rows: 300 healthy rows, at least 1000 needed" in err
    assert "ask for a higher --false-alarm-rate" in err
    code, _, err = run_train(capsys, "--csv", str(tmp_path / "h.csv"), "--kind", "iforest",
                             "--false-alarm-rate", "0.01", "--inputs", INPUTS_ARG,
                             "--out", str(tmp_path / "m.onnx"))
    assert code == 65 and "at least 400 needed" in err and "is held out" in err


def test_a_constant_input_is_refused(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Its healthy spread cannot be learnt; dividing by zero is not an answer."""
    rows = ["skid1/temp,skid1/pressure"] + [f"{50 + i % 7},3.0" for i in range(200)]
    (tmp_path / "h.csv").write_text("\n".join(rows))
    code, _, err = run_train(capsys, "--csv", str(tmp_path / "h.csv"), "--inputs", INPUTS_ARG,
                             "--false-alarm-rate", "0.01", "--out", str(tmp_path / "m.onnx"))
    assert code == 65 and "input(s) skid1/pressure never change in the training data" in err


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--out", "m.bin"], 64, "--out: m.bin must end in .onnx"),
    (["--false-alarm-rate", "0.7"], 64, "--false-alarm-rate: 0.7 is not in (0, 0.5)"),
    (["--margin", "0.9"], 64, "--margin: 0.9 is below 1"),
    (["--inputs", "temp,skid1/temp"], 64, "--inputs: temp not point ids"),
])
def test_bad_options_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 args: list[str], code: int, message: str) -> None:
    """Exit 64 (EX_USAGE) with what to change."""
    base = {"--inputs": INPUTS_ARG, "--out": str(tmp_path / "m.onnx")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["--csv", str(write_csv(tmp_path / "h.csv"))]
    for flag, value in base.items():
        argv += [flag, value]
    got, _, err = run_train(capsys, *argv)
    assert got == code and message in err, err


def test_unreadable_or_empty_exports_are_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """No file: 66. Not JSON, or no complete row: 65, with the line or the inputs seen."""
    out = str(tmp_path / "m.onnx")
    code, _, err = run_train(capsys, "--export", str(tmp_path / "none.jsonl"),
                             "--inputs", INPUTS_ARG, "--out", out)
    assert code == 66 and "none.jsonl cannot be read" in err
    (tmp_path / "x.jsonl").write_text('{"seq": 1, "kind": "delta"}\nnot json\n')
    code, _, err = run_train(capsys, "--export", str(tmp_path / "x.jsonl"),
                             "--inputs", INPUTS_ARG, "--out", out)
    assert code == 65 and "x.jsonl:1: a delta without 'asset' and 'changes'" in err
    (tmp_path / "x.jsonl").write_text(
        '{"seq": 1, "kind": "delta", "asset": "skid1", "changes":'
        ' {"temp": {"v": 50, "q": "GOOD"}}}\n')
    code, _, err = run_train(capsys, "--export", str(tmp_path / "x.jsonl"),
                             "--inputs", INPUTS_ARG, "--out", out)
    assert code == 65 and "no row has a GOOD value for every input" in err
    assert "inputs seen GOOD at the end: skid1/temp" in err
