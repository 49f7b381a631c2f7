"""Per-request metrics of the Modbus driver, checked against the requests the device saw."""

from __future__ import annotations

import pytest

from edgetwin.core.types import Quality
from edgetwin.telemetry import Telemetry
from edgetwin.telemetry.health import REQUEST_OUTCOMES
from plcsim import Sim
from plcsim.modbus_tcp import ModbusTcpFace
from tests.helpers.waiting import until
from tests.sources.modbus.test_driver import every
from tests.sources.modbus.test_rtu import ABSENT, PLC, VIBRATION
from tests.sources.modbus.test_shared_tcp import TIMEOUT_S, Unit, gateway  # noqa: F401  # fixture

pytestmark = pytest.mark.sim


def sample(telemetry: Telemetry, name: str, **labels: str) -> float:
    value = telemetry.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_requests_are_counted_by_outcome_and_timed(
    gateway: ModbusTcpFace, ticking_sim: Sim  # noqa: F811  # the fixture imported above
) -> None:
    """/metrics counts every request the device saw, by outcome, with its latency."""
    telemetry = Telemetry(process_metrics=False)
    unmapped = {"id": "pump1/nothing", "address": 50}  # exception 2, then parked
    plc = Unit(gateway, "plc", 1, [*PLC, unmapped], telemetry.source_health("plc"))
    vib = Unit(gateway, "vib", 2, VIBRATION, telemetry.source_health("vib"))
    ghost = Unit(gateway, "ghost", 3, ABSENT, telemetry.source_health("ghost"),
                 reconnect_initial_s=0.1)
    ticking_sim.faults.add("dropout", "modbus_tcp", unit=3)
    async with plc.running(), vib.running(), ghost.running():
        await plc.batches.wait_for(lambda b: b["pump1/counter"].quality is Quality.GOOD)
        await plc.batches.wait_for(lambda _b: True, after=10)
        await vib.batches.wait_for(every(Quality.GOOD), after=10)
        await ghost.batches.wait_for(every(Quality.BAD))
        ghost_stats = telemetry.source_health("ghost").requests
        await until(lambda: ghost_stats.count >= 2, 5.0, "the ghost tried twice")
    text = telemetry.render().decode()
    seen = gateway.responder.requests
    for name, unit in (("plc", 1), ("vib", 2), ("ghost", 3)):
        counted = sum(sample(telemetry, "edgetwin_source_requests_total", source=name,
                             outcome=outcome) for outcome in REQUEST_OUTCOMES)
        assert counted == sample(telemetry, "edgetwin_source_request_seconds_count", source=name)
        # Each source had at most one request in flight when it was stopped: the device
        # saw that one, the source never learnt how it ended.
        assert 0 <= seen[unit] - counted <= 1, (name, seen[unit], counted)
    assert sample(telemetry, "edgetwin_source_requests_total",
                  source="plc", outcome="exception") == 1
    ghost_requests = sample(telemetry, "edgetwin_source_request_seconds_count", source="ghost")
    assert ghost_requests >= 2
    assert sample(telemetry, "edgetwin_source_requests_total",
                  source="ghost", outcome="timeout") == ghost_requests
    # No answer comes before the timeout; every answer comes before it.
    assert sample(telemetry, "edgetwin_source_request_seconds_bucket",
                  source="ghost", le="0.1") == 0
    assert (sample(telemetry, "edgetwin_source_request_seconds_sum", source="ghost")
            >= TIMEOUT_S * ghost_requests)
    for name in ("plc", "vib"):
        answered = sample(telemetry, "edgetwin_source_request_seconds_count", source=name)
        assert answered > 10
        assert sample(telemetry, "edgetwin_source_request_seconds_sum",
                      source=name) < TIMEOUT_S * answered
        assert sample(telemetry, "edgetwin_source_requests_total",
                      source=name, outcome="timeout") == 0
    assert '# TYPE edgetwin_source_request_seconds histogram' in text
    assert 'edgetwin_source_requests_total{outcome="ok",source="vib"}' in text
