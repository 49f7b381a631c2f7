"""Logs, metrics, source health, systemd notifications and the /metrics + /status endpoint."""

from edgetwin.telemetry.health import SOURCE_STATES, SourceHealthTracker, SourceState
from edgetwin.telemetry.http import (
    EndpointError,
    EndpointUnavailable,
    HttpEndpoint,
    Route,
    fetch_json,
    json_body,
    start_http,
)
from edgetwin.telemetry.logging import configure_logging, reset_logging, under_systemd
from edgetwin.telemetry.metrics import DEFAULT_BUCKETS_S, ERRORS_TOTAL, Telemetry
from edgetwin.telemetry.sdnotify import SystemdNotifier, run_watchdog

__all__ = [
    "DEFAULT_BUCKETS_S",
    "ERRORS_TOTAL",
    "SOURCE_STATES",
    "EndpointError",
    "EndpointUnavailable",
    "HttpEndpoint",
    "Route",
    "SourceHealthTracker",
    "SourceState",
    "SystemdNotifier",
    "Telemetry",
    "configure_logging",
    "fetch_json",
    "json_body",
    "reset_logging",
    "run_watchdog",
    "start_http",
    "under_systemd",
]
