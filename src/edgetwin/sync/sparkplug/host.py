"""The primary host's STATE: when the edge node may publish (FACTS 1.6 step 3, 1.8).

``spBv1.0/STATE/<host_id>`` carries ``{"online": bool, "timestamp": ms}`` (retained). A
message whose timestamp is older than the newest one seen is stale and ignored
[tck-id-operational-behavior-edge-node-termination-host-offline-timestamp].
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edgetwin.sync.sparkplug.node import NAMESPACE


@dataclass(frozen=True, slots=True)
class HostState:
    """One decoded STATE message."""

    online: bool
    timestamp: int


class PrimaryHost:
    """Tracks the configured primary host; nothing is published until it is online."""

    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self.topic = f"{NAMESPACE}/STATE/{host_id}"
        self.online = False
        self._newest = -1

    def update(self, raw: bytes) -> bool | None:
        """Apply a STATE payload; returns the new online flag when it changed, else None.

        Raises:
            ValueError: the payload is not a STATE document.
        """
        try:
            doc = json.loads(raw)
            state = HostState(bool(doc["online"]), int(doc["timestamp"]))
            if not isinstance(doc["online"], bool):
                raise TypeError("online must be a boolean")
        except (ValueError, KeyError, TypeError) as err:
            msg = f"STATE from {self.host_id} is not {{online, timestamp}}: {err}"
            raise ValueError(msg) from err
        if state.timestamp < self._newest:
            return None  # older than what we know: a stale retained message or a race
        self._newest = state.timestamp
        if state.online == self.online:
            return None
        self.online = state.online
        return state.online
