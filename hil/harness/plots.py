"""The HIL report's PNGs: one function per plot, drawn from arrays the report prepared.

Why apart from ``report.py``: reading a run folder and drawing it change for different
reasons. Nothing here opens a data file; every function takes numpy arrays with time in
seconds since the scenario started and writes one PNG.

Figures are built with matplotlib's object API (a ``Figure`` rendered by the Agg canvas
when it is saved), never through ``pyplot``: no backend is switched, no rcParams change,
and no figure stays registered anywhere after its PNG is written.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

WIDTH_IN = 12.0  # at DPI, 1200 px wide
HEIGHT_IN = 6.0
DPI = 100
MAX_DRAWN = 4000  # points per series; a 1200 px axis cannot show more
MAX_LABELLED_MARKS = 30  # beyond this, event labels overlap into a black bar
LOG_DELAY_RATIO = 30.0  # peak delay over median delay above which the delay axis is log
LOG_FLOOR_S = 1e-3
HEADROOM = 1.15  # a flat series does not sit on the frame

LIVE = "tab:blue"
REPLAYED = "tab:orange"
MISSING = "tab:red"
SERVED = "0.55"
SPAN = "tab:purple"
INSTANT = "0.35"
SIM = "tab:green"


@dataclass(frozen=True)
class Mark:
    """One timeline event on a time axis: a span when ``end`` is set, else an instant."""

    start: float
    end: float | None
    label: str


@dataclass(frozen=True)
class CounterChart:
    """The counter point as received, as served, and what never arrived.

    ``runs`` has one row per served run: first value, last value, t_first, t_last.
    ``delay`` is, per received value, receive time minus served time (NaN when the value
    was never served).
    """

    point: str
    t: FloatArray
    value: FloatArray
    hist: BoolArray
    delay: FloatArray
    runs: FloatArray
    missing_t: FloatArray
    missing_value: FloatArray


@dataclass(frozen=True)
class DepthChart:
    """The outbox depth the gateway reported, and its drop counter when it has one."""

    t: FloatArray
    depth: FloatArray
    dropped: FloatArray | None


@dataclass(frozen=True)
class Trend:
    """A least-squares RSS line fitted over ``[t_start, t_end]`` of one process."""

    t_start: float
    t_end: float
    rss_start_mib: float
    rss_end_mib: float
    slope_mb_per_h: float
    pid: int
    warmup_s: float


@dataclass(frozen=True)
class ResourceChart:
    """RSS and CPU of the gateway process tree, with its restarts."""

    t: FloatArray
    pid: NDArray[np.int64]
    rss_mib: FloatArray
    cpu_t: FloatArray
    cpu_pct: FloatArray
    restarts: Sequence[tuple[float, int]]  # (time, new pid)
    trend: Trend | None


@dataclass(frozen=True)
class TracePanel:
    """One point around a fault: the broker-side twin and the sim's true value."""

    point: str
    twin_t: FloatArray
    twin_value: FloatArray
    twin_good: BoolArray
    sim_t: FloatArray
    sim_value: FloatArray


@contextlib.contextmanager
def _figure(path: Path, height_in: float = HEIGHT_IN) -> Iterator[Figure]:
    """A figure that is written to ``path`` when the block ends without an error."""
    figure = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    try:
        yield figure
        _legend(figure)
        figure.savefig(path, format="png")
    finally:
        figure.clear()


def _legend(figure: Figure) -> None:
    """One legend for the figure, right of the plots, where it hides neither data nor labels."""
    entries: dict[str, Artist] = {}
    for ax in figure.axes:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(name, handle)
    if entries:
        figure.legend(list(entries.values()), list(entries), loc="outside right upper",
                      fontsize=8, markerscale=2)


