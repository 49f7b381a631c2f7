"""What the gateway publishes as a Sparkplug B edge node, judged by pysparkplug's decoding.

The daemon runs against firmware-sim and a real Mosquitto; a subscriber records everything
on ``spBv1.0/#`` through a device death and return, a rebirth on request and a SIGKILL (the
broker then publishes the NDEATH Will). The recording goes to pysparkplug in its own venv
(``hil/interop/decode_sparkplug.py``), and every check below reads that decoder's output
only, never edgetwin's own protobuf module. The rule ids are the specification's
(FACTS.md §1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from plcsim import SimProcess
from plcsim.control import call
from tests.daemon.conftest import GatewayProcess
from tests.daemon.test_sparkplug import ncmd_rebirth
from tests.helpers.mqtt import Received, Recorder, publish_once
from tests.helpers.procs import Broker
from tests.interop.conftest import decode_with_pysparkplug, write_recording

pytestmark = [pytest.mark.daemon, pytest.mark.broker, pytest.mark.sim]

GROUP, NODE = "interop", "gw-interop"
BDSEQ, REBIRTH = "bdSeq", "Node Control/Rebirth"
NODE_KINDS = {"NBIRTH", "NDATA", "DBIRTH", "DDATA", "DDEATH", "NDEATH"}
# The Python type pysparkplug decodes each datatype's value into.
VALUE_TYPES = {
    **dict.fromkeys(("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"),
                    "int"),
    "FLOAT": "float", "DOUBLE": "float", "BOOLEAN": "bool",
    **dict.fromkeys(("STRING", "TEXT", "UUID"), "str"),
    "DATETIME": "datetime",
}


def config_yaml(state_dir: Path, broker: int, sim: int) -> str:
    """Two sources on the skid: the PLC (every value type it has) and the vibration module."""
    return f"""\
gateway: {{id: {NODE}, group: {GROUP}, state_dir: {state_dir}, log_format: json}}
sources:
  - name: skid1
    type: modbus_tcp
    host: 127.0.0.1
    port: {sim}
    poll_interval: 0.05
    timeout: 0.3
    points:
      - {{id: pump1/counter, address: 0, type: uint32}}
      - {{id: pump1/motor_temp, address: 100, type: float32, deadband: 0.001}}
      - {{id: pump1/flow, address: 300, type: float32, byte_order: CDAB}}
      - {{id: pump1/speed, address: 400, type: int16}}
      - {{id: pump1/current, address: 401, type: uint16, scale: 0.01}}
      - {{id: pump1/run, address: 0, kind: coil, type: bool}}
      - {{id: pump1/running, address: 2, kind: discrete, type: bool}}
      - {{id: pump1/unmapped, address: 7000, type: uint16}}
      - {{id: tank1/level, address: 0, kind: input, type: uint16, scale: 0.1}}
  - name: vib
    type: modbus_tcp
    host: 127.0.0.1
    port: {sim}
    unit_id: 2
    poll_interval: 0.05
    timeout: 0.3
    points:
      - {{id: vib1/capture_counter, address: 0, type: uint16}}
      - {{id: vib1/sample_rate, address: 1, kind: input, type: uint32}}
sync:
  mqtt: {{host: 127.0.0.1, port: {broker}, keepalive: 5}}
  schemes: [sparkplug]
health:
  metrics: {{listen: "127.0.0.1:0"}}
