"""The gateway's metrics registry and ``emit_error``, the one way errors are reported."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from structlog.typing import FilteringBoundLogger

from edgetwin.telemetry.health import REQUEST_BUCKETS_S, SourceHealthTracker

_log: FilteringBoundLogger = structlog.get_logger("edgetwin.telemetry")

METRIC_PREFIX: Final = "edgetwin_"

ERRORS_TOTAL: Final = "edgetwin_errors_total"
REQUESTS_TOTAL: Final = "edgetwin_source_requests_total"
REQUEST_SECONDS: Final = "edgetwin_source_request_seconds"

DEFAULT_BUCKETS_S: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Histogram buckets in seconds, from a fast Modbus TCP read to a slow serial poll."""


@dataclass(frozen=True, slots=True)
class _Spec:
    """What a metric was created with; a second request must ask for the same thing."""

    kind: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] | None


# "le" labels as prometheus_client writes its own histograms' ("0.005", "1.0", "+Inf").
_BOUNDS: Final = [*(repr(float(b)) for b in REQUEST_BUCKETS_S), "+Inf"]


class _RequestCollector:
    """Renders every source's ``RequestStats`` at scrape time: the hot path only adds ints.

    A source appears once it made a request, so sources that make none (subscriptions, a
    line device) carry no series of zeros.
    """

    def __init__(self, trackers: Mapping[str, SourceHealthTracker]) -> None:
        self._trackers = trackers

    def collect(self) -> Iterator[Metric]:
        """The two metric families, one series set per source that made a request."""
        requests = CounterMetricFamily(
            REQUESTS_TOTAL,
            "Requests to the device, by source and outcome (ok, exception, timeout, error).",
            labels=("source", "outcome"),
        )
        latency = HistogramMetricFamily(
            REQUEST_SECONDS,
            "Time from sending a request to its answer (or its failure), in seconds.",
            labels=("source",),
        )
        for source, tracker in self._trackers.items():
            stats = tracker.requests
            if not stats.count:
                continue
            for outcome, count in stats.by_outcome.items():
                requests.add_metric((source, outcome), count)
            cumulative = itertools.accumulate(stats.buckets)
            latency.add_metric((source,), list(zip(_BOUNDS, cumulative, strict=True)),
                               stats.sum_s)
        yield requests
        yield latency


