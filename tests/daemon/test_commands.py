"""Commands end to end: firmware-sim, the gateway as systemd runs it, Mosquitto.

Judged from the outside: the verdicts on cmd/result and the simulator's own write log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgetwin.safety import generate_keypair, load_private_key, signed_cmd_payload
from plcsim import SimProcess
from tests.daemon.conftest import GatewayProcess
from tests.helpers.mqtt import Recorder, publish_once
from tests.helpers.procs import Broker, plcsim_cli

pytestmark = [pytest.mark.daemon, pytest.mark.broker, pytest.mark.sim]

BASE = "edgetwin/v1/gw-cmd"


def config_yaml(state_dir: Path, broker: int, sim: int, key: Path) -> str:
    return f"""\
gateway: {{id: gw-cmd, group: test, state_dir: {state_dir}, log_format: json}}
sources:
  - name: skid1
    type: modbus_tcp
    host: 127.0.0.1
    port: {sim}
    poll_interval: 0.05
    points:
      - {{id: pump1/run, address: 0, kind: coil, type: bool, writable: true}}
      - {{id: pump1/speed_setpoint, address: 200, type: uint16, writable: true}}
      - {{id: tank1/level, address: 0, kind: input, type: uint16, scale: 0.1, stale_after: 2}}
commands:
  enabled: true
  require_signature: true
  keys: {{ops: {key}}}
  rules:
    - point: pump1/run
      type: bool
      interlock: "tank1/level > 10"
    - point: pump1/speed_setpoint
      type: int
      min: 0
      max: 1800
      max_step: 300
sync:
  mqtt: {{host: 127.0.0.1, port: {broker}, keepalive: 10}}
health:
  metrics: {{listen: "127.0.0.1:0"}}
"""


@pytest.fixture
async def sim() -> Iterator[SimProcess]:  # type: ignore[misc]
    process = await SimProcess.start("modbus", "--host", "127.0.0.1", "--port", "0")
    yield process
    await process.stop()




def result_for(rec: Recorder, command_id: str) -> dict:  # type: ignore[type-arg]
    message = rec.wait_for(lambda m: m.topic.endswith("/cmd/result")
                           and m.json().get("id") == command_id, timeout_s=20)
    return message.json()  # type: ignore[no-any-return]


def test_low_tank_denies_start_and_an_allowed_setpoint_reaches_the_plc(
    tmp_path: Path, broker: Broker, sim: SimProcess, recorder_factory: Callable[..., Recorder],
) -> None:
    """With the tank low the interlock denies start; an allowed setpoint is written.

    Nothing denied reaches the PLC's write log; the allowed one is confirmed by read-back.
    """
    assert sim.control is not None
    keys = generate_keypair(tmp_path / "keys", "ops")
    key = load_private_key(keys.private)
    config = tmp_path / "gateway.yaml"
    config.write_text(config_yaml(tmp_path / "state", broker.port, sim.port, keys.public))
    gateway = GatewayProcess(config, tmp_path / "edgetwin.log")
    rec = recorder_factory(f"{BASE}/#")
    plcsim_cli(sim.control, "fault", "add", "stuck", "--target", "tank_level", "--param", "value=5")
    try:
        gateway.start()
        rec.wait_for(lambda m: m.topic.endswith("/tank1/reported")
                     and m.json()["state"].get("level", {}).get("v") == 5.0)
        rec.wait_for(lambda m: m.topic.endswith("/pump1/reported")
                     and "speed_setpoint" in m.json()["state"])

        start = signed_cmd_payload(key, "ops", "pump1/run", True, command_id="c-start")
        publish_once(broker.port, f"{BASE}/cmd", json.dumps(start))
        denied = result_for(rec, "c-start")
        assert denied["accepted"] is False and "tank1/level" in denied["reason"]

        step = signed_cmd_payload(key, "ops", "pump1/speed_setpoint", 1800,
                                  command_id="c-step")
        publish_once(broker.port, f"{BASE}/cmd", json.dumps(step))
        too_far = result_for(rec, "c-step")
        assert too_far["accepted"] is False and "step" in too_far["reason"]

        tampered = signed_cmd_payload(key, "ops", "pump1/speed_setpoint", 1500,
                                      command_id="c-tamper")
        tampered["value"] = 1700
        publish_once(broker.port, f"{BASE}/cmd", json.dumps(tampered))
        assert "signature" in result_for(rec, "c-tamper")["reason"]
        assert json.loads(plcsim_cli(sim.control, "writes")) == [], "a denied write reached the PLC"

        ok = signed_cmd_payload(key, "ops", "pump1/speed_setpoint", 1500, command_id="c-ok")
        publish_once(broker.port, f"{BASE}/cmd", json.dumps(ok))
        accepted = result_for(rec, "c-ok")
        assert accepted["accepted"] is True, accepted["reason"]
        writes = json.loads(plcsim_cli(sim.control, "writes"))
        assert [(w["name"], w["value"], w["accepted"]) for w in writes] == [
            ("speed_setpoint_rpm", 1500, True)]
        # The same signed command again: a replay.
        publish_once(broker.port, f"{BASE}/cmd", json.dumps(ok))
        assert "replay" in result_for_second(rec, "c-ok")["reason"]
        audit = subprocess.run([sys.executable, "-m", "edgetwin", "audit", "tail", "-n", "10",
                                "--json", "-c", str(config)],
                               capture_output=True, text=True, timeout=30, check=True).stdout
        verdicts = [json.loads(line) for line in audit.splitlines()]
        assert {v.get("id") for v in verdicts} >= {"c-start", "c-step", "c-tamper", "c-ok"}
    finally:
        gateway.close()


def result_for_second(rec: Recorder, command_id: str) -> dict:  # type: ignore[type-arg]
    def second(m: object) -> bool:
        hits = [x for x in rec.on("/cmd/result") if x.json().get("id") == command_id]
        return len(hits) >= 2

    rec.wait_for(second, timeout_s=20)
    return [x for x in rec.on("/cmd/result") if x.json().get("id") == command_id][1].json()
