import asyncio
from pathlib import Path

import pytest

from edgetwin.config.model import OnFull
from edgetwin.core.counter import ReservedCounter
from edgetwin.core.types import Delivery, Delta, PointState, Quality
from edgetwin.outbox import MemoryOutbox, entry_size
from edgetwin.telemetry import Telemetry


def delta(asset: str, version: int) -> Delta:
    state = PointState(version, version, Quality.GOOD, version)
    return Delta(asset, version, version, {"x": state})


def make(tmp_path: Path, entries: int = 1000, on_full: OnFull = OnFull.DROP_OLDEST) -> MemoryOutbox:
    return MemoryOutbox(ReservedCounter(tmp_path / "seq"), Telemetry(),
                        entries * entry_size(delta("a", 1)), on_full)


async def test_claim_returns_entries_in_seq_order(tmp_path: Path) -> None:
    """Entries come out oldest first with growing sequence numbers."""
    box = make(tmp_path)
    await box.put([delta("a", i) for i in range(1, 6)])
    batch = await box.claim(3)
    assert [e.delta.version for e in batch] == [1, 2, 3]
    assert [e.seq for e in batch] == sorted(e.seq for e in batch)
    assert [e.delta.version for e in await box.claim(10)] == [4, 5]


async def test_rewind_resends_unsettled_entries_before_newer_ones(tmp_path: Path) -> None:
    """After a lost connection, unacknowledged entries go out again, in their order."""
    box = make(tmp_path)
    await box.put([delta("a", i) for i in range(1, 5)])
    first = await box.claim(4)
    box.settle(first[1].seq, Delivery.DELIVERED)
    box.rewind()
    await box.put([delta("a", 9)])
    assert [e.delta.version for e in await box.claim(10)] == [1, 3, 4, 9]


async def test_retry_and_reject_outcomes(tmp_path: Path) -> None:
    """RETRY keeps an entry, REJECTED drops it for good; depth follows."""
    box = make(tmp_path)
    await box.put([delta("a", 1), delta("a", 2)])
    one, two = await box.claim(2)
    box.settle(one.seq, Delivery.RETRY)
    box.settle(two.seq, Delivery.REJECTED)
    assert box.depth() == 1
    assert [e.seq for e in await box.claim(5)] == [one.seq]


async def test_claim_waits_for_put(tmp_path: Path) -> None:
    """Claim blocks until something is put."""
    box = make(tmp_path)
    waiter = asyncio.create_task(box.claim(5))
    await asyncio.sleep(0)
    assert not waiter.done()
    await box.put([delta("a", 1)])
    assert len(await asyncio.wait_for(waiter, 1)) == 1


async def test_drop_oldest_keeps_the_newest_within_bounds(tmp_path: Path) -> None:
    """A full buffer with drop_oldest evicts the oldest pending entries and counts them."""
    box = make(tmp_path, entries=3)
    await box.put([delta("a", i) for i in range(1, 7)])
    assert box.depth() == 3
    assert box.nbytes() <= 3 * entry_size(delta("a", 1))
    assert [e.delta.version for e in await box.claim(10)] == [4, 5, 6]


async def test_drop_newest_keeps_the_oldest(tmp_path: Path) -> None:
    """drop_newest refuses new entries while full."""
    box = make(tmp_path, entries=3, on_full=OnFull.DROP_NEWEST)
    await box.put([delta("a", i) for i in range(1, 7)])
    assert [e.delta.version for e in await box.claim(10)] == [1, 2, 3]


async def test_block_sources_waits_until_room(tmp_path: Path) -> None:
    """block_sources makes put wait until an entry is delivered; nothing is dropped."""
    box = make(tmp_path, entries=2, on_full=OnFull.BLOCK_SOURCES)
    await box.put([delta("a", 1), delta("a", 2)])
    blocked = asyncio.create_task(box.put([delta("a", 3)]))
    await asyncio.sleep(0)
    assert not blocked.done()
    (first, _second) = await box.claim(2)
    box.settle(first.seq, Delivery.DELIVERED)
    await asyncio.wait_for(blocked, 1)
    assert box.depth() == 2


async def test_sequence_grows_across_restarts(tmp_path: Path) -> None:
    """A new outbox on the same counter file continues above the old sequence."""
    box = make(tmp_path)
    await box.put([delta("a", 1)])
    (old,) = await box.claim(1)
    again = make(tmp_path)
    await again.put([delta("a", 1)])
    (new,) = await again.claim(1)
    assert new.seq > old.seq


@pytest.mark.parametrize("n", [1, 100])
async def test_settle_unknown_seq_is_harmless(tmp_path: Path, n: int) -> None:
    """Settling an entry that is gone (dropped while in flight) changes nothing."""
    box = make(tmp_path)
    await box.put([delta("a", i) for i in range(n)])
    box.settle(10**9, Delivery.DELIVERED)
    assert box.depth() == n
