"""Decode recorded Sparkplug B messages with pysparkplug, an implementation independent of edgetwin.

Runs in its own venv (``make interop-venv``: pysparkplug pins paho-mqtt<2, which edgetwin
cannot share) and imports nothing from edgetwin. It reads JSON lines, one MQTT message each::

    {"topic": "spBv1.0/g/DDATA/node/dev", "payload_b64": "...", "qos": 0, "retain": false}

and writes one JSON line per message, in the same order, with what pysparkplug makes of it::

    {"index": 3, "topic": ..., "qos": 0, "retain": false, "message_type": "DDATA",
     "group_id": "g", "edge_node_id": "node", "device_id": "dev", "timestamp": 1763..., "seq": 4,
     "birth_index": 2, "error": null,
     "wire": {"timestamp": true, "seq": true, "metrics": 1},
     "metrics": [{"name": "counter", "alias": 3, "datatype": "INT64",
                  "datatype_field": "long_value", "value": 17, "value_type": "int",
                  "timestamp": 1763..., "is_historical": false, "is_transient": false,
                  "is_null": false, "properties": {"Quality": {"type": 3, "value": 0}},
                  "wire": {"name": false, "alias": true, "datatype": false,
                           "value_field": "long_value"}}]}

The decoded part (message type, seq, name, alias, datatype, value, flags) comes from
pysparkplug's public API: ``Topic.from_str`` and ``MessageType.payload.decode``, a DATA
payload decoded with the birth of its device (NDATA: of its node) seen last, the way a host
resolves aliases and the datatypes DATA leaves out. ``birth_index`` names that birth.
pysparkplug's ``Metric`` has no properties, and its decoding fills in names from the birth,
so what was on the wire (name and datatype present, the value field used, properties, the
payload's seq) is read with the protobuf schema pysparkplug bundles, not edgetwin's.

A message pysparkplug cannot decode gets ``"error": "<exception>: <text>"`` and the run goes
on; the exit status is 0 unless the input itself is unreadable.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import sys
from typing import IO, Any

import pysparkplug as psp
from pysparkplug import _protobuf as wire_schema  # the bundled Tahu schema, for wire facts

_BIRTHS = (psp.MessageType.NBIRTH, psp.MessageType.DBIRTH)
_DATA = (psp.MessageType.NDATA, psp.MessageType.DDATA)


def jsonable(value: Any) -> Any:
    """A decoded metric value as JSON: datetimes and bytes get a tagged form."""
    if isinstance(value, datetime.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, bytes):
        return {"bytes_b64": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return [jsonable(item) for item in value]
    return value


def wire_properties(metric: Any) -> dict[str, Any]:
    """The metric's PropertySet as ``{key: {"type": n, "value": v}}``."""
    props = metric.properties
    out: dict[str, Any] = {}
    for key, prop in zip(props.keys, props.values, strict=False):
        field = prop.WhichOneof("value")
        value = None if field is None or prop.is_null else getattr(prop, field)
        out[key] = {"type": prop.type, "value": value if isinstance(value, int | float | str)
                    else None if value is None else str(value)}
    if len(props.keys) != len(props.values):
        out["__mismatch__"] = {"keys": len(props.keys), "values": len(props.values)}
    return out


def describe_metric(metric: psp.Metric, raw: Any) -> dict[str, Any]:
    """One metric: pysparkplug's decoding of it, and the wire facts of its protobuf form."""
    datatype = metric.datatype
    try:
        datatype_field: str | None = datatype.field
    except NotImplementedError:
        datatype_field = None
    return {
        "name": metric.name,
        "alias": metric.alias,
        "datatype": datatype.name,
        "datatype_field": datatype_field,
        "value": jsonable(metric.value),
        "value_type": type(metric.value).__name__,
        "timestamp": metric.timestamp,
        "is_historical": metric.is_historical,
        "is_transient": metric.is_transient,
        "is_null": metric.is_null,
        "properties": wire_properties(raw) if raw is not None else {},
        "wire": None if raw is None else {
            "name": raw.HasField("name"),
            "alias": raw.HasField("alias"),
            "datatype": raw.HasField("datatype"),
            "value_field": raw.WhichOneof("value"),
        },
    }


