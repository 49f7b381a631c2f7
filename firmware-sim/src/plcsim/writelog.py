"""Every write the simulated hardware received, so tests can prove what reached a device."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

MAX_ENTRIES = 100_000  # the oldest entries go first beyond this


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One write as the device saw it."""

    seq: int
    ts_ns: int  # wall clock when the write arrived
    face: str  # modbus_tcp | modbus_rtu | opcua | control
    target: str  # "holding 200", "coil 0", "ns=2;s=Skid.Motor.SpeedSetpoint", "reset_trip"
    name: str  # plant input it maps to ("speed_setpoint_rpm"), or "" when it maps to none
    value: Any
    accepted: bool
    reason: str | None = None  # why the device refused it


class WriteLog:
    """Append-only, bounded, thread-safe record of writes (faces may run in other threads)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._records: deque[WriteRecord] = deque(maxlen=max_entries)
        self._lock = threading.Lock()
        self._seq = 0

    def record(self, face: str, target: str, name: str, value: Any, *, accepted: bool,
               reason: str | None = None) -> WriteRecord:
        """Append one write; returns the record."""
        with self._lock:
            self._seq += 1
            entry = WriteRecord(self._seq, time.time_ns(), face, target, name, value,
                                accepted, reason)
            self._records.append(entry)
            return entry

    def query(self, *, face: str | None = None, name: str | None = None,
              since_seq: int = 0, accepted: bool | None = None) -> list[WriteRecord]:
        """Records matching every given filter, oldest first."""
        with self._lock:
            return [
                r for r in self._records
                if r.seq > since_seq
                and (face is None or r.face == face)
                and (name is None or r.name == name)
                and (accepted is None or r.accepted == accepted)
            ]

    def as_dicts(self, **filters: Any) -> list[dict[str, Any]]:
        """``query`` as JSON-ready dicts, for the control API."""
        return [asdict(r) for r in self.query(**filters)]