def thin(x: FloatArray, y: FloatArray, limit: int = MAX_DRAWN) -> tuple[FloatArray, FloatArray]:
    """At most about ``limit`` points of a series, keeping each bucket's lowest and highest.

    Buckets are consecutive runs of samples, so a gap in time stays a gap and a spike stays
    a spike; only points that would share a pixel are dropped.
    """
    n = len(x)
    if n <= limit:
        return x, y
    buckets = max(1, limit // 2)
    size = math.ceil(n / buckets)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = y
    rows = padded.reshape(buckets, size)
    low = np.where(np.isnan(rows), np.inf, rows).argmin(axis=1)
    high = np.where(np.isnan(rows), -np.inf, rows).argmax(axis=1)
    base = np.arange(buckets) * size
    keep = np.unique(np.concatenate([base + low, base + high]))
    keep = keep[keep < n]
    return x[keep], y[keep]


def break_gaps(t: FloatArray, y: FloatArray, gap_s: float) -> tuple[FloatArray, FloatArray]:
    """Insert a NaN wherever samples are more than ``gap_s`` apart, so lines do not bridge."""
    if len(t) <= 1:
        return t, y
    where = np.flatnonzero(np.diff(t) > gap_s) + 1
    return np.insert(t, where, np.nan), np.insert(y, where, np.nan)


def _headroom(ax: Axes, values: FloatArray) -> None:
    """Start the y axis at zero and leave room above the highest value."""
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if len(finite) else 0.0
    ax.set_ylim(0.0, max(1.0, top * HEADROOM))


def draw_marks(ax: Axes, marks: Sequence[Mark], *, labels: bool) -> None:
    """Shade the timeline's spans and draw its instants; label them at the top."""
    labels = labels and len(marks) <= MAX_LABELLED_MARKS
    transform = ax.get_xaxis_transform()
    for mark in marks:
        if mark.end is not None and mark.end > mark.start:
            ax.axvspan(mark.start, mark.end, color=SPAN, alpha=0.12, linewidth=0)
        else:
            ax.axvline(mark.start, color=INSTANT, linewidth=0.8, linestyle="--", alpha=0.8)
        if labels:
            ax.text(mark.start, 0.98, f" {mark.label}", transform=transform, rotation=90,
                    va="top", ha="left", fontsize=7, color="0.2", clip_on=True)


def counter_gaps(path: Path, chart: CounterChart, marks: Sequence[Mark]) -> None:
    """Counter values vs receive time, served runs, missing values; below, delivery delay."""
    with _figure(path, height_in=HEIGHT_IN + 1.5) as figure:
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        if len(chart.runs):
            xs = np.column_stack([chart.runs[:, 2], chart.runs[:, 3],
                                  np.full(len(chart.runs), np.nan)]).ravel()
            ys = np.column_stack([chart.runs[:, 0], chart.runs[:, 1],
                                  np.full(len(chart.runs), np.nan)]).ravel()
            top.plot(xs, ys, color=SERVED, linewidth=0.8,
                     label=f"served ({len(chart.runs):,} runs)")
        for hist, colour, name in ((False, LIVE, "live"), (True, REPLAYED, "replayed")):
            chosen = chart.hist == hist
            if not chosen.any():
                continue
            x, y = thin(chart.t[chosen], chart.value[chosen])
            top.plot(x, y, linestyle="none", marker=".", markersize=2.5, color=colour,
                     label=f"{name} ({int(chosen.sum()):,})")
            x, d = thin(chart.t[chosen], chart.delay[chosen])
            bottom.plot(x, d, linestyle="none", marker=".", markersize=2.5, color=colour)
        if len(chart.missing_t):
            top.plot(chart.missing_t, chart.missing_value, linestyle="none", marker="x",
                     markersize=6, color=MISSING, label=f"missing ({len(chart.missing_t):,})")
        _delay_scale(bottom, chart.delay)
        draw_marks(top, marks, labels=True)
        draw_marks(bottom, marks, labels=False)
        top.set_title(f"{chart.point}: values received vs served")
        top.set_ylabel("counter value")
        top.grid(visible=True, alpha=0.3)
        bottom.set_ylabel("delivery delay (s)")
        bottom.set_xlabel("seconds since scenario start")
        bottom.grid(visible=True, alpha=0.3)


def _delay_scale(ax: Axes, delay: FloatArray) -> None:
    """A log axis when an outage's delays dwarf the usual ones, else linear."""
    positive = delay[np.isfinite(delay) & (delay > 0)]
    if len(positive) and positive.max() / max(float(np.median(positive)), LOG_FLOOR_S) \
            > LOG_DELAY_RATIO:
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(LOG_FLOOR_S, float(positive.min()) / 2))


