"""The report an engineer reads after a HIL run: a Markdown page per scenario, plots, a run page.

Why: whether a gateway may go on a plant floor is decided from this page, so it puts each
expectation's verdict and figures next to the signals that explain it (counter gaps, buffer
depth, memory and CPU, the twin against the plant around every fault), and it is written
even for a run that broke early, saying what is missing.

Invariants:
- Only the run folder is read (``results.json``, ``data/``, the file names in ``logs/``), as
  ``hil/README.md`` defines it. ``messages.jsonl`` is never opened: ``twin.jsonl`` holds
  what the plots need.
- Large inputs are streamed a line at a time and only the numbers a plot draws are kept, in
  compact arrays; twin values are kept only inside the windows around plotted faults. A
  one-hour soak writes about two million twin lines.
- Missing, empty or damaged inputs become sentences in the report, never a traceback. A
  plot that fails anyway (a bug) is logged with its traceback and named in the report.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hil.harness import plots
from hil.harness.plots import Mark

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from hil.harness.plots import BoolArray, FloatArray

log = logging.getLogger("hil.report")

SUMMARY = "summary.md"
PASSED = "✅ PASS"
FAILED = "❌ FAIL"
UNJUDGED = "⚠️ NO RESULT"
MAX_FAULT_PLOTS = 12
FAULT_BEFORE_S = 5.0
FAULT_AFTER_S = 20.0
BOOKKEEPING_S = 1.0  # a gateway_start this close to the first event is the run's own start
LIST_ITEMS = 20  # items of a figure's list shown before "… N more"
TEXT_CHARS = 160  # nested figure values are cut to this many characters
WARMUP_FRACTION = 0.1  # the resources judge's warm-up: 10 % of the run, at least 60 s
WARMUP_MIN_S = 60.0
MIN_TREND_SAMPLES = 10
GAP_FACTOR = 3.0  # a pause longer than this many sampling intervals breaks a line
MIN_GAP_S = 1.5
SECONDS_UP_TO_S = 120.0  # durations below this read best in seconds,
MINUTES_UP_TO = 120  # and below this many minutes in minutes and seconds
EXACT_FLOAT = 2.0**53  # a float below this that is whole prints as an integer
RUN_FIELDS = 4  # a served run is [first, last, t_first, t_last]
MB = 1e6  # the RSS slope is in MB/h (10^6 bytes), as the resources judge states it
MIB = 2.0**20
SECONDS_PER_HOUR = 3600.0
DEPTH = "edgetwin_outbox_depth"
DROPPED = "edgetwin_outbox_dropped_total"
# data files the report does not read, listed with their size only
UNREAD = ("messages.jsonl", "writes.json")
_POINT = re.compile(r'"point"\s*:\s*"((?:[^"\\]|\\.)*)"')
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


# -- reading the run folder --------------------------------------------------------------------

@dataclass
class _Tally:
    """How many lines a file held and how many of them were not usable."""

    lines: int = 0
    bad: int = 0

    def status(self) -> str:
        if self.lines == 0:
            return "empty"
        damaged = f", {self.bad:,} unreadable lines skipped" if self.bad else ""
        return f"{self.lines:,} lines{damaged}"


@dataclass(frozen=True)
class _Event:
    """One timeline action as ``events.jsonl`` recorded it; ``n`` counts from 1 in time order."""

    n: int
    t: float
    id: str
    action: str
    args: Mapping[str, Any]
    end: float | None
    detail: str

    @property
    def label(self) -> str:
        return self.id or self.action


@dataclass(frozen=True)
class _Outcome:
    """One entry of ``results.json`` ``outcomes``, with every field checked."""

    name: str
    kind: str
    passed: bool | None
    summary: str
    figures: Mapping[str, Any]


@dataclass
class _Series:
    """Samples of one value over time, growing while a file is read."""

    t: array[float] = field(default_factory=lambda: array("d"))
    value: array[float] = field(default_factory=lambda: array("d"))
    flag: array[int] = field(default_factory=lambda: array("b"))

    def add(self, t: float, value: float, *, flag: bool) -> None:
        self.t.append(t)
        self.value.append(value)
        self.flag.append(flag)

    def arrays(self) -> tuple[FloatArray, FloatArray, BoolArray]:
        """The samples as numpy arrays, in time order."""
        if not self.t:
            return np.empty(0), np.empty(0), np.empty(0, dtype=bool)
        t = np.frombuffer(self.t, dtype=np.float64)
        value = np.frombuffer(self.value, dtype=np.float64)
        flag = np.frombuffer(self.flag, dtype=np.int8).astype(bool)
        if np.any(np.diff(t) < 0):  # the files are in time order; a merged one may not be
            order = np.argsort(t, kind="stable")
            return t[order], value[order], flag[order]
        return t, value, flag


def _number(value: object) -> float:
    """A value as a float for plotting: booleans as 0/1; NaN for anything not a number."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return math.nan


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _json_lines(path: Path, tally: _Tally) -> Iterator[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file, one at a time; damaged lines are counted."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip():
                continue
            tally.lines += 1
            try:
                doc = json.loads(line)
            except ValueError:
                tally.bad += 1
                continue
            if isinstance(doc, dict):
                yield doc
            else:
                tally.bad += 1


def _merge(windows: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class _Twin:
    """What the plots need from ``twin.jsonl``, filled a line at a time by ``read``.

    ``counter`` holds every value of the counter point (flag: a replayed ``hist`` value).
    ``traces`` hold the live values of the fault plots' points (flag: quality GOOD) inside
    the fault windows, plus each point's last value before a window, so that a step line
    starts at the right level.
    """

    def __init__(self, counter: str, points: Sequence[str],
                 windows: Sequence[tuple[float, float]]) -> None:
        self.counter_point = counter
        self.counter = _Series()
        self.traces = {p: _Series() for p in points}
        self.tally = _Tally()
        self._windows = _merge(windows)
        self._current = 0  # the first window not yet over
        self._flushed = -1  # the window whose opening level was written
        self._pending: dict[str, tuple[float, float, bool]] = {}

    def read(self, path: Path) -> None:
        """Stream the file; lines of points nobody plots are skipped before being parsed."""
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                found = _POINT.search(line)
                if found is None:
                    if line.strip():
                        self.tally.lines += 1
                        self.tally.bad += 1
                    continue
                self.tally.lines += 1
                point = found.group(1)
                if "\\" in point:
                    point = json.loads(f'"{point}"')
                if point == self.counter_point or point in self.traces:
                    self._line(point, line)

    def _line(self, point: str, line: str) -> None:
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        t = _finite(doc.get("t")) if isinstance(doc, dict) else None
        if doc is None or t is None:
            self.tally.bad += 1
            return
        value, hist = doc.get("v"), doc.get("hist") is True
        if point == self.counter_point and isinstance(value, int) \
                and not isinstance(value, bool):
            self.counter.add(t, value, flag=hist)
        if point in self.traces and not hist:  # a replay is history, not the current state
            self._trace(point, t, _number(value), good=doc.get("q", "GOOD") == "GOOD")

    def _trace(self, point: str, t: float, value: float, *, good: bool) -> None:
        windows = self._windows
        while self._current < len(windows) and t > windows[self._current][1]:
            self._current += 1
        if self._current == len(windows):
            return
        if t < windows[self._current][0]:
            self._pending[point] = (t, value, good)
            return
        if self._flushed != self._current:
            for name, (before_t, before, was_good) in self._pending.items():
                self.traces[name].add(before_t, before, flag=was_good)
            self._pending.clear()
            self._flushed = self._current
        self.traces[point].add(t, value, flag=good)


def served_times(values: FloatArray, runs: FloatArray) -> FloatArray:
    """When each counter value was served, interpolated within its run; NaN if never served.

    ``runs`` rows are ``first, last, t_first, t_last`` in the order the sim served them; a
    value served twice (the counter restarted) keeps its first run, as the judges count it.
    """
    out = np.full(len(values), np.nan)
    if not len(runs) or not len(values):
        return out
    first, last, t_first, t_last = runs.T
    span = np.maximum(1.0, last - first)
    order = np.argsort(first, kind="stable")
    if np.all(first[order][1:] > last[order][:-1]):  # runs do not overlap: look each up
        at = np.searchsorted(first[order], values, side="right") - 1
        run = order[np.clip(at, 0, None)]
        hit = (at >= 0) & (values <= last[run])
        out[hit] = (t_first[run] + (t_last[run] - t_first[run]) * (values - first[run])
                    / span[run])[hit]
        return out
    for i in range(len(runs)):
        hit = np.isnan(out) & (values >= first[i]) & (values <= last[i])
        out[hit] = t_first[i] + (t_last[i] - t_first[i]) * (values[hit] - first[i]) / span[i]
    return out


def _gap_s(t: FloatArray) -> float:
    """How long a pause must be to break a line: a few of the series' sampling intervals."""
    if len(t) <= 1:
        return math.inf
    return max(MIN_GAP_S, GAP_FACTOR * float(np.median(np.diff(t))))


# -- Markdown helpers --------------------------------------------------------------------------

def _cell(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _iso(t: float | None) -> str:
    if t is None:
        return "unknown"
    try:
        return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="seconds").replace(
            "+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return str(t)


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < SECONDS_UP_TO_S:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < MINUTES_UP_TO:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _scalar(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < EXACT_FLOAT:
            return str(int(value))
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        text = json.dumps(value, separators=(",", ":"))
        return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"
    return str(value)


def _shown(items: Sequence[str]) -> str:
    if not items:
        return "none"
    more = len(items) - LIST_ITEMS
    return ", ".join(items[:LIST_ITEMS]) + (f", … {more:,} more" if more > 0 else "")


def _figure_text(value: object) -> str:
    """One figure compactly: lists and mappings cut to ``LIST_ITEMS`` entries."""
    if isinstance(value, list):
        return _shown([_scalar(v) for v in value])
    if isinstance(value, dict):
        return _shown([f"{k}: {_scalar(v)}" for k, v in value.items()])
    return _scalar(value)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _verdict(passed: object) -> str:
    """The result cell: a judged ``passed`` is a JSON boolean; anything else was not judged."""
    return PASSED if passed is True else FAILED if passed is False else UNJUDGED


def _args_text(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v if isinstance(v, str) else _scalar(v)}" for k, v in args.items())


def _file_name(n: int, label: str) -> str:
    return f"fault_{n}_{_UNSAFE.sub('-', label).strip('-') or 'event'}.png"


def _outcomes(results: Mapping[str, Any]) -> list[_Outcome]:
    found = results.get("outcomes")
    outcomes = []
    for item in found if isinstance(found, list) else []:
        if not isinstance(item, dict):
            continue
        passed = item.get("passed")
        figures = item.get("figures")
        outcomes.append(_Outcome(
            str(item.get("name") or item.get("kind") or "unnamed"), str(item.get("kind", "")),
            passed if isinstance(passed, bool) else None, str(item.get("summary", "")),
            figures if isinstance(figures, dict) else {}))
    return outcomes


def _load_results(folder: Path) -> tuple[dict[str, Any], str | None]:
    """``results.json`` as a mapping, and a sentence when it is missing or unreadable."""
    path = folder / "results.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, "results.json is missing: the run ended before it was judged."
    except (OSError, ValueError) as err:
        return {}, f"results.json could not be read ({err}); nothing was judged."
    if not isinstance(doc, dict):
        return {}, "results.json does not hold a JSON object; nothing was judged."
    return doc, None


# -- one scenario ------------------------------------------------------------------------------

class _ScenarioReport:
    """The report of one scenario folder: reads what is there, draws, writes Markdown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.files: dict[str, str] = {}  # data file name -> what it held
        self.results, problem = _load_results(folder)
        self.notes: list[str] = [problem] if problem else []
        self.outcomes = _outcomes(self.results)
        spec = self.results.get("plots")
        self.plot_spec: Mapping[str, Any] = spec if isinstance(spec, dict) else {}
        self.events = self._read_events()
        self.t0 = self._time_base()
        self.marks = [Mark(e.t - self.t0, None if e.end is None else e.end - self.t0, e.label)
                      for e in self.events]
        self.fault_events, self.left_out = self._choose_faults()
        self.fault_files: dict[int, str] = {}  # event n -> PNG written for it
        self._twin: _Twin | None = None

    # -- inputs --

    def _read_events(self) -> list[_Event]:
        path = self.data / "events.jsonl"
        if not path.exists():
            self.files["events.jsonl"] = "missing"
            return []
        tally, found = _Tally(), []
        for doc in _json_lines(path, tally):
            t, end = _finite(doc.get("t")), _finite(doc.get("end"))
            if t is None:
                tally.bad += 1
                continue
            args = doc.get("args")
            found.append((t, str(doc.get("id") or ""), str(doc.get("action") or "?"),
                          args if isinstance(args, dict) else {}, end,
                          str(doc.get("detail") or "")))
        self.files["events.jsonl"] = tally.status()
        found.sort(key=lambda e: e[0])
        return [_Event(n, *event) for n, event in enumerate(found, start=1)]

    def _time_base(self) -> float:
        """The scenario's start: ``started``, else the first event or sample recorded."""
        started = _finite(self.results.get("started"))
        if started is not None:
            return started
        if self.events:
            return self.events[0].t
        for name in ("resources.jsonl", "sim.jsonl", "twin.jsonl"):
            path = self.data / name
            if path.exists():
                with path.open(encoding="utf-8", errors="replace") as lines:
                    try:
                        t = _finite(json.loads(lines.readline()).get("t"))
                    except (ValueError, AttributeError):
                        t = None
                if t is not None:
                    return t
        return 0.0

    def _choose_faults(self) -> tuple[list[_Event], list[_Event]]:
        """The events to plot (at most ``MAX_FAULT_PLOTS``), the slow-to-converge ones first."""
        if not self.events:
            return [], []
        first = self.events[0].t
        candidates = [e for e in self.events
                      if not (e.action == "gateway_start" and e.t - first <= BOOKKEEPING_S)]
        slow = set()
        for outcome in self.outcomes:
            if outcome.kind == "converge" and outcome.passed is False:
                seconds, limit = outcome.figures.get("seconds"), outcome.figures.get("limit_s")
                for label, s in (seconds.items() if isinstance(seconds, dict) else []):
                    too_slow = (isinstance(s, int | float) and isinstance(limit, int | float)
                                and s > limit)
                    if s is None or too_slow:
                        slow.add(str(label))
        ranked = [e for e in candidates if e.label in slow] + \
                 [e for e in candidates if e.label not in slow]
        chosen = {e.n for e in ranked[:MAX_FAULT_PLOTS]}
        return ([e for e in candidates if e.n in chosen],
                [e for e in candidates if e.n not in chosen])

    def _trace_points(self) -> dict[str, tuple[str, float]]:
        """Twin point -> (sim signal, scale) from ``results.json`` ``plots.twin_points``."""
        spec = self.plot_spec.get("twin_points")
        points = {}
        for point, mapping in (spec.items() if isinstance(spec, dict) else []):
            if isinstance(mapping, dict) and isinstance(mapping.get("signal"), str):
                scale = _finite(mapping.get("scale"))
                points[str(point)] = (mapping["signal"], 1.0 if scale is None else scale)
        return points

    def _window(self, event: _Event) -> tuple[float, float]:
        return (event.t - FAULT_BEFORE_S, (event.end or event.t) + FAULT_AFTER_S)

    def twin(self) -> _Twin | None:
        """``twin.jsonl``, read once for the counter chart and the fault plots."""
        if self._twin is None:
            path = self.data / "twin.jsonl"
            if not path.exists():
                self.files["twin.jsonl"] = "missing"
                return None
            counter = str(self.plot_spec.get("counter_point") or "")
            windows = [self._window(e) for e in self.fault_events]
            self._twin = _Twin(counter, sorted(self._trace_points()), windows)
            self._twin.read(path)
            self.files["twin.jsonl"] = self._twin.tally.status()
        return self._twin

    def _served_runs(self, signal: str) -> FloatArray:
        path = self.data / "served.json"
        try:
            served = json.loads(path.read_text(encoding="utf-8") or "{}")
        except FileNotFoundError:
            self.files["served.json"] = "missing"
            return np.empty((0, 4))
        except (OSError, ValueError) as err:
            self.files["served.json"] = f"unreadable ({err})"
            return np.empty((0, 4))
        record = served.get(signal) if isinstance(served, dict) else None
        runs = record.get("runs") if isinstance(record, dict) else None
        rows = [[float(x) for x in run] for run in (runs if isinstance(runs, list) else [])
                if isinstance(run, list) and len(run) == RUN_FIELDS
                and all(_finite(x) is not None for x in run)]
        self.files["served.json"] = f"{len(rows):,} runs of {signal!r}"
        return np.array(rows, dtype=np.float64).reshape(-1, 4)

    # -- plots: each returns its Markdown lines --

    def counter_section(self) -> list[str]:
        point = str(self.plot_spec.get("counter_point") or "")
        signal = str(self.plot_spec.get("counter_signal") or "counter")
        if not point:
            return ["No counter chart: results.json names no `plots.counter_point`."]
        twin = self.twin()
        runs = self._served_runs(signal)
        t, value, hist = twin.counter.arrays() if twin else (np.empty(0), np.empty(0),
                                                             np.empty(0, dtype=bool))
        if not len(t) and not len(runs):
            return [(f"No counter chart: no value of {point} reached the broker (twin.jsonl) "
                     "and the sim recorded no served run (served.json).")]
        listed, total = self._missing_values()
        missing_t = served_times(listed, runs)
        placed = np.isfinite(missing_t)
        chart = plots.CounterChart(
            point=point, t=t - self.t0, value=value, hist=hist,
            delay=t - served_times(value, runs), runs=runs - [0, 0, self.t0, self.t0],
            missing_t=missing_t[placed] - self.t0, missing_value=listed[placed])
        plots.counter_gaps(self.folder / "counter_gaps.png", chart, self.marks)
        caption = (f"{point}: {int((~hist).sum()):,} live (blue) and {int(hist.sum()):,} "
                   f"replayed (orange) values by receive time; grey lines are the "
                   f"{len(runs):,} runs the sim served; ")
        if total is None:
            caption += "no no-loss judgement lists missing values."
        else:
            caption += f"{int(placed.sum()):,} missing values in red"
            if total > len(listed):
                caption += f" (the judge listed {len(listed):,} of {total:,})"
            if not placed.all():
                caption += f", {int((~placed).sum()):,} not in any served run"
            caption += "."
        caption += " Below: receive time minus served time; an outage shows as a spike."
        return ["![counter gaps](counter_gaps.png)", "", f"*{caption}*"]

    def _missing_values(self) -> tuple[FloatArray, int | None]:
        """The missing counter values the no-loss judge listed, and how many it counted."""
        for outcome in self.outcomes:
            if outcome.kind != "no_loss":
                continue
            listed = outcome.figures.get("missing")
            values = [float(v) for v in (listed if isinstance(listed, list) else [])
                      if isinstance(v, int) and not isinstance(v, bool)]
            counts = [outcome.figures.get(k) for k in ("lost", "lost_to_kill",
                                                      "in_flight_at_cut_or_stop")]
            total = sum(c for c in counts if isinstance(c, int))
            return np.array(values, dtype=np.float64), max(total, len(values))
        return np.empty(0), None

    def buffer_section(self) -> list[str]:
        path = self.data / "metrics.jsonl"
        if not path.exists():
            self.files["metrics.jsonl"] = "missing"
            return [("Buffer depth was not recorded: data/metrics.jsonl is missing (the gateway "
                     "profile names no metrics URL, or the gateway never answered on it).")]
        tally = _Tally()
        t, depth, dropped = array("d"), array("d"), array("d")
        for doc in _json_lines(path, tally):
            when, values = _finite(doc.get("t")), doc.get("values")
            if when is None or not isinstance(values, dict):
                tally.bad += 1
                continue
            t.append(when)
            depth.append(_number(values.get(DEPTH)))
            dropped.append(_number(values.get(DROPPED)))
        self.files["metrics.jsonl"] = tally.status()
        if not t:
            return ["Buffer depth was not recorded: data/metrics.jsonl holds no samples."]
        times = np.array(t) - self.t0
        depths, drops = np.array(depth), np.array(dropped)
        if not np.isfinite(depths).any():
            return [f"Buffer depth was not recorded: the gateway's metrics had no {DEPTH}."]
        has_drops = bool(np.isfinite(drops).any())
        chart = plots.DepthChart(times, depths, drops if has_drops else None)
        plots.buffer_depth(self.folder / "buffer_depth.png", chart, self.marks,
                           gap_s=_gap_s(times))
        peak = float(np.nanmax(depths))
        caption = f"{DEPTH} from {len(times):,} scrapes, peak {peak:,.0f}"
        caption += (f"; {DROPPED} (dashed, right axis) reached {float(np.nanmax(drops)):,.0f}."
                    if has_drops else f"; the gateway exposed no {DROPPED}.")
        return ["![buffer depth](buffer_depth.png)", "", f"*{caption}*"]

    def resources_section(self) -> list[str]:
        path = self.data / "resources.jsonl"
        if not path.exists():
            self.files["resources.jsonl"] = "missing"
            return [("The gateway's memory and CPU were not recorded: data/resources.jsonl is "
                     "missing (the gateway probably never started).")]
        tally = _Tally()
        columns: tuple[array[float], ...] = (array("d"), array("d"), array("d"), array("d"))
        for doc in _json_lines(path, tally):
            row = [x for k in ("t", "pid", "rss_bytes", "cpu_s") if (x := _finite(doc.get(k)))
                   is not None]
            if len(row) != len(columns):
                tally.bad += 1
                continue
            for column, x in zip(columns, row, strict=True):
                column.append(x)
        self.files["resources.jsonl"] = tally.status()
        t, pid, rss, cpu = (np.array(c) for c in columns)
        if not len(t):
            return [("The gateway's memory and CPU were not recorded: data/resources.jsonl "
                     "holds no samples (the gateway probably never started).")]
        same = pid[1:] == pid[:-1]
        dt = np.diff(t)
        ok = same & (dt > 0)
        restarts = [(float(t[i]) - self.t0, int(pid[i])) for i in np.flatnonzero(~same) + 1]
        trend, warmup = _rss_trend(t - self.t0, pid, rss)
        chart = plots.ResourceChart(
            t=t - self.t0, pid=pid.astype(np.int64), rss_mib=rss / MIB, cpu_t=t[1:][ok] - self.t0,
            cpu_pct=100.0 * np.diff(cpu)[ok] / dt[ok], restarts=restarts, trend=trend)
        plots.resources(self.folder / "resources.png", chart, self.marks, gap_s=_gap_s(t))
        busy = float(np.diff(cpu)[ok].sum())
        wall = float(dt[ok].sum())
        caption = (f"{len(t):,} samples of the gateway's process tree: peak RSS "
                   f"{float(rss.max()) / MIB:.1f} MiB, mean CPU "
                   f"{100.0 * busy / wall if wall else 0.0:.1f} % of one core, "
                   f"{_count(len(restarts), 'restart')} (red lines, new pid). ")
        caption += (f"RSS trend {trend.slope_mb_per_h:+.2f} MB/h over pid {trend.pid} after "
                    f"{trend.warmup_s:.0f} s warm-up." if trend else
                    f"No RSS trend: fewer than {MIN_TREND_SAMPLES} samples after the "
                    f"{warmup:.0f} s warm-up.")
        return ["![resources](resources.png)", "", f"*{caption}*"]

    def fault_section(self) -> list[str]:
        if not self.events:
            return ["No fault plots: no timeline events were recorded."]
        points = self._trace_points()
        if not points:
            return ["No fault plots: results.json names no `plots.twin_points`."]
        if not self.fault_events:
            return ["No fault plots: the timeline holds only the gateway's own start."]
        twin = self.twin()
        if twin is None:
            return [("No fault plots: data/twin.jsonl is missing (no reported message was "
                     "recorded, or the run ended before the twin was rebuilt).")]
        sim = self._read_sim({signal for signal, _ in points.values()})
        lines = [(f"The twin (blue steps, live values only) against the sim's true value (green, "
                  f"times the point's scale) from {FAULT_BEFORE_S:.0f} s before each event to "
                  f"{FAULT_AFTER_S:.0f} s after it ended."), ""]
        if self.left_out:
            lines += [(f"{len(self.left_out)} more events are not plotted (at most "
                       f"{MAX_FAULT_PLOTS}, those slow to converge first): "
                       f"{_shown([f'#{e.n} {e.label}' for e in self.left_out])}."), ""]
        for event in self.fault_events:
            name = _file_name(event.n, event.label)
            self._fault_plot(self.folder / name, event, points, twin, sim)
            self.fault_files[event.n] = name
            lines += [f"#### #{event.n} {event.label} ({event.action})", "",
                      f"![fault {event.n} {event.label}]({name})", "",
                      f"*{self._event_caption(event)}*", ""]
        return lines

    def _event_caption(self, event: _Event) -> str:
        text = f"{event.action} at t+{event.t - self.t0:.1f} s"
        if event.end is not None:
            text += f" for {event.end - event.t:.1f} s"
        args = {k: v for k, v in event.args.items() if k != "for"}  # the duration says it
        if args:
            text += f" ({_args_text(args)})"
        return text + (f": {event.detail}" if event.detail else "")

    def _read_sim(self, signals: set[str]) -> dict[str, tuple[FloatArray, FloatArray]]:
        path = self.data / "sim.jsonl"
        if not path.exists():
            self.files["sim.jsonl"] = "missing"
            return {}
        tally = _Tally()
        series = {s: _Series() for s in signals}
        for doc in _json_lines(path, tally):
            t, values = _finite(doc.get("t")), doc.get("values")
            if t is None or not isinstance(values, dict):
                tally.bad += 1
                continue
            for signal, samples in series.items():
                if signal in values:
                    samples.add(t, _number(values[signal]), flag=True)
        self.files["sim.jsonl"] = tally.status()
        return {s: samples.arrays()[:2] for s, samples in series.items()}

    def _fault_plot(self, path: Path, event: _Event, points: Mapping[str, tuple[str, float]],
                    twin: _Twin, sim: Mapping[str, tuple[FloatArray, FloatArray]]) -> None:
        start, end = self._window(event)
        panels = []
        for point, (signal, scale) in sorted(points.items()):
            t, value, good = twin.traces[point].arrays()
            lo = max(0, int(np.searchsorted(t, start, side="right")) - 1)
            hi = int(np.searchsorted(t, end, side="right"))
            t, value, good = t[lo:hi].copy(), value[lo:hi], good[lo:hi]
            if len(t):
                t[0] = max(t[0], start)  # the level held when the window opened
                t, value = np.append(t, end), np.append(value, value[-1])
                good = np.append(good, good[-1])
            sim_t, sim_value = sim.get(signal, (np.empty(0), np.empty(0)))
            inside = (sim_t >= start) & (sim_t <= end)
            panels.append(plots.TracePanel(
                point=point, twin_t=t - self.t0, twin_value=value, twin_good=good,
                sim_t=sim_t[inside] - self.t0, sim_value=sim_value[inside] * scale))
        nearby = [m for m, e in zip(self.marks, self.events, strict=True)
                  if e.t <= end and (e.end or e.t) >= start]
        title = f"#{event.n} {event.label}: {self._event_caption(event)}"
        plots.fault(path, title, (start - self.t0, end - self.t0), panels, nearby)

    # -- the page --

    def guarded(self, title: str, section: Callable[[], list[str]]) -> list[str]:
        """A section's lines; a failure (a bug) is logged and named instead of raised."""
        try:
            return section()
        except Exception as err:  # one broken plot must not cost the report
            log.exception("Report section failed. folder=%s section=%s", self.folder, title)
            return [(f"The {title} could not be drawn: `{type(err).__name__}: {err}` (the "
                     "traceback is in the harness log).")]

    def markdown(self) -> str:
        sections = [
            ("Counter gaps", self.guarded("counter chart", self.counter_section)),
            ("Buffer depth", self.guarded("buffer depth plot", self.buffer_section)),
            ("Gateway RSS and CPU", self.guarded("resources plot", self.resources_section)),
            ("Twin vs sim around each fault", self.guarded("fault plots", self.fault_section)),
        ]
        lines = [*self._header(), *self._outcome_lines(), *self._timeline_lines(), "## Plots",
                 ""]
        for title, body in sections:
            lines += [f"### {title}", "", *body, ""]
        lines += self._data_lines()
        return "\n".join(lines).rstrip() + "\n"

    def _header(self) -> list[str]:
        r = self.results
        name = str(r.get("scenario") or self.folder.name)
        passed = r.get("passed")
        lines = [f"# {name} — {_verdict(passed)}", ""]
        if r.get("about"):
            lines += [f"> {_cell(r['about'])}", ""]
        started, ended = _finite(r.get("started")), _finite(r.get("ended"))
        gateway = r.get("gateway")
        duration = None if started is None or ended is None else ended - started
        lines += ["| | |", "| --- | --- |",
                  f"| Gateway | {_cell(_code(str(gateway))) if gateway else 'unknown'} |",
                  f"| Started | {_iso(started)} |", f"| Ended | {_iso(ended)} |",
                  f"| Duration | {_duration(duration)} |", "",
                  f"Times are seconds since the scenario started ({_iso(self.t0)}).", ""]
        if self.notes:
            lines += [f"**{note}**" for note in self.notes] + [""]
        return lines

    def _outcome_lines(self) -> list[str]:
        if not self.outcomes:
            return ["## Expectations", "", "No expectation was judged.", ""]
        lines = ["## Expectations", "", "| Expectation | Kind | Result | Summary |",
                 "| --- | --- | --- | --- |"]
        lines += [f"| {_cell(o.name)} | {_cell(o.kind)} | {_verdict(o.passed)} | "
                  f"{_cell(o.summary)} |" for o in self.outcomes]
        lines.append("")
        for outcome in self.outcomes:
            lines += [f"### {outcome.name} — {_verdict(outcome.passed)}", ""]
            lines += [f"- {key}: {_figure_text(value)}"
                      for key, value in outcome.figures.items()] or ["- no figures"]
            lines.append("")
        return lines

    def _timeline_lines(self) -> list[str]:
        lines = ["## Timeline", ""]
        if not self.events:
            held = self.files.get("events.jsonl", "missing")
            return [*lines, f"No timeline events were recorded (data/events.jsonl is {held}).",
                    ""]
        lines += ["| # | t+s | id | action | args | duration | detail | plot |",
                  "| ---: | ---: | --- | --- | --- | ---: | --- | --- |"]
        for e in self.events:
            plot = self.fault_files.get(e.n)
            lines.append(
                f"| {e.n} | {e.t - self.t0:.1f} | {_cell(e.id)} | {_cell(e.action)} | "
                f"{_cell(_args_text(e.args))} | "
                f"{'' if e.end is None else _duration(e.end - e.t)} | {_cell(e.detail)} | "
                f"{f'[plot]({plot})' if plot else ''} |")
        return [*lines, ""]

    def _data_lines(self) -> list[str]:
        for name in UNREAD:
            path = self.data / name
            self.files[name] = (f"{path.stat().st_size:,} bytes (not read by the report)"
                                if path.exists() else "missing")
        lines = ["## Recorded data", "", "| File | Held |", "| --- | --- |"]
        lines += [f"| data/{name} | {_cell(status)} |" for name, status in sorted(
            self.files.items())]
        logs = sorted(p for p in (self.folder / "logs").glob("*") if p.is_file()) \
            if (self.folder / "logs").is_dir() else []
        lines += ["", "Logs: " + (", ".join(f"[{p.name}](logs/{p.name}) ({p.stat().st_size:,} "
                                             "bytes)" for p in logs) or "none recorded.")]
        return lines


def _rss_trend(t: FloatArray, pid: FloatArray, rss: FloatArray) -> tuple[plots.Trend | None,
                                                                          float]:
    """The least-squares RSS trend of the longest-lived process after warm-up.

    It is fitted as the resources judge fits it, so the plot and the judgement quote the
    same slope. Returns the trend (None when fewer than ``MIN_TREND_SAMPLES`` samples
    remain) and the warm-up in seconds.
    """
    warmup = max(WARMUP_MIN_S, WARMUP_FRACTION * float(t[-1] - t[0]))
    spans = {p: float(np.ptp(t[pid == p])) for p in np.unique(pid)}
    longest = max(spans, key=lambda p: spans[p])
    mine = pid == longest
    kept = mine & (t >= t[mine][0] + warmup)
    if kept.sum() < MIN_TREND_SAMPLES:
        return None, warmup
    hours = (t[kept] - t[kept][0]) / SECONDS_PER_HOUR
    slope, intercept = np.polyfit(hours, rss[kept] / MB, 1)
    return plots.Trend(
        float(t[kept][0]), float(t[kept][-1]), float(intercept) * MB / MIB,
        float(intercept + slope * hours[-1]) * MB / MIB, float(slope), int(longest),
        warmup), warmup


# -- the public API ----------------------------------------------------------------------------

def write_report(scenario_dir: Path) -> Path:
    """Write a scenario run's summary.md and PNGs next to its results.json; return summary.md.

    Reads results.json and data/*.jsonl of ``scenario_dir`` (never messages.jsonl).
    Missing or damaged inputs are described in the report instead of raising; a plot that
    fails for another reason is logged with its traceback and named in the report.
    """
    scenario_dir.mkdir(parents=True, exist_ok=True)
    summary = scenario_dir / SUMMARY
    summary.write_text(_ScenarioReport(scenario_dir).markdown(), encoding="utf-8")
    return summary


def _fault_matrix(scenario_dirs: Sequence[Path]) -> list[str]:
    """The fault matrix: every action of every scenario, what it cost and how fast it healed."""
    rows = []
    for folder in scenario_dirs:
        results, _ = _load_results(folder)
        started = _finite(results.get("started")) or 0.0
        for fault in results.get("faults") or []:
            if not isinstance(fault, dict) or fault.get("action") in ("gateway_exited", "freeze"):
                continue
            at = _finite(fault.get("t"))
            converged = fault.get("converged_s")
            rows.append(
                f"| {_cell(str(fault.get('action')))} | {_cell(str(results.get('scenario')))} "
                f"| {_cell(str(fault.get('id')))} "
                f"| {'' if at is None else f'{at - started:.0f}'} "
                f"| {fault.get('for_s') or ''} | {fault.get('lost', '')} "
                f"| {'—' if converged is None else converged} |")
    if not rows:
        return []
    rows.sort()
    return ["", "## Fault matrix", "",
            "Each action of each scenario: when it began (seconds into the scenario), how long "
            "it lasted, the counter values the sim served while it was the latest action that "
            "never reached the broker, and how long after it ended the broker-side twin equalled "
            "the plant again (— where the scenario does not judge convergence, or never).", "",
            "| Fault | Scenario | Id | At s | For s | Samples lost | Converged after s |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |", *rows]


def write_run_summary(run_dir: Path, scenario_dirs: Sequence[Path]) -> Path:
    """Write the run's top summary.md in ``run_dir`` and return its path.

    One row per scenario: a link to its summary.md, PASS/FAIL, its duration and each
    failed expectation with its summary.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    rows, verdicts, total_s = [], [], 0.0
    for folder in scenario_dirs:
        results, problem = _load_results(folder)
        passed = results.get("passed")
        verdicts.append(passed if isinstance(passed, bool) else None)
        started, ended = _finite(results.get("started")), _finite(results.get("ended"))
        duration = None if started is None or ended is None else ended - started
        total_s += duration or 0.0
        name = str(results.get("scenario") or folder.name)
        link = Path(os.path.relpath(folder / SUMMARY, run_dir)).as_posix()
        target = f"[{_cell(name)}]({link})" if (folder / SUMMARY).exists() \
            else f"{_cell(name)} (no report)"
        failed = [f"**{_cell(o.name)}**: {_cell(o.summary)}" for o in _outcomes(results)
                  if o.passed is not True]
        if problem:
            failed.insert(0, _cell(problem))
        rows.append(f"| {target} | {_verdict(passed)} | {_duration(duration)} | "
                    f"{'<br>'.join(failed) or '—'} |")
    everything = bool(verdicts) and all(v is True for v in verdicts)
    tally = (f"{_count(len(verdicts), 'scenario')}: {sum(v is True for v in verdicts)} passed, "
             f"{sum(v is False for v in verdicts)} failed, "
             f"{sum(v is None for v in verdicts)} without a result; "
             f"{_duration(total_s)} in all.")
    lines = [f"# HIL run {run_dir.name} — {PASSED if everything else FAILED}", "", tally, "",
             "| Scenario | Result | Duration | Failed expectations |",
             "| --- | --- | ---: | --- |", *rows, *_fault_matrix(scenario_dirs)]
    summary = run_dir / SUMMARY
    summary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return summary
