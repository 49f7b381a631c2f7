"""Encode Sparkplug B payloads with pysparkplug, for the judge's tests (runs in .venv-interop).

The tests need real payloads without edgetwin's encoder, so they describe each message and
this script, run by the interop venv's interpreter, encodes it with pysparkplug. It reads
one JSON spec a line on stdin::

    {"kind": "DDATA", "timestamp": 1800000000000, "seq": 3,
     "metrics": [{"alias": 1, "datatype": "INT64", "value": 17, "timestamp": 1800000000000}],
     "strip": ["timestamp"]}

and writes one line per spec: the payload in base64. Births carry datatypes and names;
DATA metrics carry what the spec gives (``name`` and/or ``alias``) and no datatype, as
pysparkplug encodes them. ``strip`` clears payload fields after encoding (to make a
non-conformant payload); ``{"garbage": true}`` gives bytes no protobuf parser accepts.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pysparkplug as psp
from pysparkplug import _protobuf as wire_schema

GARBAGE = b"\xff\xff\xff\xff not a protobuf"


def metric(spec: dict[str, Any]) -> psp.Metric:
    """One pysparkplug metric from its spec."""
    return psp.Metric(
        timestamp=spec.get("timestamp"), name=spec.get("name"),
        datatype=psp.DataType[spec["datatype"]], value=spec.get("value"),
        alias=spec.get("alias"), is_historical=spec.get("is_historical", False),
        is_null=spec.get("value") is None)


def encode(spec: dict[str, Any]) -> bytes:
    """The payload a spec describes."""
    if spec.get("garbage"):
        return GARBAGE
    kind, ts = spec["kind"], spec["timestamp"]
    metrics = tuple(metric(m) for m in spec.get("metrics", ()))
    payloads: dict[str, Any] = {
        "NBIRTH": lambda: psp.NBirth(timestamp=ts, seq=spec["seq"], metrics=metrics),
        "DBIRTH": lambda: psp.DBirth(timestamp=ts, seq=spec["seq"], metrics=metrics),
        "NDATA": lambda: psp.NData(timestamp=ts, seq=spec["seq"], metrics=metrics),
        "DDATA": lambda: psp.DData(timestamp=ts, seq=spec["seq"], metrics=metrics),
        "DDEATH": lambda: psp.DDeath(timestamp=ts, seq=spec["seq"]),
        "NDEATH": lambda: psp.NDeath(timestamp=ts, bd_seq_metric=metrics[0]),
    }
    raw: bytes = payloads[kind]().encode()
    if spec.get("strip"):
        pb = wire_schema.Payload.FromString(raw)
        for name in spec["strip"]:
            pb.ClearField(name)
        raw = pb.SerializeToString()
    return raw


def main() -> None:
    """Encode every spec on stdin to a base64 line on stdout."""
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(base64.b64encode(encode(json.loads(line))).decode() + "\n")


if __name__ == "__main__":
    main()
