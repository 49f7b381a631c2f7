"""The JSON twin scheme: pure functions from twin state to MQTT messages.

Topics under ``<prefix>/<gateway>``:
- ``<asset>/reported``: deltas, QoS 1:
  ``{"seq": n, "v": version, "ts": ms, "state": {point: {"v": value, "ts": ms, "q": "GOOD"}}}``
  with ``"hist": true`` added when the delta is a replay of the backlog after an outage;
- ``alarms``, ``cmd/result``, ``audit``: records, QoS 1: ``{"seq": n, "ts": ms, "asset": a,
  ...body}`` (and ``"hist": true`` on a replay);
- ``<asset>/twin``: retained full snapshot, QoS 1, with each point's version as ``"ver"``,
  the pending desired values ``"desired": {point: {"v": value, "ts": ms, "id": command id}}``
  and ``"delta"``: the desired values the device does not report (yet) (FACTS §2.3);
- ``status``: retained ``{"online": bool, "ts": ms}``; the offline form is the last will.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from edgetwin.core.types import Delta, OutboxEntry, PointState, Quality, Record, RecordKind
from edgetwin.sync.jsontwin.desired import PendingDesired, same_value
from edgetwin.sync.message import MqttMessage

_RECORD_TOPICS = {
    RecordKind.ALARM: "alarms",
    RecordKind.COMMAND_RESULT: "cmd/result",
    RecordKind.AUDIT: "audit",
}

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def _value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; the quality says why the value is unusable
    return value


_QUALITY_NAME = {q: q.value for q in Quality}  # enum attribute access is slow on 3.11


def _point(state: PointState) -> dict[str, Any]:
    return {"v": _value(state.value), "ts": state.ts_ns // 1_000_000,
            "q": _QUALITY_NAME[state.quality]}


class JsonTwinEncoder:
    """Builds the JSON twin scheme's messages for one gateway."""

    def __init__(self, prefix: str, gateway_id: str) -> None:
        self.base = f"{prefix}/{gateway_id}"

    def status(self, *, online: bool, ts_ms: int) -> MqttMessage:
        """Retained gateway status; the offline form doubles as the last will."""
        payload = _dumps({"online": online, "ts": ts_ms}).encode()
        return MqttMessage(f"{self.base}/status", payload, qos=1, retain=True)

    def entry(self, entry: OutboxEntry) -> MqttMessage:
        """The message of one outbox entry: a delta or a record."""
        item = entry.item
        if isinstance(item, Delta):
            return self.reported(entry.seq, item, historical=entry.historical)
        return self.record(entry.seq, item, historical=entry.historical)

    def reported(self, seq: int, delta: Delta, *, historical: bool = False) -> MqttMessage:
        """One delta on the asset's reported topic."""
        doc: dict[str, Any] = {
            "seq": seq,
            "v": delta.version,
            "ts": delta.ts_ns // 1_000_000,
            "state": {name: _point(s) for name, s in delta.changes.items()},
        }
        if historical:
            doc["hist"] = True
        return MqttMessage(f"{self.base}/{delta.asset}/reported", _dumps(doc).encode(), qos=1)

    def record(self, seq: int, record: Record, *, historical: bool = False) -> MqttMessage:
        """An alarm, command result or audit record on its gateway-wide topic.

        The envelope (``seq``, ``ts``, ``asset``) wins over the body's own keys: consumers
        drop duplicates by ``seq``, so it must be the message sequence. An audit entry's
        own chain number (its ``seq`` in the local log) is published as ``entry_seq``.
        """
        body = dict(record.body)
        if "seq" in body:
            body["entry_seq"] = body.pop("seq")
        doc: dict[str, Any] = {**body, "seq": seq, "ts": record.ts_ns // 1_000_000,
                               "asset": record.asset}
        if historical:
            doc["hist"] = True
        return MqttMessage(f"{self.base}/{_RECORD_TOPICS[record.kind]}", _dumps(doc).encode(),
                           qos=1)

    def snapshot(
        self,
        asset: str,
        version: int,
        state: Mapping[str, PointState],
        desired: Mapping[str, PendingDesired] | None = None,
    ) -> MqttMessage:
        """The asset's full twin, retained, so a new consumer starts from the whole state.

        Args:
            asset: the asset.
            version: the asset twin's version.
            state: point name -> reported state.
            desired: point name -> pending desired value (``DesiredState.pending(asset)``).
        """
        desired = desired or {}
        points = {}
        for name, s in sorted(state.items()):
            point = _point(s)
            point["ver"] = s.version
            points[name] = point
        ts_ms = max(max((s.ts_ns for s in state.values()), default=0) // 1_000_000,
                    max((d.ts_ms for d in desired.values()), default=0))
        # A key missing from reported, or reported BAD (None), is part of the delta (FACTS §2.3).
        delta = {name: _value(d.value) for name, d in sorted(desired.items())
                 if name not in state or not same_value(d.value, state[name].value)}
        doc = {
            "v": version,
            "ts": ts_ms,
            "state": points,
            "desired": {name: {"v": _value(d.value), "ts": d.ts_ms, "id": d.command_id}
                        for name, d in sorted(desired.items())},
            "delta": delta,
        }
        return MqttMessage(f"{self.base}/{asset}/twin", _dumps(doc).encode(), qos=1, retain=True)