"""


def kind(message: Received) -> str:
    return message.topic.split("/")[2]


def node_topic(kind: str, device: str | None = None) -> str:
    base = f"spBv1.0/{GROUP}/{kind}/{NODE}"
    return base if device is None else f"{base}/{device}"


def after(rec: Recorder, start: int, predicate: Callable[[Received], bool]) -> Received:
    """Wait for a message matching ``predicate`` among those received after the first ``start``."""
    return rec.wait_for(
        lambda m: predicate(m) and any(x is m for x in rec.messages[start:]), timeout_s=15.0)


def record_a_node_life(rec: Recorder, gateway: GatewayProcess, broker: Broker,
                       control: str) -> None:
    """Births and data, a device lost and back, a rebirth on request, then SIGKILL."""
    gateway.start()
    after(rec, 0, lambda m: m.topic == node_topic("DBIRTH", "vib1"))
    after(rec, 0, lambda m: m.topic == node_topic("DDATA", "pump1"))

    # The vibration module stops answering: its source goes down (DDEATH), then back (DBIRTH).
    call(control, "POST", "/faults",
         {"kind": "dropout", "target": "modbus_tcp", "duration_s": 1.0, "params": {"unit": 2}})
    death = after(rec, 0, lambda m: m.topic == node_topic("DDEATH", "vib1"))
    after(rec, rec.messages.index(death), lambda m: m.topic == node_topic("DBIRTH", "vib1"))

    mark = len(rec.messages)
    publish_once(broker.port, node_topic("NCMD"), ncmd_rebirth())
    after(rec, mark, lambda m: kind(m) == "NBIRTH")
    after(rec, mark, lambda m: m.topic == node_topic("DDATA", "pump1"))

    assert gateway.proc is not None
    gateway.proc.kill()  # no clean stop: the broker publishes the Will
    after(rec, mark, lambda m: kind(m) == "NDEATH")


@dataclass
class Session:
    """What a host knows between an NBIRTH and the next one (one birth epoch)."""

    bdseq: int
    seq: int = 0
    aliases: dict[int, tuple[str | None, str]] = field(default_factory=dict)  # -> (device, name)
    born: dict[str, dict[int, str]] = field(default_factory=dict)  # device -> alias -> datatype


class Verdicts:
    """Every rule broken, with the message it was broken in; empty when all hold."""

    def __init__(self) -> None:
        self.broken: list[str] = []

    def expect(self, ok: bool, rule: str, message: dict[str, Any], what: str) -> None:
        if not ok:
            self.broken.append(f"[{rule}] #{message['index']} {message['topic']}: {what}")


def check_value(v: Verdicts, message: dict[str, Any], metric: dict[str, Any],
                datatype: str) -> None:
    """The value sits in the field its datatype names and decodes to that datatype's type."""
    label = metric["name"] or f"alias {metric['alias']}"
    wire_field = metric["wire"]["value_field"]
    if metric["is_null"]:
        v.expect(wire_field is None, "tck-id-operational-behavior-data-publish-nbirth-values",
                 message, f"{label} is null but carries {wire_field}")
        return
    v.expect(wire_field == metric["datatype_field"], "FACTS 1.3 DataType table",
             message, f"{label}: {datatype} belongs in {metric['datatype_field']}, "
             f"the value is in {wire_field}")
    v.expect(metric["value_type"] == VALUE_TYPES.get(datatype), "FACTS 1.3 DataType table",
             message,
             f"{label}: {datatype} decoded as {metric['value_type']} {metric['value']!r}")


def check_birth_metric(v: Verdicts, message: dict[str, Any], metric: dict[str, Any]) -> None:
    wire = metric["wire"]
    v.expect(wire["name"] and bool(metric["name"]), "tck-id-payloads-alias-birth-requirement",
             message, f"a birth metric without a name: {metric}")
    v.expect(wire["datatype"] and metric["datatype"] != "UNKNOWN",
             "tck-id-payloads-metric-datatype-req", message, f"{metric['name']}: no datatype")
    v.expect(metric["timestamp"] is not None, "tck-id-payloads-name-birth-data-requirement",
             message, f"{metric['name']}: no timestamp")
    check_value(v, message, metric, metric["datatype"])


def check_alias(v: Verdicts, session: Session, message: dict[str, Any], device: str | None,
                metric: dict[str, Any]) -> None:
    alias, name = metric["alias"], metric["name"]
    if alias is None:
        return
    known = session.aliases.setdefault(alias, (device, name))
    v.expect(known == (device, name), "tck-id-payloads-alias-uniqueness", message,
             f"alias {alias} is {device}/{name} here and {known[0]}/{known[1]} in a birth")


def check_nbirth(v: Verdicts, message: dict[str, Any]) -> Session:
    v.expect(message["seq"] == 0 and message["wire"]["seq"], "tck-id-topics-nbirth-seq-num",
             message, f"NBIRTH seq {message['seq']}")
    by_name = {m["name"]: m for m in message["metrics"]}
    bdseq = by_name.get(BDSEQ, {})
    v.expect(bdseq.get("datatype") == "INT64", "tck-id-topics-nbirth-bdseq-included", message,
             f"bdSeq metric: {bdseq or 'missing'}")
    rebirth = by_name.get(REBIRTH, {})
    v.expect(rebirth.get("datatype") == "BOOLEAN" and rebirth.get("value") is False,
             "tck-id-topics-nbirth-rebirth-metric", message, f"{REBIRTH}: {rebirth or 'missing'}")
    v.expect(rebirth.get("alias") is None and not (rebirth.get("wire") or {}).get("alias"),
             "tck-id-operational-behavior-data-commands-rebirth-name-aliases", message,
             f"{REBIRTH} has alias {rebirth.get('alias')}")
    session = Session(bdseq=int(bdseq.get("value", -1)))
    for metric in message["metrics"]:
        check_birth_metric(v, message, metric)
        check_alias(v, session, message, None, metric)
    return session


