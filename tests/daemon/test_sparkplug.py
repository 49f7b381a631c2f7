"""The gateway as a Sparkplug B edge node on a real Mosquitto, judged from the broker.

Births before data, seq continuity, bdSeq matching between NBIRTH and the NDEATH Will,
rebirth on request, commands answered, and the primary host going offline and back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgetwin.sync.sparkplug.sparkplug_b_pb2 import Payload
from edgetwin.sync.sparkplug.values import DataType, set_value
from tests.daemon.conftest import GatewayProcess
from tests.helpers.mqtt import Received, Recorder, publish_once
from tests.helpers.procs import Broker, PlcSim

pytestmark = [pytest.mark.daemon, pytest.mark.broker]

NODE = "spBv1.0/test/{kind}/gw-spb"


def config_yaml(state_dir: Path, broker: int, sim: int, sync_extra: str = "") -> str:
    return f"""\
gateway: {{id: gw-spb, group: test, state_dir: {state_dir}, log_format: json}}
sources:
  - name: skid1
    type: modbus_tcp
    host: 127.0.0.1
    port: {sim}
    poll_interval: 0.05
    points:
      - {{id: pump1/counter, address: 0, type: uint32}}
      - {{id: pump1/motor_temp, address: 100, type: float32, deadband: 0.5}}
      - {{id: pump1/speed_setpoint, address: 4, type: uint16, writable: true}}
      - {{id: tank1/level, address: 0, kind: input, type: uint16, scale: 0.1}}
sync:
  mqtt: {{host: 127.0.0.1, port: {broker}, keepalive: 5}}
  schemes: [sparkplug, json]
{sync_extra}health:
  metrics: {{listen: "127.0.0.1:0"}}
"""


@pytest.fixture
def spb(tmp_path: Path, broker: Broker, plcsim: PlcSim,
        recorder_factory: Callable[..., Recorder]) -> Iterator[tuple[GatewayProcess, Recorder]]:
    config = tmp_path / "gateway.yaml"
    config.write_text(config_yaml(tmp_path / "state", broker.port, plcsim.port))
    gateway = GatewayProcess(config, tmp_path / "edgetwin.log")
    rec = recorder_factory("spBv1.0/#", "edgetwin/v1/gw-spb/#")
    yield gateway, rec
    gateway.close()


def decode(message: Received) -> Payload:
    payload = Payload()
    payload.ParseFromString(message.payload)
    return payload


def kind(message: Received) -> str:
    return message.topic.split("/")[2]


def node_messages(rec: Recorder) -> list[Received]:
    return [m for m in rec.on("") if m.topic.startswith("spBv1.0/test/") and kind(m) != "NDEATH"]


def bdseq(payload: Payload) -> int:
    return next(m.long_value for m in payload.metrics if m.name == "bdSeq")


def check_session(messages: list[Received]) -> None:
    """Births first, DBIRTH before any DATA of its device, seq +1 mod 256 throughout."""
    assert kind(messages[0]) == "NBIRTH" and decode(messages[0]).seq == 0
    born: set[str] = set()
    seq = 0
    for message in messages[1:]:
        payload = decode(message)
        assert payload.seq == (seq + 1) % 256, f"seq gap before {message.topic}"
        seq = payload.seq
        device = message.topic.split("/")[-1]
        if kind(message) == "DBIRTH":
            born.add(device)
        elif kind(message) == "DDATA":
            assert device in born, "DDATA before its DBIRTH"
            assert all(not m.name and m.alias for m in payload.metrics)


def test_births_data_and_the_ndeath_will_on_a_crash(
    spb: tuple[GatewayProcess, Recorder], recorder_factory: Callable[..., Recorder]
) -> None:
    """A running node, then SIGKILL: the broker publishes the NDEATH with the NBIRTH's bdSeq."""
    gateway, rec = spb
    gateway.start()
    rec.wait_for(lambda m: m.topic == NODE.format(kind="DDATA") + "/pump1")
    check_session(node_messages(rec))
    nbirth = decode(next(m for m in rec.on("") if kind(m) == "NBIRTH"))
    assert gateway.proc is not None
    gateway.proc.kill()
    death = rec.wait_for(lambda m: m.topic == NODE.format(kind="NDEATH"))
    assert death.qos == 1 and not death.retain
    assert bdseq(decode(death)) == bdseq(nbirth)
    rec.wait_for(lambda m: m.topic.endswith("/status") and not m.json()["online"])
    # The JSON status Will rides its own connection, and stays retained for newcomers.
    late = recorder_factory("edgetwin/v1/gw-spb/status")
    status = late.wait_for(lambda m: True)
    assert status.retain and status.json()["online"] is False


def test_rebirth_on_request_keeps_bdseq_and_restarts_seq(
    spb: tuple[GatewayProcess, Recorder], broker: Broker
) -> None:
    gateway, rec = spb
    gateway.start()
    rec.wait_for(lambda m: kind(m) == "DDATA")
    first = decode(next(m for m in rec.on("") if kind(m) == "NBIRTH"))
    before = len(rec.on(""))
    publish_once(broker.port, NODE.format(kind="NCMD"), ncmd_rebirth())
    again = rec.wait_for(lambda m: kind(m) == "NBIRTH" and rec.messages.index(m) >= before)
    assert decode(again).seq == 0 and bdseq(decode(again)) == bdseq(first)
    rec.wait_for(lambda m: kind(m) == "DBIRTH" and rec.messages.index(m) > before)
    code, _ = gateway.terminate()
    assert code == 0
    clean = rec.wait_for(lambda m: kind(m) == "NDEATH")  # published before DISCONNECT
    assert bdseq(decode(clean)) == bdseq(first)


