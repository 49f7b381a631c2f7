"""A bounded in-memory outbox: the Outbox contract without durability.

The durable SQLite outbox replaces it; until then a crash loses what is queued here (the
twin snapshot still holds the latest state, and is republished on connect).

Invariants:
- entries leave ``claim`` in ``seq`` order, and a rewound entry goes out before any newer one;
- the sum of entry sizes stays within ``max_bytes``; what ``on_full`` drops is counted;
- sequence numbers come from a ``ReservedCounter``, so they grow across restarts.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

import structlog

from edgetwin.config.model import OnFull
from edgetwin.core.counter import ReservedCounter
from edgetwin.core.types import Delivery, Delta, OutboxEntry
from edgetwin.telemetry import Telemetry

log = structlog.get_logger("edgetwin.outbox")

_ENTRY_OVERHEAD = 96  # bytes: the entry, its delta and the dict slot
_CHANGE_SIZE = 120  # bytes: one PointState with a small value


def entry_size(delta: Delta) -> int:
    """Approximate memory an entry holds, for ``max_bytes``."""
    return _ENTRY_OVERHEAD + _CHANGE_SIZE * len(delta.changes)


class MemoryOutbox:
    """The Outbox port in memory, bounded by bytes."""

    def __init__(
        self,
        counter: ReservedCounter,
        telemetry: Telemetry,
        max_bytes: int,
        on_full: OnFull = OnFull.DROP_OLDEST,
    ) -> None:
        self._counter = counter
        self._max_bytes = max_bytes
        self._on_full = on_full
        self._entries: OrderedDict[int, OutboxEntry] = OrderedDict()
        self._claimed: set[int] = set()
        self._bytes = 0
        self._has_pending = asyncio.Event()
        self._has_room = asyncio.Event()
        self._dropping = False
        self._telemetry = telemetry
        self._dropped = telemetry.counter(
            "edgetwin_outbox_dropped_total", "Entries dropped because the buffer was full",
            ("policy",),
        )
        self._rejected = telemetry.counter(
            "edgetwin_outbox_rejected_total", "Entries that can never be delivered"
        )

    async def put(self, deltas: Sequence[Delta]) -> None:
        """Accept a batch; assigns sequence numbers; applies the ``on_full`` policy."""
        for delta in deltas:
            size = entry_size(delta)
            if not await self._make_room(size):
                continue
            entry = OutboxEntry(self._counter.next(), delta)
            self._entries[entry.seq] = entry
            self._bytes += size
        if self._dropping and self._bytes + _ENTRY_OVERHEAD <= self._max_bytes:
            self._dropping = False
            log.info("Outbox has room again", depth=len(self._entries))
        if self.pending():
            self._has_pending.set()

    async def _make_room(self, size: int) -> bool:
        """Free space for one entry by the policy; False when the entry is dropped."""
        while self._bytes + size > self._max_bytes:
            if self._on_full is OnFull.BLOCK_SOURCES and self._entries:
                self._note_drop_episode("blocking sources")
                self._has_room.clear()
                await self._has_room.wait()
                continue
            victim = next((s for s in self._entries if s not in self._claimed), None)
            if self._on_full is not OnFull.DROP_OLDEST or victim is None:
                self._note_drop_episode("dropping newest")
                self._dropped.labels(self._on_full.value).inc()
                return False
            self._note_drop_episode("dropping oldest")
            self._remove(victim)
            self._dropped.labels(self._on_full.value).inc()
        return True

    def _note_drop_episode(self, action: str) -> None:
        if not self._dropping:
            self._dropping = True
            self._telemetry.emit_error(
                "outbox", "buffer_full", "put",
                f"outbox reached max_bytes={self._max_bytes}; {action}",
                depth=len(self._entries),
            )

    def _remove(self, seq: int) -> None:
        entry = self._entries.pop(seq)
        self._claimed.discard(seq)
        self._bytes -= entry_size(entry.delta)
        self._has_room.set()

    async def claim(self, limit: int) -> list[OutboxEntry]:
        """Wait until entries are pending; return up to ``limit`` of the oldest ones."""
        while True:
            batch = []
            for seq, entry in self._entries.items():
                if seq in self._claimed:
                    continue
                batch.append(entry)
                if len(batch) >= limit:
                    break
            if batch:
                self._claimed.update(e.seq for e in batch)
                return batch
            self._has_pending.clear()
            await self._has_pending.wait()

    def settle(self, seq: int, outcome: Delivery) -> None:
        """Record the outcome of one claimed entry."""
        if seq not in self._entries:
            return
        if outcome is Delivery.RETRY:
            self._claimed.discard(seq)
            self._has_pending.set()
            return
        if outcome is Delivery.REJECTED:
            self._rejected.inc()
        self._remove(seq)

    def rewind(self) -> None:
        """Make every claimed, unsettled entry claimable again, in order."""
        self._claimed.clear()
        if self._entries:
            self._has_pending.set()

    def pending(self) -> int:
        """Entries waiting to be claimed."""
        return len(self._entries) - len(self._claimed)

    def depth(self) -> int:
        """Entries not yet settled (pending and claimed)."""
        return len(self._entries)

    def nbytes(self) -> int:
        """Approximate size of what the outbox holds, in bytes."""
        return self._bytes