class Telemetry:
    """Owns the gateway's Prometheus registry, its error counter and per-source health.

    One instance per daemon (and one per test: each owns a private ``CollectorRegistry``,
    never the process-global one, so instances do not collide). Everything runs on the
    event loop; no method blocks or starts a thread.

    Metric names follow ``edgetwin_<area>_<thing>_<unit|total>``; the constructors refuse
    names without the ``edgetwin_`` prefix and counters without the ``_total`` suffix, so
    a typo fails in the first test rather than on a dashboard.

    Args:
        process_metrics: Also export ``process_*`` (CPU, memory, open fds) from /proc.
    """

    def __init__(self, *, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._specs: dict[str, _Spec] = {}
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[str, Histogram] = {}
        self._sources: dict[str, SourceHealthTracker] = {}
        if process_metrics:
            ProcessCollector(registry=self.registry)
        self._errors = self.counter(
            ERRORS_TOTAL,
            "Errors reported through emit_error, by component and error code.",
            labels=("component", "error_code"),
        )
        self.registry.register(_RequestCollector(self._sources))
        for name in (REQUESTS_TOTAL, REQUEST_SECONDS):  # taken: counter() etc. refuse them
            self._specs[name] = _Spec("collector", (), None)

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        """Get or create a counter; ``name`` must end in ``_total``.

        Raises:
            ValueError: Bad name, or the name exists with another type or label set.
        """
        if not name.endswith("_total"):
            msg = f"counter {name!r} must end in '_total'"
            raise ValueError(msg)
        spec = _Spec("counter", tuple(labels), None)
        self._check(name, spec)
        metric = self._counters.get(name)
        if metric is None:
            metric = Counter(name, doc, labelnames=spec.labels, registry=self.registry)
            self._counters[name] = metric
            self._specs[name] = spec
        return metric

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        """Get or create a gauge.

        Raises:
            ValueError: Bad name, or the name exists with another type or label set.
        """
        spec = _Spec("gauge", tuple(labels), None)
        self._check(name, spec)
        metric = self._gauges.get(name)
        if metric is None:
            metric = Gauge(name, doc, labelnames=spec.labels, registry=self.registry)
            self._gauges[name] = metric
            self._specs[name] = spec
        return metric

    def histogram(
        self,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS_S,
    ) -> Histogram:
        """Get or create a histogram; the default buckets suit durations in seconds.

        Raises:
            ValueError: Bad name, or the name exists with another type, labels or buckets.
        """
        bounds = tuple(float(b) for b in buckets)
        spec = _Spec("histogram", tuple(labels), bounds)
        self._check(name, spec)
        metric = self._histograms.get(name)
        if metric is None:
            metric = Histogram(
                name, doc, labelnames=spec.labels, buckets=bounds, registry=self.registry
            )
            self._histograms[name] = metric
            self._specs[name] = spec
        return metric

    def _check(self, name: str, spec: _Spec) -> None:
        if not name.startswith(METRIC_PREFIX):
            msg = f"metric {name!r} must start with {METRIC_PREFIX!r}"
            raise ValueError(msg)
        existing = self._specs.get(name)
        if existing is not None and existing != spec:
            msg = f"metric {name!r} already exists as {existing}, not {spec}"
            raise ValueError(msg)

    def emit_error(
        self,
        component: str,
        error_code: str,
        stage: str,
        error: BaseException | str,
        *,
        log: bool = True,
        message: str | None = None,
        **fields: Any,
    ) -> None:
        """Count an error and, unless ``log`` is false, write one error-level log line.

        This is the only place errors are reported, so the log and
        ``edgetwin_errors_total{component,error_code}`` always agree (Vector's
        ``InternalEvent``). Callers that rate-limit their logging (one line per outage)
        still call this on every failure with ``log=False`` so every attempt is counted.

        The log line carries ``component``, ``error_code``, ``stage``, ``error`` (the
        exception's text, or its type name when the text is empty), ``error_type`` (the
        exception's class name; absent for a plain string) and ``fields``.

        Args:
            component: The plugin id or core area (``modbus``, ``source``, ``sync``).
            error_code: Short stable label, e.g. ``timeout``; becomes a metric label, so
                it must come from a small fixed set, never from error text.
            stage: Where it happened (``connect``, ``poll``, ``decode``, ``publish``).
            error: The exception or a description.
            log: Write the log line; the counter is incremented either way.
            message: The log event; defaults to ``"<Component> <stage> failed"``.
            **fields: Extra structured fields, e.g. ``source="skid1"``.
        """
        self._errors.labels(component=component, error_code=error_code).inc()
        if not log:
            return
        event = message or f"{component.capitalize()} {stage} failed"
        if isinstance(error, BaseException):
            text = str(error) or type(error).__name__
            _log.error(
                event,
                component=component,
                error_code=error_code,
                stage=stage,
                error=text,
                error_type=type(error).__name__,
                **fields,
            )
        else:
            _log.error(
                event,
                component=component,
                error_code=error_code,
                stage=stage,
                error=error,
                **fields,
            )

    def errors_count(self, component: str, error_code: str) -> float:
        """Current value of ``edgetwin_errors_total`` for one label pair (0 if never seen)."""
        value = self.registry.get_sample_value(
            ERRORS_TOTAL, {"component": component, "error_code": error_code}
        )
        return 0.0 if value is None else value

    def source_health(self, source: str) -> SourceHealthTracker:
        """Get or create the health tracker of one source instance (by its config name)."""
        tracker = self._sources.get(source)
        if tracker is None:
            tracker = SourceHealthTracker(source, self)
            self._sources[source] = tracker
        return tracker

    def source_trackers(self) -> dict[str, SourceHealthTracker]:
        """Every tracker created so far, by source name (a copy)."""
        return dict(self._sources)

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)

    def metrics_route(self) -> tuple[str, bytes]:
        """``render()`` with its content type, ready to serve as an HTTP route.

        Declares text format 0.0.4: ``generate_latest`` writes a body every scraper parses
        as 0.0.4, while prometheus_client's ``CONTENT_TYPE_LATEST`` now says 1.0.0, a
        version not every scraper (older Prometheus, Telegraf, agents) may know.
        """
        return CONTENT_TYPE_PLAIN_0_0_4, self.render()