def test_a_dcmd_write_is_decoded_and_answered(spb: tuple[GatewayProcess, Recorder],
                                              broker: Broker) -> None:
    """Until the safety policy exists every write is denied, with the reason, on cmd/result."""
    gateway, rec = spb
    gateway.start()
    rec.wait_for(lambda m: m.topic.endswith("/DBIRTH/gw-spb/pump1"))
    payload = Payload()
    payload.timestamp = int(time.time() * 1000)
    metric = payload.metrics.add()
    metric.name = "speed_setpoint"
    metric.datatype = DataType.INT64
    set_value(metric, DataType.INT64, 1200)
    publish_once(broker.port, NODE.format(kind="DCMD") + "/pump1", payload.SerializeToString())
    result = rec.wait_for(lambda m: m.topic.endswith("/cmd/result"))
    doc = result.json()
    assert doc["point"] == "pump1/speed_setpoint" and doc["value"] == 1200
    assert doc["accepted"] is False and "commands.enabled" in doc["reason"]



def ncmd_rebirth() -> bytes:
    payload = Payload()
    payload.timestamp = int(time.time() * 1000)
    metric = payload.metrics.add()
    metric.name = "Node Control/Rebirth"
    metric.datatype = DataType.BOOLEAN
    metric.boolean_value = True
    return payload.SerializeToString()


def state(online: bool, ts_ms: int) -> bytes:
    return json.dumps({"online": online, "timestamp": ts_ms}).encode()


def counter_values(rec: Recorder, alias: int, *, historical: bool) -> list[int]:
    out = []
    for m in rec.on("/DDATA/gw-spb/pump1"):
        for metric in decode(m).metrics:
            if metric.alias == alias and metric.is_historical == historical:
                out.append(metric.long_value)
    return out


def test_primary_host_offline_holds_data_and_replays_it_as_history(
    tmp_path: Path, broker: Broker, plcsim: PlcSim, recorder_factory: Callable[..., Recorder]
) -> None:
    """STATE offline: NDEATH, no births until the host is back; then the gap comes as history."""
    host_topic = "spBv1.0/STATE/scada1"
    publish_once(broker.port, host_topic, state(True, 1000), retain=True)
    config = tmp_path / "gateway.yaml"
    config.write_text(config_yaml(tmp_path / "state", broker.port, plcsim.port,
                                  "  sparkplug: {primary_host: scada1}\n"))
    gateway = GatewayProcess(config, tmp_path / "edgetwin.log")
    rec = recorder_factory("spBv1.0/test/#")
    try:
        gateway.start()
        rec.wait_for(lambda m: kind(m) == "DDATA")
        births = decode(next(m for m in rec.on("") if m.topic.endswith("/DBIRTH/gw-spb/pump1")))
        alias = next(m.alias for m in births.metrics if m.name == "counter")

        publish_once(broker.port, host_topic, state(False, 2000), retain=True)
        rec.wait_for(lambda m: kind(m) == "NDEATH")
        held_from = len(rec.messages)
        publish_once(broker.port, host_topic, state(True, 1500), retain=True)  # older: ignored
        time.sleep(1.0)  # the hold itself: counter ticks the gateway must keep
        assert not [m for m in rec.messages[held_from:] if kind(m) in ("NBIRTH", "DDATA")]

        publish_once(broker.port, host_topic, state(True, 3000), retain=True)
        rec.wait_for(lambda m: kind(m) == "NBIRTH" and rec.messages.index(m) >= held_from)
        rec.wait_for(lambda m: kind(m) == "DDATA" and any(
            x.is_historical for x in decode(m).metrics))
        rec.wait_for(lambda m: kind(m) == "DDATA" and rec.messages.index(m) > held_from and any(
            not x.is_historical and x.alias == alias for x in decode(m).metrics))
        history = counter_values(rec, alias, historical=True)
        live = counter_values(rec, alias, historical=False)
        assert len(history) >= 5  # about 1 s of ticks, held and replayed
        together = sorted(set(history) | set(live))
        assert together == list(range(together[0], together[-1] + 1)), "a counter value lost"
    finally:
        gateway.close()


def test_garbage_on_command_topics_is_audited_and_the_node_runs_on(
    spb: tuple[GatewayProcess, Recorder], broker: Broker
) -> None:
    """Malformed protobuf, an unknown device and an oversized payload: audited, not fatal."""
    gateway, rec = spb
    gateway.start()
    rec.wait_for(lambda m: m.topic.endswith("/DBIRTH/gw-spb/pump1"))
    publish_once(broker.port, NODE.format(kind="DCMD") + "/pump1", b"\xff\x00 not protobuf")
    publish_once(broker.port, NODE.format(kind="DCMD") + "/elsewhere", ncmd_rebirth())
    publish_once(broker.port, NODE.format(kind="NCMD"), b"\x00" * (300 * 1024))
    audit = [rec.wait_for(lambda m, c=code: m.topic.endswith("/audit") and m.json()["code"] == c)
             for code in ("malformed_payload", "unknown_point", "too_large")]
    assert all(a.json()["event"] == "inbound_refused" for a in audit)
    seen = len(rec.messages)
    rec.wait_for(lambda m: kind(m) == "DDATA" and rec.messages.index(m) >= seen)
    assert gateway.proc is not None and gateway.proc.poll() is None
