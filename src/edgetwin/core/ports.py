"""The interfaces between stages; only ``daemon`` knows both ends of each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from edgetwin.core.types import (
    Command,
    Delivery,
    Item,
    OutboxEntry,
    PointState,
    Sample,
    Value,
    Verdict,
    WriteOutcome,
)

Emit = Callable[[Sequence[Sample]], Awaitable[None]]
"""Hands one batch (one poll cycle) downstream. May block when downstream applies backpressure."""

SubmitCommand = Callable[[Command], Awaitable[Verdict]]
"""Hands a decoded command to the safety policy and returns its one verdict (sync answers it)."""


class SourceHealth(Protocol):
    """Where a driver reports the state of its link to the device.

    Calls are cheap and idempotent: only transitions are logged, every failure is counted.
    """

    def up(self) -> None:
        """The device answered; the link is healthy."""

    def down(self, error_code: str, error: BaseException | str) -> None:
        """The device or bus failed; ``error_code`` is a short stable label for metrics."""

    def point_error(self, point: str, error_code: str, error: BaseException | str) -> None:
        """One point could not be read or decoded while the link itself is fine."""

    def cycle(self, duration_s: float) -> None:
        """One poll cycle (or subscription notification) completed in ``duration_s``."""

    def request(self, outcome: str, duration_s: float) -> None:
        """One request to the device ended, ``duration_s`` after it was sent.

        ``outcome``: ``ok`` (an answer with data), ``exception`` (an exception response),
        ``timeout`` (no answer in time) or ``error`` (the link failed under it). Called for
        every request of a polling driver, thousands of times a second: it only counts.
        """


class Source(Protocol):
    """One configured driver instance. Owns its connection; emits Samples in batches."""

    name: str

    def resources(self) -> frozenset[str]:
        """Links it uses, e.g. ``{"serial:/dev/ttyUSB0"}``; shared only where the config allows.

        Two sources may name the same resource only when their configs say they can share
        it (``shares_resource_with``: other unit ids on one RTU bus or one Modbus TCP link).
        """

    async def run(self, emit: Emit, health: SourceHealth) -> None:
        """Poll or subscribe until cancelled. Called once per start, never concurrently.

        Reconnects internally with jittered backoff and reports device trouble through
        ``health`` and ``Sample.quality``. Raises only for bugs; the supervisor restarts it.
        Cancellation closes the connection before returning.
        """

    async def write(self, point: str, value: Value) -> WriteOutcome:
        """Write one configured, writable point, read it back, and say whether it took.

        Called only by the safety policy, only while ``run`` is active; calls may overlap
        with polling (the driver serialises its own link). Never raises for device
        trouble: a timeout, an exception response or a mismatching read-back is a
        ``WriteOutcome(ok=False, reason=...)``.
        """


class Outbox(Protocol):
    """Store-and-forward queue between the twin and sync.

    Contract: ``put`` is called by the ingest stage (and by anything that raises alarms,
    results or audit records); ``claim``/``settle``/``rewind`` by the one sync session only.
    Entries come out of ``claim`` in ``seq`` order within each lane: live entries first, the
    backlog (everything queued before the latest reconnect, marked ``historical``) at the
    replay rate. An entry stays in the outbox until it is settled DELIVERED or REJECTED, or
    its hold window after SENT has passed. ``rewind`` (after a lost connection) makes every
    claimed, unsettled or held entry claimable again, as history, in its original order.
    """

    async def put(self, items: Sequence[Item]) -> None:
        """Accept a batch; assigns each a sequence number. Applies the buffer's on_full policy."""

    async def claim(self, limit: int) -> list[OutboxEntry]:
        """Wait until entries are claimable, then return up to ``limit`` of them."""

    def settle(self, seq: int, outcome: Delivery, reason: str | None = None) -> None:
        """Record the outcome of one claimed entry; ``reason`` says why it was rejected."""

    def rewind(self) -> None:
        """Return every claimed, unsettled or held entry to the queue, keeping order."""

    def depth(self) -> int:
        """Entries not yet settled (pending, claimed, and held after SENT)."""

    def waiting(self) -> int:
        """Entries not yet written to the broker (depth less those held after SENT)."""

    def confirm_sent(self) -> None:
        """After a clean disconnect: every held (SENT) entry reached the broker; drop them."""

    def nbytes(self) -> int:
        """Approximate size of what the outbox holds, in bytes."""


class TwinView(Protocol):
    """Read-only access to the current twin state, for snapshots and interlocks."""

    def assets(self) -> Iterable[str]:
        """Every asset with at least one point."""

    def asset_version(self, asset: str) -> int:
        """The asset's current version (0 when it never changed)."""

    def asset_state(self, asset: str) -> dict[str, PointState]:
        """Current state of every point of the asset, keyed by point name within the asset."""