class Decoder:
    """Walks a recording in order, keeping the births a host would resolve aliases with."""

    def __init__(self) -> None:
        # (group, edge node, device or None) -> (index of the birth message, decoded birth)
        self.births: dict[tuple[str, str, str | None], tuple[int, Any]] = {}

    def decode(self, index: int, topic_text: str, raw: bytes) -> dict[str, Any]:
        """Everything pysparkplug says about one message."""
        out: dict[str, Any] = {"message_type": None, "group_id": None, "edge_node_id": None,
                               "device_id": None, "timestamp": None, "seq": None,
                               "birth_index": None, "metrics": [], "wire": None, "error": None}
        try:
            topic = psp.Topic.from_str(topic_text)
            kind = psp.MessageType(topic.message_type)
            out.update(message_type=kind.value, group_id=topic.group_id,
                       edge_node_id=topic.edge_node_id, device_id=topic.device_id)
            if kind is psp.MessageType.STATE:
                state = psp.State.decode(raw)
                out.update(timestamp=state.timestamp, state_online=state.online)
                return out
            pb = wire_schema.Payload.FromString(raw)
            out["wire"] = {"timestamp": pb.HasField("timestamp"), "seq": pb.HasField("seq"),
                           "metrics": len(pb.metrics)}
            key = (str(topic.group_id), str(topic.edge_node_id), topic.device_id)
            birth = None
            if kind in _DATA and key in self.births:
                out["birth_index"], birth = self.births[key]
            payload = kind.payload.decode(raw, birth=birth)
            self._track(kind, key, index, payload)
            out["timestamp"] = getattr(payload, "timestamp", None)
            out["seq"] = getattr(payload, "seq", None)
            if kind is psp.MessageType.NDEATH:
                # pysparkplug 0.6.1 NDeath.decode keeps the timestamp only when it is absent
                # (an inverted HasField test), so the wire payload's is reported instead.
                out["timestamp"] = pb.timestamp if pb.HasField("timestamp") else None
                metrics = [payload.bd_seq_metric]
            else:
                metrics = list(getattr(payload, "metrics", ()))
            out["metrics"] = [describe_metric(m, pb.metrics[i] if i < len(pb.metrics) else None)
                              for i, m in enumerate(metrics)]
        except Exception as err:  # any failure of the independent decoder is a finding
            out["error"] = f"{type(err).__name__}: {err}"
        return out

    def _track(self, kind: Any, key: tuple[str, str, str | None], index: int,
               payload: Any) -> None:
        group, node, _ = key
        if kind is psp.MessageType.NBIRTH or kind is psp.MessageType.NDEATH:
            # A new session of the node (or its end): every device must be born again.
            for known in [k for k in self.births if k[:2] == (group, node)]:
                del self.births[known]
        if kind is psp.MessageType.DDEATH:
            self.births.pop(key, None)
        if kind in _BIRTHS:
            self.births[key] = (index, payload)


def run(source: IO[str], sink: IO[str]) -> int:
    """Decode every line of ``source`` into ``sink``; returns the number of messages."""
    decoder = Decoder()
    count = 0
    for index, line in enumerate(source):
        if not line.strip():
            continue
        record = json.loads(line)
        raw = base64.b64decode(record["payload_b64"])
        result = {"index": index, "topic": record["topic"], "qos": record.get("qos"),
                  "retain": record.get("retain")}
        result.update(decoder.decode(index, record["topic"], raw))
        sink.write(json.dumps(result) + "\n")
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", nargs="?", type=argparse.FileType("r"), default=sys.stdin,
                        help="JSON lines of {topic, payload_b64, qos, retain} (default: stdin)")
    args = parser.parse_args()
    count = run(args.recording, sys.stdout)
    print(f"decoded {count} messages with pysparkplug {psp.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
