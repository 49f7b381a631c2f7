"""The local emergency read-only switch, kept in ``state_dir`` so a restart keeps it.

``<state_dir>/safety/readonly.json`` holds ``{"readonly": bool, "since": ms, "by": text}``.
No file means off. A file that cannot be read or parsed means ON: when in doubt, no writes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from edgetwin.core.counter import write_atomically
from edgetwin.safety.audit import audit_dir

READONLY_FILE = "readonly.json"


@dataclass(frozen=True, slots=True)
class ReadonlyState:
    """The switch as stored."""

    on: bool
    since_ms: int | None
    by: str


def readonly_path(state_dir: Path) -> Path:
    """The switch file of a state directory."""
    return audit_dir(state_dir) / READONLY_FILE


def read_readonly(state_dir: Path) -> ReadonlyState:
    """The stored switch; ON when the file exists but is unreadable or malformed."""
    path = readonly_path(state_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ReadonlyState(False, None, "default")
    except (OSError, ValueError) as err:
        return ReadonlyState(True, None, f"unreadable {path.name} ({err}); read-only to be safe")
    if not isinstance(doc, dict) or not isinstance(doc.get("readonly"), bool):
        return ReadonlyState(True, None, f"malformed {path.name}; read-only to be safe")
    since = doc.get("since")
    return ReadonlyState(doc["readonly"], since if isinstance(since, int) else None,
                         str(doc.get("by", "?")))


def write_readonly(
    state_dir: Path, on: bool, by: str, now_ms: int | None = None
) -> ReadonlyState:
    """Store the switch (atomically, fsynced); returns what was stored.

    Raises:
        OSError: the file cannot be written.
    """
    path = readonly_path(state_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = ReadonlyState(on, int(time.time() * 1000) if now_ms is None else now_ms, by)
    doc = {"readonly": on, "since": state.since_ms, "by": by}
    write_atomically(path, (json.dumps(doc) + "\n").encode("utf-8"))
    return state