def check_device_message(v: Verdicts, session: Session, message: dict[str, Any]) -> None:
    kind, device = message["message_type"], message["device_id"]
    if kind == "DBIRTH":
        session.born[device] = {}
        for metric in message["metrics"]:
            check_birth_metric(v, message, metric)
            v.expect(metric["alias"] is not None, "tck-id-payloads-alias-birth-requirement",
                     message, f"{metric['name']} has no alias")
            check_alias(v, session, message, device, metric)
            if metric["alias"] is not None:
                session.born[device][metric["alias"]] = metric["datatype"]
    elif kind == "DDATA":
        born = session.born.get(device)
        v.expect(born is not None, "tck-id-payloads-dbirth-order", message,
                 f"DDATA of {device} without its DBIRTH in this session")
        v.expect(message["birth_index"] is not None, "tck-id-payloads-dbirth-order", message,
                 "pysparkplug had no birth to resolve it with")
        for metric in message["metrics"]:
            wire = metric["wire"]
            v.expect(wire["alias"] and not wire["name"],
                     "tck-id-payloads-alias-data-cmd-requirement", message,
                     f"DATA metric with name={wire['name']} alias={wire['alias']}")
            datatype = (born or {}).get(metric["alias"])
            v.expect(datatype is not None, "tck-id-payloads-alias-data-cmd-requirement", message,
                     f"alias {metric['alias']} is in no DBIRTH of {device}")
            v.expect(metric["timestamp"] is not None,
                     "tck-id-payloads-name-birth-data-requirement", message,
                     f"alias {metric['alias']}: no timestamp")
            if datatype is not None:
                v.expect(metric["datatype"] == datatype, "FACTS 1.3 DataType table", message,
                         f"alias {metric['alias']} decoded as {metric['datatype']}, born "
                         f"{datatype}")
                check_value(v, message, metric, datatype)
    elif kind == "DDEATH":
        v.expect(device in session.born, "tck-id-operational-behavior-device-ddeath", message,
                 f"DDEATH of {device}, which is not alive")
        session.born.pop(device, None)


def check_ndeath(v: Verdicts, message: dict[str, Any], births: list[Session]) -> None:
    v.expect(message["qos"] == 1 and message["retain"] is False,
             "tck-id-payloads-ndeath-will-message-qos", message,
             f"NDEATH qos {message['qos']} retain {message['retain']}")
    v.expect(not message["wire"]["seq"], "tck-id-payloads-ndeath-seq", message, "NDEATH has seq")
    metrics = message["metrics"]
    v.expect(message["wire"]["metrics"] == 1 and metrics[0]["name"] == BDSEQ
             and metrics[0]["datatype"] == "INT64", "tck-id-topics-ndeath-payload", message,
             f"NDEATH metrics: {metrics}")
    value = metrics[0]["value"] if metrics else None
    for session in births:
        v.expect(session.bdseq == value, "tck-id-topics-nbirth-bdseq-matching", message,
                 f"NDEATH bdSeq {value} != NBIRTH bdSeq {session.bdseq}")


