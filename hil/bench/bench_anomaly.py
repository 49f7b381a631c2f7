"""ONNX anomaly scoring: latency per vector and the memory a model costs.

For the default model (``config/models/pump1_bearing.onnx``) and, when the ``[train]`` extra
is installed, a 100-tree IsolationForest over the same four inputs:

- latency of single-vector calls, as the gateway makes them: the bare onnxruntime ``run``,
  ``LoadedModel.score`` (adds the float32 conversion) and ``AnomalyScorer.update`` (adds the
  quality checks, hysteresis and metrics); p50/p99 over many calls. Goal: under 100 us;
- latency per vector in batches of 256;
- resident memory (VmRSS) added by importing onnxruntime, by the first session of the
  process (onnxruntime's one-time setup), and per model loaded after that.

It prints one line per figure and one JSON line for machines.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "config" / "models" / "pump1_bearing.onnx"
BATCH = 256


def rss_kib() -> int:
    """This process's resident set size, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def timed(call: Callable[[], object], count: int) -> dict[str, float]:
    """p50/p99/mean in microseconds of ``count`` calls, after a warm-up."""
    for _ in range(min(1000, count)):
        call()
    samples = np.empty(count)
    clock = time.perf_counter_ns
    for i in range(count):
        start = clock()
        call()
        samples[i] = clock() - start
    us = samples / 1000.0
    return {"p50_us": round(float(np.percentile(us, 50)), 2),
            "p99_us": round(float(np.percentile(us, 99)), 2),
            "mean_us": round(float(us.mean()), 2)}


def forest_model(directory: Path) -> Path | None:
    """A 100-tree IsolationForest on 4 inputs (2,000 rows), or None without [train]."""
    try:
        from edgetwin.analytics.train import TrainOptions, train
    except ImportError:
        return None
    inputs = ("pump1/vib_de.velocity_rms", "pump1/vib_de.kurtosis", "pump1/vib_de.bpfo",
              "pump1/vib_de.bpfi")
    rows = np.random.default_rng(1).normal([0.95, 2.95, 0.0015, 0.0015],
                                           [0.1, 0.08, 0.0007, 0.0007], size=(2000, 4))
    data = directory / "forest.csv"
    data.write_text(",".join(inputs) + "\n" + "\n".join(",".join(f"{v:.6g}" for v in row)
                                                        for row in rows))
    out = directory / "forest.onnx"
    try:
        train(TrainOptions(inputs=inputs, out=out, csv=data, kind="iforest", trees=100,
                           false_alarm_rate=0.01))
    except Exception as err:  # the [train] extra missing shows up only here
        print(f"forest    skipped: {err}")
        return None
    return out


def bench_model(label: str, path: Path, count: int, copies: int) -> dict[str, Any]:
    from edgetwin.analytics.anomaly import AnomalyScorer, load
    from edgetwin.config.model import AnomalyConfig
    from edgetwin.core.types import PointState, Quality
    from edgetwin.telemetry import Telemetry

    gc.collect()
    before = rss_kib()
    loaded = [load(path) for _ in range(copies)]
    per_model_kib = (rss_kib() - before) / copies
    model = loaded[0]
    del loaded[1:]

    manifest = model.manifest
    row = np.asarray(manifest.normalisation.center, dtype=np.float64).reshape(1, -1)
    feed = {manifest.input_name: row.astype(np.float32)}
    outputs = [manifest.output_name]
    batch = np.repeat(row, BATCH, axis=0) * np.random.default_rng(0).uniform(0.5, 1.5, (BATCH, 1))

    config = AnomalyConfig(name=label, model=path, inputs=manifest.inputs,
                           threshold=manifest.threshold)
    scorer = AnomalyScorer(config, Telemetry(process_metrics=False))
    versions = itertools.count(1)
    values = row[0].tolist()

    def update() -> None:
        version = next(versions)
        scorer.update({p: PointState(v, version, Quality.GOOD, version)
                       for p, v in zip(manifest.inputs, values, strict=True)})

    result: dict[str, Any] = {
        "model": label,
        "file_bytes": path.stat().st_size,
        "session_run": timed(lambda: model.session.run(outputs, feed), count),
        "score": timed(lambda: model.score(row), count),
        "scorer_update": timed(update, count),
        "batch": {"size": BATCH, **timed(lambda: model.score(batch), max(200, count // 50))},
        "rss_per_model_kib": round(per_model_kib, 1),
    }
    result["batch"]["per_vector_us"] = round(result["batch"]["mean_us"] / BATCH, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="single-vector calls")
    parser.add_argument("--copies", type=int, default=5, help="loads to average the RSS over")
    args = parser.parse_args()
    from edgetwin.telemetry import configure_logging

    configure_logging("console", "warning", sys.stderr)  # model-loaded lines are not figures
    before_import = rss_kib()
    import onnxruntime

    import_kib = rss_kib() - before_import
    from edgetwin.analytics.anomaly import load

    before_first = rss_kib()
    load(DEFAULT_MODEL)
    first_kib = rss_kib() - before_first
    print(f"onnxruntime {onnxruntime.__version__}: import adds {import_kib / 1024:.1f} MiB RSS,"
          f" the first session of the process {first_kib / 1024:.1f} MiB (one-time setup)")
    results = [bench_model("pump1_bearing", DEFAULT_MODEL, args.count, args.copies)]
    with tempfile.TemporaryDirectory() as tmp:
        forest = forest_model(Path(tmp))
        if forest is not None:
            results.append(bench_model("iforest-100", forest, args.count // 4, args.copies))
    for r in results:
        print(f"{r['model']:<16} {r['file_bytes']:>9,} bytes;"
              f" each model loaded adds {r['rss_per_model_kib']:,} KiB RSS")
        for key in ("session_run", "score", "scorer_update"):
            t = r[key]
            print(f"  {key:<14} p50 {t['p50_us']:>8.1f} us  p99 {t['p99_us']:>8.1f} us"
                  f"  mean {t['mean_us']:>8.1f} us  (one vector)")
        b = r["batch"]
        print(f"  {'batch':<14} {b['per_vector_us']:>8.3f} us per vector"
              f" ({BATCH} vectors, p50 {b['p50_us']:.1f} us per call)")
    print(json.dumps({"bench": "anomaly", "python": platform.python_version(),
                      "machine": platform.machine(), "onnxruntime": onnxruntime.__version__,
                      "rss_import_kib": import_kib, "rss_first_session_kib": first_kib,
                      "results": results}))


if __name__ == "__main__":
    main()
