"""Per-source link health: log once per outage and once on recovery, count every failure.

Also the per-source request statistics a polling driver reports through ``request()``.
Points per second are not kept here: they are ``rate(edgetwin_source_samples_total[1m])``
of the samples counter the daemon keeps per source, since Prometheus derives rates from
counters (a gauge of its own would only repeat that with a fixed window).
"""

from __future__ import annotations

import bisect
import time
from typing import TYPE_CHECKING, Final, Literal, cast, get_args

import structlog
from structlog.typing import FilteringBoundLogger

if TYPE_CHECKING:
    from edgetwin.core.ports import SourceHealth
    from edgetwin.telemetry.metrics import Telemetry

_log: FilteringBoundLogger = structlog.get_logger("edgetwin.telemetry.health")

SourceState = Literal["starting", "up", "down", "stopped", "no_driver"]
"""``starting`` until the first answer; ``stopped``/``no_driver`` are set by the daemon."""

SOURCE_STATES: frozenset[str] = frozenset(get_args(SourceState))

# States only the daemon decides; up/down come from the driver through up()/down().
_MARKABLE: frozenset[str] = frozenset({"starting", "stopped", "no_driver"})

REQUEST_OUTCOMES: Final = ("ok", "exception", "timeout", "error")
"""What ``SourceHealth.request`` may report; the ``outcome`` label of the requests counter."""

REQUEST_BUCKETS_S: Final = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
"""Latency histogram bounds: a Modbus TCP read on a LAN (about 1 ms) to a serial timeout."""


class RequestStats:
    """One source's requests by outcome and their latency histogram, as plain numbers.

    ``record`` runs for every request (thousands a second on a Pi), so it only adds to
    integers: about ten times cheaper than a prometheus_client counter and histogram, which
    take a lock per update. ``Telemetry`` renders these at scrape time.

    Attributes:
        by_outcome: requests per outcome (every one of ``REQUEST_OUTCOMES``).
        buckets: requests per latency bucket, not cumulative; the last one is above 2 s.
        sum_s: total latency, in seconds.
    """

    __slots__ = ("buckets", "by_outcome", "sum_s")

    def __init__(self) -> None:
        self.by_outcome = dict.fromkeys(REQUEST_OUTCOMES, 0)
        self.buckets = [0] * (len(REQUEST_BUCKETS_S) + 1)
        self.sum_s = 0.0

    def record(self, outcome: str, duration_s: float) -> None:
        """Count one request.

        Raises:
            KeyError: ``outcome`` is not one of ``REQUEST_OUTCOMES`` (a driver bug).
        """
        self.by_outcome[outcome] += 1
        # Bucket i counts durations <= REQUEST_BUCKETS_S[i]: Prometheus's "le".
        self.buckets[bisect.bisect_left(REQUEST_BUCKETS_S, duration_s)] += 1
        self.sum_s += duration_s

    @property
    def count(self) -> int:
        """Requests recorded."""
        return sum(self.buckets)


