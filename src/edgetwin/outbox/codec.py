"""How an outbox item is stored: compact JSON that keeps every value exactly.

The stored form is scheme-neutral (sync encodes Sparkplug or JSON twin messages from it),
so one row serves every scheme. NaN and infinities survive (Python's JSON dialect), so a
value read back from the outbox is the value the twin held.

- a delta: ``{"a": asset, "v": version, "t": ts_ns, "c": {name: [value, ts_ns, quality, version]}}``
- a record: ``{"k": kind, "a": asset, "t": ts_ns, "b": body}``
"""

from __future__ import annotations

import json
import math
from typing import Any

from edgetwin.core.errors import DecodeError
from edgetwin.core.types import Delta, Item, PointState, Quality, Record, RecordKind


def _plain(value: Any) -> Any:
    """A numpy scalar (from drivers and analytics) as its Python value; refuse anything else."""
    item = getattr(value, "item", None)
    if callable(item):
        plain = item()
        if isinstance(plain, bool | int | float | str):
            return plain
    msg = f"a value of type {type(value).__name__} cannot be stored"
    raise TypeError(msg)


# Enum attribute access is slow on 3.11 and this is a hot path: plain dictionaries instead.
QUALITY_NAME = {q: q.value for q in Quality}
_QUALITY_OF = {q.value: q for q in Quality}

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_plain).encode
_loads = json.JSONDecoder().decode


def encode(item: Item) -> bytes:
    """The stored form of one item.

    Raises:
        TypeError: a value that JSON cannot hold (the entry is rejected, not stored).
    """
    if isinstance(item, Delta):
        changes = {
            name: [s.value, s.ts_ns, QUALITY_NAME[s.quality], s.version]
            for name, s in item.changes.items()
        }
        doc: dict[str, Any] = {"a": item.asset, "v": item.version, "t": item.ts_ns, "c": changes}
    else:
        doc = {"k": item.kind.value, "a": item.asset, "t": item.ts_ns, "b": item.body}
    return _dumps(doc).encode()


def decode(body: bytes) -> Item:
    """The item a stored body holds.

    Raises:
        DecodeError: the body is not one this module wrote (a damaged row).
    """
    try:
        doc = _loads(body.decode())
        if "k" in doc:
            return Record(RecordKind(doc["k"]), str(doc["a"]), int(doc["t"]), dict(doc["b"]))
        changes = {
            str(name): PointState(value, int(ts_ns), _QUALITY_OF[quality], int(version))
            for name, (value, ts_ns, quality, version) in doc["c"].items()
        }
        return Delta(str(doc["a"]), int(doc["v"]), int(doc["t"]), changes)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as err:
        msg = f"stored outbox item cannot be read: {err}"
        raise DecodeError(msg) from err


_FLOAT_SPECIALS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def encode_value(value: Any) -> str:
    """One twin value as stored in the twin table (the JSON dialect, scalars fast)."""
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return repr(value)
        return _FLOAT_SPECIALS.get(value, "NaN")
    if kind is int:
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    return _dumps(value)


def decode_value(text: str) -> Any:
    """A twin value read back from the twin table."""
    return _loads(text)
