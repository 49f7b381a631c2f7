"""Vibration features and the anomaly alarm end to end: firmware-sim -> gateway -> Mosquitto.

The plant runs 20x faster than real time (one capture per plant second), the gateway reads
every capture over Modbus, computes its features, scores the default model, and the judge
only looks at what reaches the broker and at the simulator's own state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plcsim import SimProcess
from tests.daemon.conftest import GatewayProcess
from tests.helpers.mqtt import Recorder
from tests.helpers.procs import Broker, plcsim_cli

pytestmark = [pytest.mark.daemon, pytest.mark.broker, pytest.mark.sim]

MODEL = Path(__file__).resolve().parents[2] / "config" / "models" / "pump1_bearing.onnx"
SPEEDUP = 20
SCORE = "anomaly.pump1-bearing.score"


def config_yaml(state_dir: Path, broker: int, sim: int) -> str:
    return f"""\
gateway: {{id: gw-an, group: test, state_dir: {state_dir}, log_format: json}}
sources:
  - name: skid1
    type: modbus_tcp
    host: 127.0.0.1
    port: {sim}
    poll_interval: 0.05
    timeout: 1.0
    points:
      - {{id: pump1/shaft_hz, address: 400, type: int16, scale: 0.016666667, unit: Hz}}
      - id: pump1/vib_de
        address: 1000
        type: int16
        count: 4096
        waveform: {{sample_rate: 12000, scale: 0.001, unit: g, counter_address: 900,
                    counter_type: uint32}}
vibration:
  - point: pump1/vib_de
    window: 4096
    machine: {{shaft_hz_point: pump1/shaft_hz, iso_group: 2, foundation: rigid}}
    bearing: {{n_balls: 9, ball_diameter: 7.94, pitch_diameter: 39.04, contact_angle: 0}}
    envelope_band: [2000, 5000]
    features: [rms, kurtosis, velocity_rms, iso_zone, bpfo, bpfi, bsf]
anomaly:
  - name: pump1-bearing
    model: {MODEL}
    inputs: [pump1/vib_de.velocity_rms, pump1/vib_de.kurtosis, pump1/vib_de.bpfo,
             pump1/vib_de.bpfi]
    threshold: 4.72132
    hysteresis: {{raise_after: 3, clear_after: 5}}
sync:
  mqtt: {{host: 127.0.0.1, port: {broker}, keepalive: 10}}
health:
  metrics: {{listen: "127.0.0.1:0"}}
"""


@pytest.fixture
async def sim() -> Iterator[SimProcess]:  # type: ignore[misc]
    process = await SimProcess.start("modbus", "--host", "127.0.0.1", "--port", "0",
                                     "--speedup", str(SPEEDUP))
    yield process
    await process.stop()



def plant_time(control: str) -> float:
    return float(json.loads(plcsim_cli(control, "state"))["t_s"])


def scores(rec: Recorder) -> list[float]:
    out = []
    for m in rec.on("/pump1/reported"):
        point = m.json()["state"].get(SCORE)
        if point is not None and point["q"] == "GOOD":
            out.append(point["v"])
    return out


def test_features_flow_and_a_growing_bearing_fault_raises_the_alarm_early(
    tmp_path: Path, broker: Broker, sim: SimProcess,
    recorder_factory: Callable[..., Recorder],
) -> None:
    """Healthy running scores without alarms; a growing fault alarms before severity 0.3.

    The fault is an outer-race defect growing from zero; the alarm must reach the broker.
    """
    assert sim.control is not None
    config = tmp_path / "gateway.yaml"
    config.write_text(config_yaml(tmp_path / "state", broker.port, sim.port))
    gateway = GatewayProcess(config, tmp_path / "edgetwin.log")
    rec = recorder_factory("edgetwin/v1/gw-an/#")
    try:
        gateway.start()
        # About 400 plant seconds of healthy captures, each scored.
        rec.wait_for(lambda m: len(scores(rec)) >= 400, timeout_s=90)
        first = next(m.json()["state"] for m in rec.on("/pump1/reported")
                     if "vib_de.velocity_rms" in m.json()["state"])
        assert 0 < first["vib_de.velocity_rms"]["v"] < 2.8  # ISO zone A/B for a healthy pump
        assert first["vib_de.iso_zone"]["v"] in (1, 2)
        assert not rec.on("/alarms"), "a healthy pump raised an alarm"
        assert max(scores(rec)) < 4.72132 * 1.5

        growth = 0.002  # severity per plant second: 0.3 after 150 plant seconds
        started = plant_time(sim.control)
        plcsim_cli(sim.control, "fault", "add", "bearing", "--target", "vib_de",
               "--param", "mode=outer", "--param", "severity=0",
               "--param", f"growth_per_s={growth}")
        alarm = rec.wait_for(lambda m: m.topic.endswith("/alarms")
                             and m.json().get("alarm") == "pump1-bearing", timeout_s=60)
        severity = growth * (plant_time(sim.control) - started)  # an upper bound
        assert alarm.json()["active"] is True and alarm.json()["asset"] == "pump1"
        print(f"alarm raised at bearing severity <= {severity:.3f}")
        assert severity < 0.3
    finally:
        gateway.close()
