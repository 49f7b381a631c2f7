"""Telemetry: the metric registry, emit_error, and per-source health trackers."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.core.errors import SourceUnavailable
from edgetwin.telemetry import ERRORS_TOTAL, Telemetry


def _value(t: Telemetry, name: str, **labels: str) -> float:
    value = t.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_emit_error_counts_and_logs_one_line(logs) -> None:
    """emit_error increments edgetwin_errors_total and writes exactly one error line."""
    t = Telemetry()
    t.emit_error("modbus", "timeout", "poll", TimeoutError("no answer in 0.5 s"), source="skid1")

    assert t.errors_count("modbus", "timeout") == 1
    assert _value(t, ERRORS_TOTAL, component="modbus", error_code="timeout") == 1
    (line,) = logs.lines()
    assert line["event"] == "Modbus poll failed"
    assert line["level"] == "error"
    assert line["component"] == "modbus"
    assert line["error_code"] == "timeout"
    assert line["stage"] == "poll"
    assert line["error"] == "no answer in 0.5 s"
    assert line["error_type"] == "TimeoutError"
    assert line["source"] == "skid1"


def test_emit_error_with_text_and_custom_message(logs) -> None:
    """A plain-string error has no error_type; message= overrides the event."""
    t = Telemetry()
    t.emit_error("sync", "broker_down", "publish", "connection refused", message="Broker is down")
    (line,) = logs.lines()
    assert line["event"] == "Broker is down"
    assert line["error"] == "connection refused"
    assert "error_type" not in line


def test_emit_error_empty_exception_text_uses_type_name(logs) -> None:
    """An exception with no message is still described (by its type)."""
    Telemetry().emit_error("source", "timeout", "poll", TimeoutError())
    assert logs.lines()[0]["error"] == "TimeoutError"


def test_emit_error_without_log_only_counts(logs) -> None:
    """log=False increments the counter and writes nothing."""
    t = Telemetry()
    for _ in range(3):
        t.emit_error("modbus", "timeout", "poll", "x", log=False)
    assert t.errors_count("modbus", "timeout") == 3
    assert logs.lines() == []


def test_metric_get_or_create_returns_the_same_object() -> None:
    """Asking twice for one name returns the same metric."""
    t = Telemetry()
    c = t.counter("edgetwin_outbox_dropped_total", "Dropped.", labels=("reason",))
    assert t.counter("edgetwin_outbox_dropped_total", "Dropped.", labels=("reason",)) is c
    g = t.gauge("edgetwin_outbox_bytes", "Bytes.")
    assert t.gauge("edgetwin_outbox_bytes", "Bytes.") is g
    h = t.histogram("edgetwin_sync_publish_seconds", "Latency.", buckets=(0.1, 1.0))
    assert t.histogram("edgetwin_sync_publish_seconds", "Latency.", buckets=(0.1, 1.0)) is h


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: t.gauge("outbox_bytes", "x"), "must start with 'edgetwin_'"),
        (lambda t: t.counter("edgetwin_outbox_dropped", "x"), "must end in '_total'"),
        (lambda t: t.gauge("edgetwin_errors_total", "x"), "already exists"),
        (
            lambda t: t.counter("edgetwin_errors_total", "x", labels=("component",)),
            "already exists",
        ),
        (
            lambda t: t.histogram("edgetwin_source_poll_seconds", "x", labels=("source",)),
            "already exists",
        ),
    ],
)
def test_conflicting_or_badly_named_metrics_are_refused(make, message: str) -> None:
    """Wrong prefix or suffix, or a clash in type, labels or buckets, raises ValueError."""
    t = Telemetry()
    t.histogram("edgetwin_source_poll_seconds", "x", labels=("source",), buckets=(1.0, 2.0))
    with pytest.raises(ValueError, match=message):
        make(t)


def test_registries_are_independent() -> None:
    """Two Telemetry instances do not share metrics (tests create many)."""
    a, b = Telemetry(), Telemetry(process_metrics=False)
    a.emit_error("modbus", "timeout", "poll", "x", log=False)
    assert a.errors_count("modbus", "timeout") == 1
    assert b.errors_count("modbus", "timeout") == 0
    assert b"process_" not in b.render()


def test_render_contains_metric_names() -> None:
    """render() is the text exposition with the standard metric names."""
    t = Telemetry()
    health = t.source_health("skid1")
    health.up()
    health.cycle(0.012)
    t.emit_error("modbus", "timeout", "poll", "x", log=False)
    text = t.render().decode()

    assert 'edgetwin_errors_total{component="modbus",error_code="timeout"} 1.0' in text
    assert 'edgetwin_source_up{source="skid1"} 1.0' in text
    assert 'edgetwin_source_polls_total{source="skid1"} 1.0' in text
    assert 'edgetwin_source_poll_seconds_bucket{le="0.025",source="skid1"} 1.0' in text
    assert "# TYPE edgetwin_source_poll_seconds histogram" in text
    content_type, body = t.metrics_route()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b"edgetwin_errors_total" in body


def test_source_health_is_get_or_create() -> None:
    """One tracker per source name."""
    t = Telemetry()
    assert t.source_health("skid1") is t.source_health("skid1")
    assert t.source_health("skid1") is not t.source_health("skid2")
    assert sorted(t.source_trackers()) == ["skid1", "skid2"]


def test_one_log_line_per_outage_and_every_failure_counted(logs) -> None:
    """Many down() calls log once ("Source is down"), count each, and recovery logs once."""
    t = Telemetry()
    h = t.source_health("skid1")
    h.up()
    for _ in range(5):
        h.down("timeout", SourceUnavailable("modbus source 'skid1': no answer"))
    assert h.state == "down"
    assert _value(t, "edgetwin_source_up", source="skid1") == 0
    h.up()
    h.up()

    events = [line["event"] for line in logs.lines()]
    assert events == ["Source is up", "Source is down", "Source recovered"]
    down = logs.events("Source is down")[0]
    assert down["source"] == "skid1"
    assert down["component"] == "source"
    assert down["error_code"] == "timeout"
    assert down["stage"] == "poll"
    assert down["error"] == "modbus source 'skid1': no answer"
    assert down["error_type"] == "SourceUnavailable"
    recovered = logs.events("Source recovered")[0]
    assert recovered["failed_attempts"] == 5
    assert recovered["down_for_s"] >= 0

    assert t.errors_count("source", "timeout") == 5
    assert _value(t, "edgetwin_source_errors_total", source="skid1", error_code="timeout") == 5
    assert _value(t, "edgetwin_source_up", source="skid1") == 1
    assert h.state == "up"
    assert h.failures == 5
    assert h.last_error == "modbus source 'skid1': no answer"


def test_first_failure_while_starting_is_logged(logs) -> None:
    """A source that never came up logs its first failure, and "Source is up" when it does."""
    h = Telemetry().source_health("skid1")
    h.down("refused", ConnectionRefusedError("refused"))
    h.down("refused", ConnectionRefusedError("refused"))
    h.up()
    assert [line["event"] for line in logs.lines()] == ["Source is down", "Source recovered"]


def test_point_errors_log_once_per_point_and_code(logs) -> None:
    """point_error counts every call but logs each (point, code) once per link session."""
    t = Telemetry()
    h = t.source_health("skid1")
    h.up()
    for _ in range(3):
        h.point_error("pump1/temp", "nan", "value is NaN")
        h.point_error("pump1/flow", "nan", "value is NaN")
        h.point_error("pump1/temp", "exception_code", "illegal data address")
    assert h.point_errors == 9
    assert t.errors_count("source", "nan") == 6
    assert t.errors_count("source", "exception_code") == 3
    point_lines = logs.events("Point read failed")
    assert [(p["point"], p["error_code"]) for p in point_lines] == [
        ("pump1/temp", "nan"),
        ("pump1/flow", "nan"),
        ("pump1/temp", "exception_code"),
    ]
    assert point_lines[0]["stage"] == "point"

    # After an outage and recovery the same pair is news again.
    h.down("timeout", "no answer")
    h.up()
    h.point_error("pump1/temp", "nan", "value is NaN")
    assert len(logs.events("Point read failed")) == 4


def test_cycle_counts_polls_and_observes_duration() -> None:
    """cycle() feeds edgetwin_source_polls_total and the poll duration histogram."""
    t = Telemetry()
    h = t.source_health("skid1")
    assert h.last_cycle_ns is None
    h.cycle(0.01)
    h.cycle(0.2)
    assert h.polls == 2
    assert h.last_cycle_ns is not None
    assert _value(t, "edgetwin_source_polls_total", source="skid1") == 2
    assert _value(t, "edgetwin_source_poll_seconds_count", source="skid1") == 2
    assert _value(t, "edgetwin_source_poll_seconds_sum", source="skid1") == pytest.approx(0.21)


def test_request_counts_outcomes_and_latency_per_source() -> None:
    """request() feeds edgetwin_source_requests_total and edgetwin_source_request_seconds."""
    t = Telemetry(process_metrics=False)
    h = t.source_health("skid1")
    t.source_health("quiet")  # makes no requests (a subscription): no request series at all
    for outcome, duration_s in (("ok", 0.0004), ("ok", 0.001), ("exception", 0.003),
                                ("timeout", 0.5), ("error", 3.0)):
        h.request(outcome, duration_s)
    counts = [_value(t, "edgetwin_source_requests_total", source="skid1", outcome=outcome)
              for outcome in ("ok", "exception", "timeout", "error")]
    assert counts == [2, 1, 1, 1]
    bounds = ("0.001", "0.002", "0.005", "0.2", "0.5", "2.0", "+Inf")
    buckets = [_value(t, "edgetwin_source_request_seconds_bucket", source="skid1", le=le)
               for le in bounds]
    assert buckets == [2, 2, 3, 3, 4, 4, 5]  # cumulative; a bound counts a value equal to it
    assert _value(t, "edgetwin_source_request_seconds_count", source="skid1") == 5
    assert _value(t, "edgetwin_source_request_seconds_sum", source="skid1") == pytest.approx(3.5044)
    assert not [line for line in t.render().decode().splitlines()
                if line.startswith("edgetwin_source_request") and 'source="quiet"' in line]
    assert h.snapshot()["requests"] == {"ok": 2, "exception": 1, "timeout": 1, "error": 1}
    with pytest.raises(KeyError):
        h.request("late", 0.1)
    with pytest.raises(ValueError, match="already exists"):
        t.counter("edgetwin_source_requests_total", "x", labels=("source", "outcome"))


def test_mark_sets_daemon_states(logs) -> None:
    """mark() sets stopped/no_driver/starting, logs changes once, and refuses up/down."""
    t = Telemetry()
    h = t.source_health("skid1")
    h.up()
    before = h.since_ns
    h.mark("stopped", "shutdown")
    h.mark("stopped", "shutdown")
    assert h.state == "stopped"
    assert h.since_ns >= before
    assert _value(t, "edgetwin_source_up", source="skid1") == 0
    assert len(logs.events("Source stopped")) == 1

    h.mark("no_driver", "type 'bacnet' has no plugin")
    assert h.state == "no_driver"
    assert logs.events("Source has no driver")[0]["level"] == "warning"
    with pytest.raises(ValueError, match="mark\\(\\) state must be one of"):
        h.mark("up", None)


def test_snapshot_is_json_ready() -> None:
    """snapshot() has the status fields and serialises to JSON."""
    h = Telemetry().source_health("skid1")
    h.up()
    h.cycle(0.05)
    h.down("timeout", TimeoutError("late"))
    snap = h.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["source"] == "skid1"
    assert snap["state"] == "down"
    assert snap["last_error"] == "late"
    assert snap["last_error_code"] == "timeout"
    assert snap["failures"] == 1
    assert snap["polls"] == 1
    assert snap["point_errors"] == 0
    assert snap["last_cycle_s"] == 0.05
    assert isinstance(snap["since_ns"], int)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["up", "down", "point"]), max_size=40))
def test_logs_match_transitions_for_any_call_sequence(capture_logs, calls: list[str]) -> None:
    """For any call sequence: one down line per outage, one up line per recovery, all counted."""
    with capture_logs() as logs:
        t = Telemetry(process_metrics=False)
        h = t.source_health("s")
        state = "starting"
        outages = recoveries = downs = 0
        for call in calls:
            if call == "up":
                if state != "up":
                    recoveries += 1
                state = "up"
                h.up()
            elif call == "down":
                if state != "down":
                    outages += 1
                state = "down"
                downs += 1
                h.down("timeout", "x")
            else:
                h.point_error("a/b", "nan", "x")

        assert len(logs.events("Source is down")) == outages
        up_lines = logs.events("Source is up") + logs.events("Source recovered")
        assert len(up_lines) == recoveries
        assert t.errors_count("source", "timeout") == downs
        assert h.failures == downs
        assert h.point_errors == calls.count("point")
        assert len(logs.events("Point read failed")) <= calls.count("point")
        assert h.state == state


def test_cycle_records_the_last_success_time() -> None:
    """Each completed cycle sets the last-success gauge, for staleness alerts."""
    telemetry = Telemetry()
    before = time.time()
    telemetry.source_health("skid1").cycle(0.01)
    text = telemetry.render().decode()
    line = next(ln for ln in text.splitlines()
                if ln.startswith('edgetwin_source_last_success_timestamp_seconds{source="skid1"}'))
    assert float(line.split()[-1]) >= before