def buffer_depth(path: Path, chart: DepthChart, marks: Sequence[Mark], *, gap_s: float) -> None:
    """The outbox depth over time and, on a second axis, the drops the gateway counted."""
    with _figure(path) as figure:
        ax = figure.subplots()
        x, y = break_gaps(*thin(chart.t, chart.depth), gap_s)
        ax.plot(x, y, color=LIVE, linewidth=1.2, label="edgetwin_outbox_depth")
        _headroom(ax, chart.depth)
        ax.set_ylabel("outbox depth (rows)")
        ax.set_xlabel("seconds since scenario start")
        ax.grid(visible=True, alpha=0.3)
        if chart.dropped is not None:
            twin = ax.twinx()
            x, y = break_gaps(*thin(chart.t, chart.dropped), gap_s)
            twin.plot(x, y, color=MISSING, linewidth=1.0, linestyle="--",
                      label="edgetwin_outbox_dropped_total (right)")
            _headroom(twin, chart.dropped)
            twin.set_ylabel("dropped (total)", color=MISSING)
        draw_marks(ax, marks, labels=True)
        ax.set_title("Buffer depth across outages")


def resources(path: Path, chart: ResourceChart, marks: Sequence[Mark], *,
              gap_s: float) -> None:
    """RSS in MiB (with its trend after warm-up) and CPU in % of one core; restarts marked."""
    with _figure(path, height_in=HEIGHT_IN + 1.0) as figure:
        rss_ax, cpu_ax = figure.subplots(2, 1, sharex=True)
        starts = [0, *(np.flatnonzero(np.diff(chart.pid)) + 1), len(chart.pid)]
        for a, b in itertools.pairwise(starts):  # one line per process: a restart is no dip
            x, y = break_gaps(*thin(chart.t[a:b], chart.rss_mib[a:b]), gap_s)
            rss_ax.plot(x, y, color=LIVE, linewidth=1.2, label="RSS")
        if chart.trend is not None:
            trend = chart.trend
            rss_ax.plot([trend.t_start, trend.t_end], [trend.rss_start_mib, trend.rss_end_mib],
                        color=MISSING, linewidth=1.5, linestyle="--",
                        label=f"trend {trend.slope_mb_per_h:+.2f} MB/h\n(pid {trend.pid}, "
                              f"after {trend.warmup_s:.0f} s warm-up)")
        x, y = break_gaps(*thin(chart.cpu_t, chart.cpu_pct), gap_s)
        cpu_ax.plot(x, y, color=SIM, linewidth=1.0, label="CPU")
        _headroom(cpu_ax, chart.cpu_pct)
        for ax in (rss_ax, cpu_ax):
            draw_marks(ax, marks, labels=ax is rss_ax)
            for t, _pid in chart.restarts:
                ax.axvline(t, color=MISSING, linewidth=1.2)
            ax.grid(visible=True, alpha=0.3)
        for t, pid in chart.restarts:
            rss_ax.text(t, 0.02, f" new pid {pid}", transform=rss_ax.get_xaxis_transform(),
                        rotation=90, va="bottom", ha="left", fontsize=7, color=MISSING,
                        clip_on=True)
        rss_ax.set_title("Gateway process tree: memory and CPU")
        rss_ax.set_ylabel("RSS (MiB)")
        cpu_ax.set_ylabel("CPU (% of one core)")
        cpu_ax.set_xlabel("seconds since scenario start")


def fault(path: Path, title: str, window: tuple[float, float], panels: Sequence[TracePanel],
          marks: Sequence[Mark]) -> None:
    """One subplot per point: the twin as a step line and the sim's value, around a fault."""
    height = max(HEIGHT_IN, 1.0 + 1.9 * len(panels))
    with _figure(path, height_in=height) as figure:
        axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, panel in zip(axes, panels, strict=True):
            _trace(ax, panel)
            draw_marks(ax, marks, labels=ax is axes[0])
            ax.set_xlim(*window)
        axes[0].set_title(title)
        axes[-1].set_xlabel("seconds since scenario start")


def _trace(ax: Axes, panel: TracePanel) -> None:
    if len(panel.sim_t):
        ax.plot(panel.sim_t, panel.sim_value, color=SIM, linewidth=1.0, marker=".",
                markersize=3, label="sim (truth)")
    if len(panel.twin_t):
        ax.step(panel.twin_t, panel.twin_value, where="post", color=LIVE, linewidth=1.3,
                label="twin (broker)")
        bad = ~panel.twin_good
        if bad.any():
            ax.plot(panel.twin_t[bad], panel.twin_value[bad], linestyle="none", marker="x",
                    color=MISSING, markersize=5, label="twin not GOOD")
    if not ax.has_data():
        ax.text(0.5, 0.5, "no numeric values in this window", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
    ax.set_ylabel(panel.point, fontsize=8)
    ax.grid(visible=True, alpha=0.3)