def judge(decoded: list[dict[str, Any]]) -> tuple[list[str], dict[str, int]]:
    """Check the decoder's view of a node's life; returns the rules broken and message counts."""
    v = Verdicts()
    for message in decoded:
        v.expect(message["error"] is None, "pysparkplug", message, str(message["error"]))
    node = [m for m in decoded if m["message_type"] in NODE_KINDS and m["error"] is None]
    counts = {k: sum(m["message_type"] == k for m in node) for k in sorted(NODE_KINDS)}
    if not node or node[0]["message_type"] != "NBIRTH":
        v.broken.append("[tck-id-topics-nbirth-seq-num] the first message is not an NBIRTH")
    sessions: list[Session] = []
    session: Session | None = None
    for message in node:
        kind = message["message_type"]
        has_device = message["device_id"] is not None
        v.expect(has_device == kind.startswith("D"), "tck-id-topic-structure", message,
                 "device id present/absent against the message type")
        if kind == "NDEATH":
            check_ndeath(v, message, sessions)
            session = None
            continue
        v.expect(message["qos"] == 0 and message["retain"] is False,
                 f"tck-id-topics-{kind.lower()}-mqtt", message,
                 f"qos {message['qos']} retain {message['retain']}")
        if kind == "NBIRTH":
            session = check_nbirth(v, message)
            sessions.append(session)
            continue
        if session is None:
            v.broken.append(f"#{message['index']} {message['topic']}: outside a session")
            continue
        v.expect(message["wire"]["seq"] and message["seq"] == (session.seq + 1) % 256,
                 "tck-id-payloads-sequence-num-incrementing", message,
                 f"seq {message['seq']} after {session.seq}")
        session.seq = message["seq"] if message["seq"] is not None else session.seq
        check_device_message(v, session, message)
    return v.broken, counts


def repeated_in_data(decoded: list[dict[str, Any]]) -> list[str]:
    """DDATA metrics whose value and timestamp equal what the last BIRTH/DATA already carried.

    [tck-id-topics-ddata-payload] DDATA carries only metrics that changed since then. A
    DBIRTH reads the twin's current state, which already holds changes still queued in the
    outbox; the node must leave those out of the DDATA that follows.
    """
    last: dict[tuple[str, int], tuple[Any, ...]] = {}
    repeated = []
    for message in decoded:
        kind = message["message_type"]
        if kind == "NBIRTH":
            last.clear()
        if kind not in ("DBIRTH", "DDATA"):
            continue
        for metric in message["metrics"]:
            key = (message["device_id"], metric["alias"])
            now = (metric["value"], metric["timestamp"], metric["is_null"])
            if kind == "DDATA" and last.get(key) == now:
                repeated.append(f"#{message['index']} {message['topic']}: {metric['name']}")
            last[key] = now
    return repeated


async def test_everything_the_node_publishes_decodes_with_pysparkplug(
    tmp_path: Path, broker: Broker, modbus_sim: SimProcess, interop_python: Path,
    recorder_factory: Callable[..., Recorder],
) -> None:
    """Every message decodes with pysparkplug; births, seq, bdSeq, aliases and datatypes hold."""
    assert modbus_sim.control is not None
    config = tmp_path / "gateway.yaml"
    config.write_text(config_yaml(tmp_path / "state", broker.port, modbus_sim.port))
    gateway = GatewayProcess(config, tmp_path / "edgetwin.log")
    rec = recorder_factory("spBv1.0/#")
    try:
        # Blocking waits on the recorder and the daemon: off the loop that runs the simulator.
        await asyncio.to_thread(record_a_node_life, rec, gateway, broker, modbus_sim.control)
    finally:
        gateway.close()
    recording = tmp_path / "sparkplug.jsonl"
    write_recording(list(rec.messages), recording)

    decoded = await asyncio.to_thread(decode_with_pysparkplug, interop_python, recording)

    assert len(decoded) == len(rec.messages)
    broken, counts = judge(decoded)
    assert not broken, "\n".join(broken[:40])
    # The life really happened, so the checks above were not vacuous.
    assert counts["NBIRTH"] == 2 and counts["NDEATH"] == 1 and counts["DDEATH"] >= 1
    assert counts["DBIRTH"] >= 5 and counts["DDATA"] >= 2
    ncmd = [m for m in decoded if m["message_type"] == "NCMD"]
    assert [(m["name"], m["alias"], m["value"]) for m in ncmd[0]["metrics"]] == [
        (REBIRTH, None, True)]
    # Quality travels as the Int32 property "Quality" (0 = BAD) on a point with no value.
    unmapped = next(m for d in decoded if d["message_type"] == "DBIRTH"
                    for m in d["metrics"] if m["name"] == "unmapped")
    assert unmapped["is_null"] and unmapped["properties"] == {"Quality": {"type": 3, "value": 0}}
    counter = [m["value"] for d in decoded if d["topic"] == node_topic("DDATA", "pump1")
               for m in d["metrics"] if m["name"] == "counter"]
    assert counter and counter == sorted(counter), "the PLC counter decodes as it counts"
    assert repeated_in_data(decoded) == [], "DDATA repeats what the last BIRTH/DATA carried"
