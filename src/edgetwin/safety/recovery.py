"""What the audit log tells a starting policy about the run before it.

A crash, a kill -9 or a power cut can end the gateway between a command's ``pending`` entry
and its verdict: its write may or may not have reached the device. The next start closes
each such command with an ``interrupted`` verdict, so every command in the log ends with
exactly one, and counts the writes of the last minute again, so a gateway that keeps
restarting cannot be made to write a point more often than ``rate_limit`` allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edgetwin.safety.rules import describe

# How much of the log's end a start reads. A pending entry is followed by its verdict
# within write_timeout (at most 300 s), and the inbound gate lets through a few thousand
# commands a minute at most: the last minute and every command in flight fit in far less.
RECOVERY_TAIL_BYTES = 2 * 2**20


@dataclass(frozen=True, slots=True)
class Recovered:
    """The end of the previous run, as its audit log tells it."""

    interrupted: list[dict[str, Any]]  # pending entries that never got a verdict, oldest first
    writes: list[tuple[str, int]]  # (point, wall ms) of writes that may have reached a device


def recover(entries: Sequence[dict[str, Any]]) -> Recovered:
    """Read the log's last entries (oldest first) for commands left open and recent writes."""
    decided = {e.get("id") for e in entries if e.get("event") == "verdict"}
    interrupted = [e for e in entries
                   if e.get("event") == "pending" and e.get("id") not in decided
                   and all(isinstance(e.get(f), str) for f in ("id", "point", "origin", "op"))
                   and isinstance(e.get("ts"), int)]  # a damaged entry is not a command
    writes = [(e["point"], e["written_ms"]) for e in entries
              if e.get("event") == "verdict" and isinstance(e.get("point"), str)
              and isinstance(e.get("written_ms"), int)]
    # Whether an interrupted command wrote is unknown: it counts as a write when it began.
    writes += [(e["point"], e["ts"]) for e in interrupted]
    writes.sort(key=lambda write: write[1])
    return Recovered(interrupted, writes)


def interrupted_verdict(pending: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The verdict entry that closes a command the previous run left without one."""
    since = datetime.fromtimestamp(pending["ts"] / 1000, UTC).isoformat(timespec="milliseconds")
    point = pending["point"]
    return {
        "ts": now_ms,
        **{field: pending.get(field) for field in ("id", "origin", "point", "value", "op",
                                                   "key_id")},
        "event": "verdict",
        "accepted": False,
        "code": "interrupted",
        "reason": (f"failed: the gateway stopped while the command to {point} was in progress "
                   f"(pending since {since}); the device may or may not hold "
                   f"{describe(pending.get('value'))}"),
        "reads": pending.get("reads") or {},
        "before": None,
        "read_back": None,
        "received_ms": None,
        "decided_ms": now_ms,
        "written_ms": None,
    }
