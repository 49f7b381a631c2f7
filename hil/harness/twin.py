"""The broker-side view of a run: the JSON twin rebuilt from recorded messages, as a consumer would.

A consumer drops duplicates by the gateway's message ``seq`` (delivery is at least once),
so everything here is counted after that. What the judges need is kept in memory; every
point update also goes to ``twin.jsonl`` for the report.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Delivery:
    """One reported message's place in the stream."""

    t: float
    seq: int
    hist: bool


@dataclass
class BrokerView:
    """What arrived at the broker, deduplicated by ``seq``."""

    counter: list[tuple[float, int, int, bool]] = field(default_factory=list)  # t, v, seq, hist
    traces: dict[str, list[tuple[float, float | None, str]]] = field(default_factory=dict)
    lanes: dict[str, list[Delivery]] = field(default_factory=dict)  # per asset, first arrivals
    alarms: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    results: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)  # by id
    gateway_messages: list[float] = field(default_factory=list)  # receive times, not retained
    messages: int = 0
    redeliveries: int = 0  # a seq received again with the same content
    seq_conflicts: int = 0  # a seq received again with other content
    malformed: int = 0


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def rebuild(messages: Path, *, prefix: str, counter: str, points: Collection[str],
            sparkplug: tuple[str, str] = ("", ""), twin_out: Path) -> BrokerView:
    """Fold ``messages.jsonl`` into a ``BrokerView``; write ``twin.jsonl`` on the way.

    Args:
        messages: the recorder's ``messages.jsonl``.
        prefix: the JSON scheme's topic prefix with the gateway, ``edgetwin/v1/gw``.
        counter: the counter point id, ``pump1/counter``.
        points: point ids whose value traces the judges need.
        sparkplug: (group, edge node) of the gateway's Sparkplug messages, counted for
            restart times (empty: JSON only).
        twin_out: where ``twin.jsonl`` goes.
    """
    view = BrokerView()
    seen: dict[int, int] = {}  # seq -> hash of the content without the hist flag
    wanted = set(points) | {counter}
    group, node = sparkplug
    group_prefix = f"spBv1.0/{group}/" if group else ""
    if not messages.exists():
        return view
    with messages.open() as lines, twin_out.open("w") as twin:
        for line in lines:
            view.messages += 1
            message = json.loads(line)
            topic: str = message["topic"]
            t: float = message["t"]
            if not topic.startswith(prefix + "/"):
                if (group_prefix and topic.startswith(group_prefix)
                        and topic.split("/")[3:4] == [node] and not message["retain"]):
                    view.gateway_messages.append(t)
                continue
            if not message["retain"]:
                view.gateway_messages.append(t)
            rest = topic[len(prefix) + 1:]
            if message["retain"] or rest in ("status", "cmd") or rest.endswith("/twin"):
                continue
            payload = base64.b64decode(message["payload_b64"])
            try:
                doc = json.loads(payload)
                seq = int(doc["seq"])
            except (ValueError, KeyError, TypeError):
                view.malformed += 1
                continue
            hist = bool(doc.pop("hist", False))
            # The same entry sent live and then replayed after a drop differs only in
            # "hist": a redelivery. Anything else under a known seq is a conflict.
            content = hash(json.dumps(doc, sort_keys=True))
            if seq in seen:
                if seen[seq] == content:
                    view.redeliveries += 1
                else:
                    view.seq_conflicts += 1
                continue
            seen[seq] = content
            if rest == "alarms":
                view.alarms.append((t, doc))
            elif rest == "cmd/result":
                view.results.setdefault(str(doc.get("id")), (t, doc))
            elif rest.endswith("/reported") and isinstance(doc.get("state"), dict):
                asset = rest.removesuffix("/reported")
                view.lanes.setdefault(asset, []).append(Delivery(t, seq, hist))
                _fold_state(view, twin, t, seq, hist, asset, doc["state"], wanted, counter)
    return view


def _fold_state(view: BrokerView, twin: Any, t: float, seq: int, hist: bool, asset: str,
                state: dict[str, Any], wanted: set[str], counter: str) -> None:
    for name, point in state.items():
        if not isinstance(point, dict):
            view.malformed += 1
            continue
        point_id = f"{asset}/{name}"
        value, quality = point.get("v"), str(point.get("q", "GOOD"))
        twin.write(json.dumps({"t": t, "point": point_id, "v": value, "q": quality,
                               "seq": seq, "hist": hist}) + "\n")
        if point_id == counter and isinstance(value, int) and not isinstance(value, bool):
            view.counter.append((t, value, seq, hist))
        if point_id in wanted and not hist:  # a replay is history, not the current state
            view.traces.setdefault(point_id, []).append((t, _number(value), quality))