class SourceHealthTracker:
    """The ``SourceHealth`` a driver reports into, for one source instance.

    Implements ``edgetwin.core.ports.SourceHealth``. Calls are cheap and may repeat every
    poll: only transitions are logged, every failure is counted.

    Logging rules (Home Assistant's "once on failure, once on recovery"):

    - ``down()``: one error line ("Source is down") when the link goes down; every call
      increments ``edgetwin_errors_total{component="source"}``.
    - ``up()``: "Source is up" the first time, "Source recovered" after an outage.
    - ``point_error()``: one line per ``(point, error_code)`` pair until the pair is
      forgotten, which happens when the link recovers from an outage or the daemon marks
      the source ``starting`` again. The protocol has no per-point success call, so a
      point that fails, works and fails again with the same code within one link session
      is logged only once; every failure is still counted.
    - ``request()``: never logs; counted in ``requests`` (``RequestStats``), which
      ``Telemetry`` exports as ``edgetwin_source_requests_total{source,outcome}`` and
      ``edgetwin_source_request_seconds{source}``.

    Created by ``Telemetry.source_health``; not meant to be constructed directly.
    """

    def __init__(self, source: str, telemetry: Telemetry) -> None:
        self.source = source
        self._telemetry = telemetry
        self._state: SourceState = "starting"
        self._since_ns = time.time_ns()
        self._reason: str | None = None
        self._last_error: str | None = None
        self._last_error_code: str | None = None
        self._failures = 0
        self._outage_failures = 0
        self._polls = 0
        self._point_errors = 0
        self._last_cycle_ns: int | None = None
        self._last_cycle_s: float | None = None
        self._logged_points: set[tuple[str, str]] = set()
        self.requests = RequestStats()

        self._up_gauge = telemetry.gauge(
            "edgetwin_source_up",
            "1 while the source's link to its device is up, else 0.",
            labels=("source",),
        ).labels(source=source)
        self._up_gauge.set(0)
        self._polls_total = telemetry.counter(
            "edgetwin_source_polls_total",
            "Completed poll cycles (or subscription notifications).",
            labels=("source",),
        ).labels(source=source)
        self._poll_seconds = telemetry.histogram(
            "edgetwin_source_poll_seconds",
            "Duration of one poll cycle, in seconds.",
            labels=("source",),
        ).labels(source=source)
        # An alert on "no successful poll for N minutes" needs the time, not just a count.
        self._last_success = telemetry.gauge(
            "edgetwin_source_last_success_timestamp_seconds",
            "Unix time of the last completed poll cycle.",
            labels=("source",),
        ).labels(source=source)
        # edgetwin_errors_total has no source label; this one says which instance failed.
        self._source_errors = telemetry.counter(
            "edgetwin_source_errors_total",
            "Link failures and point errors, by source and error code.",
            labels=("source", "error_code"),
        )

    @property
    def state(self) -> SourceState:
        """The current state."""
        return self._state

    @property
    def since_ns(self) -> int:
        """Wall-clock time of the last state transition (``time.time_ns()``)."""
        return self._since_ns

    @property
    def last_error(self) -> str | None:
        """Text of the most recent link or point error, kept after recovery."""
        return self._last_error

    @property
    def polls(self) -> int:
        """Completed poll cycles."""
        return self._polls

    @property
    def point_errors(self) -> int:
        """Point errors reported, logged or not."""
        return self._point_errors

    @property
    def failures(self) -> int:
        """``down()`` calls, i.e. failed attempts to reach the device."""
        return self._failures

    @property
    def last_cycle_ns(self) -> int | None:
        """Wall-clock time the last poll cycle completed; None before the first one."""
        return self._last_cycle_ns

    def up(self) -> None:
        """The device answered; logs only when this changes the state."""
        previous = self._state
        if previous == "up":
            return
        now = time.time_ns()
        if previous == "down":
            _log.info(
                "Source recovered",
                source=self.source,
                down_for_s=round((now - self._since_ns) / 1e9, 3),
                failed_attempts=self._outage_failures,
                last_error=self._last_error,
            )
            # A new link session: point errors deserve a fresh line each.
            self._logged_points.clear()
        else:
            _log.info("Source is up", source=self.source)
        self._set_state("up", None, now)
        self._up_gauge.set(1)

    def down(self, error_code: str, error: BaseException | str) -> None:
        """The device or bus failed; counts every call, logs once per outage."""
        transition = self._state != "down"
        self._failures += 1
        self._last_error = _error_text(error)
        self._last_error_code = error_code
        self._source_errors.labels(source=self.source, error_code=error_code).inc()
        if transition:
            self._outage_failures = 0
            self._set_state("down", None, time.time_ns())
            self._up_gauge.set(0)
        self._outage_failures += 1
        self._telemetry.emit_error(
            "source",
            error_code,
            "poll",
            error,
            log=transition,
            message="Source is down",
            source=self.source,
        )

    def point_error(self, point: str, error_code: str, error: BaseException | str) -> None:
        """One point failed while the link is fine; logs once per (point, error_code)."""
        self._point_errors += 1
        self._last_error = _error_text(error)
        self._last_error_code = error_code
        key = (point, error_code)
        first = key not in self._logged_points
        if first:
            self._logged_points.add(key)
        self._source_errors.labels(source=self.source, error_code=error_code).inc()
        self._telemetry.emit_error(
            "source",
            error_code,
            "point",
            error,
            log=first,
            message="Point read failed",
            source=self.source,
            point=point,
        )

    def cycle(self, duration_s: float) -> None:
        """One poll cycle completed in ``duration_s`` seconds."""
        self._polls += 1
        self._last_cycle_ns = time.time_ns()
        self._last_cycle_s = duration_s
        self._polls_total.inc()
        self._poll_seconds.observe(duration_s)
        self._last_success.set(self._last_cycle_ns / 1e9)

    def request(self, outcome: str, duration_s: float) -> None:
        """One request ended with ``outcome`` after ``duration_s``; counted, never logged."""
        self.requests.record(outcome, duration_s)

    def mark(self, state: str, reason: str | None = None) -> None:
        """Set a state the driver cannot report: ``starting``, ``stopped`` or ``no_driver``.

        Called by the daemon, e.g. ``no_driver`` when the configured type has no plugin,
        ``stopped`` on shutdown, ``starting`` before the supervisor (re)starts the driver.
        Logs only when the state or reason changes.

        Raises:
            ValueError: ``state`` is not one of the three (``up``/``down`` come from the
                driver, so that they are counted and logged by the rules above).
        """
        if state not in _MARKABLE:
            msg = f"mark() state must be one of {sorted(_MARKABLE)}, not {state!r}"
            raise ValueError(msg)
        if state == self._state and reason == self._reason:
            return
        new_state = cast(SourceState, state)  # checked against _MARKABLE above
        if new_state == "no_driver":
            _log.warning("Source has no driver", source=self.source, reason=reason)
        elif new_state == "stopped":
            _log.info("Source stopped", source=self.source, reason=reason)
        else:
            _log.debug("Source starting", source=self.source, reason=reason)
            self._logged_points.clear()
        self._set_state(new_state, reason, time.time_ns())
        self._up_gauge.set(0)

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready summary for the status command."""
        return {
            "source": self.source,
            "state": self._state,
            "since_ns": self._since_ns,
            "reason": self._reason,
            "last_error": self._last_error,
            "last_error_code": self._last_error_code,
            "failures": self._failures,
            "polls": self._polls,
            "point_errors": self._point_errors,
            "last_cycle_ns": self._last_cycle_ns,
            "last_cycle_s": self._last_cycle_s,
            "requests": dict(self.requests.by_outcome),
        }

    def _set_state(self, state: SourceState, reason: str | None, now_ns: int) -> None:
        self._state = state
        self._reason = reason
        self._since_ns = now_ns


def _error_text(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        return str(error) or type(error).__name__
    return error


if TYPE_CHECKING:

    def _conforms(tracker: SourceHealthTracker) -> SourceHealth:
        """Makes mypy prove the tracker satisfies the core protocol."""
        return tracker
