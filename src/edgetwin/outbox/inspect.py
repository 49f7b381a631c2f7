"""Looking into an outbox file from outside the gateway: ``edgetwin buffer inspect|export``.

The file is opened read-only, so this works on a stopped gateway and beside a running one
(WAL lets readers in while the gateway writes); it never changes what is queued.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgetwin.core.errors import DecodeError, StoreError
from edgetwin.core.types import Delta
from edgetwin.outbox import codec
from edgetwin.outbox.database import OutboxDatabase, Row


def _open(path: Path) -> OutboxDatabase:
    if not path.exists():
        msg = f"no outbox at {path} (the gateway has not run with this state_dir yet)"
        raise StoreError(msg)
    try:
        return OutboxDatabase(path, readonly=True)
    except sqlite3.Error as err:
        msg = f"outbox {path} cannot be read: {err}"
        raise StoreError(msg) from err


def summary(path: Path) -> dict[str, Any]:
    """Depth, bytes, oldest age, last sequence, dead letters and the same per asset."""
    db = _open(path)
    try:
        totals = db.totals()
        now = time.time_ns()
        assets = [
            {"asset": asset or "(gateway)", "entries": entries, "bytes": nbytes,
             "oldest_age_s": round((now - oldest) / 1e9, 1)}
            for asset, entries, nbytes, oldest in db.per_asset()
        ]
        dead = db.dead_letters()
    except sqlite3.Error as err:
        msg = f"outbox {path} cannot be read: {err}"
        raise StoreError(msg) from err
    finally:
        db.close_readonly()
    return {
        "path": str(path),
        "entries": totals.count,
        "bytes": totals.nbytes,
        "file_bytes": path.stat().st_size,
        "oldest_age_s": None if totals.oldest_ns is None
        else round((now - totals.oldest_ns) / 1e9, 1),
        "last_seq": totals.last_seq,
        "dead_letters": dead,
        "assets": assets,
    }


def render_summary(doc: dict[str, Any]) -> str:
    """The summary as text for a terminal."""
    age = doc["oldest_age_s"]
    lines = [
        f"outbox {doc['path']}",
        f"  {doc['entries']} entries, {doc['bytes']} bytes queued (file {doc['file_bytes']} bytes)",
        f"  oldest {age} s ago" if age is not None else "  empty",
        f"  last sequence {doc['last_seq']}, {doc['dead_letters']} dead-lettered",
    ]
    if doc["assets"]:
        width = max(len(a["asset"]) for a in doc["assets"])
        lines.append(f"  {'ASSET':<{width}}  ENTRIES      BYTES  OLDEST")
        lines += [f"  {a['asset']:<{width}}  {a['entries']:>7}  {a['bytes']:>9}"
                  f"  {a['oldest_age_s']} s" for a in doc["assets"]]
    return "\n".join(lines)


def export(path: Path) -> Iterator[str]:
    """Every queued entry as one JSON line, in sequence order."""
    db = _open(path)
    try:
        for row in db.rows():
            yield json.dumps(_exported(row), separators=(",", ":"))
    except sqlite3.Error as err:
        msg = f"outbox {path} cannot be read: {err}"
        raise StoreError(msg) from err
    finally:
        db.close_readonly()


def _exported(row: Row) -> dict[str, Any]:
    doc: dict[str, Any] = {"seq": row.seq, "priority": row.priority, "asset": row.asset,
                           "created_ns": row.created_ns}
    try:
        item = codec.decode(row.body)
    except DecodeError as err:
        doc["error"] = str(err)
        return doc
    if isinstance(item, Delta):
        doc.update(kind="delta", version=item.version, ts_ns=item.ts_ns, changes={
            name: {"v": s.value, "ts_ns": s.ts_ns, "q": s.quality.value, "ver": s.version}
            for name, s in item.changes.items()})
    else:
        doc.update(kind=item.kind.value, ts_ns=item.ts_ns, body=item.body)
    return doc
