"""The durable outbox on real SQLite files: journal first, lanes, bounds, priorities, restarts."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from edgetwin.config.model import OnFull
from edgetwin.core.types import Delivery, Record, RecordKind
from edgetwin.outbox.database import ROW_OVERHEAD
from edgetwin.outbox.durable import DB_FILE
from tests.helpers.mounts import fill
from tests.helpers.waiting import until
from tests.outbox.conftest import OpenBox, delta, stored_seqs, values


async def claim(box: object, limit: int = 100, timeout_s: float = 5.0) -> list:  # type: ignore[type-arg]
    return await asyncio.wait_for(box.claim(limit), timeout_s)  # type: ignore[attr-defined]


async def test_an_entry_is_claimable_only_once_its_transaction_committed(
    tmp_path: Path, open_box: OpenBox
) -> None:
    """Journal first: whatever claim hands to sync is already in the file."""
    box = open_box(max_delay_s=0.2).box
    await box.put([delta(v) for v in range(1, 6)])
    assert stored_seqs(tmp_path / DB_FILE) == []  # within max_delay: staged, not yet claimable
    entries = await claim(box)
    assert values(entries) == [1, 2, 3, 4, 5]
    assert [e.seq for e in entries] == stored_seqs(tmp_path / DB_FILE)
    assert not any(e.historical for e in entries)


async def test_delivered_entries_leave_the_file_and_the_rest_replays_in_order(
    tmp_path: Path, open_box: OpenBox
) -> None:
    """Settled entries are deleted; a rewind sends the unsettled ones again as history."""
    box = open_box().box
    await box.put([delta(v) for v in range(1, 7)])
    first = await claim(box, limit=3)
    second = await claim(box, limit=3)
    for entry in first:
        box.settle(entry.seq, Delivery.DELIVERED)
    box.settle(second[1].seq, Delivery.DELIVERED)
    box.rewind()
    again = await claim(box)
    assert values(again) == [4, 6]
    assert all(e.historical for e in again)
    assert box.depth() == 2
    await box.commit()
    assert stored_seqs(tmp_path / DB_FILE) == [second[0].seq, second[2].seq]


async def test_sequence_and_backlog_survive_a_restart(
    tmp_path: Path, open_box: OpenBox
) -> None:
    """After a restart the backlog comes back as history and new numbers are larger."""
    one = open_box()
    await one.box.put([delta(v) for v in range(1, 4)])
    before = [e.seq for e in await claim(one.box)]
    await one.close()

    two = open_box()
    assert two.box.depth() == 3
    await two.box.put([delta(4)])
    replay = await claim(two.box)
    assert [e.seq for e in replay] == before and all(e.historical for e in replay)
    (live,) = await claim(two.box)
    assert live.seq > max(before) and not live.historical and values([live]) == [4]


async def test_live_data_goes_first_and_the_backlog_drains_at_the_replay_rate(
    open_box: OpenBox
) -> None:
    """Two lanes: new entries are not stuck behind a backlog that drains under a token bucket."""
    one = open_box()
    await one.box.put([delta(v) for v in range(1, 41)])
    await one.box.commit()
    await one.close()

    box = open_box(replay_rate=40.0).box  # burst of 4, then 40/s
    started = time.monotonic()
    seen: list[tuple[int, bool]] = []
    await box.put([delta(100)])
    while len(seen) < 42:
        for entry in await claim(box, limit=10):
            seen.append((values([entry])[0], entry.historical))
            box.settle(entry.seq, Delivery.DELIVERED)
        if len(seen) == 5:
            await box.put([delta(101)])
    took = time.monotonic() - started
    history = [v for v, hist in seen if hist]
    assert history == list(range(1, 41))  # in order, every one
    assert next(v for v, hist in seen if not hist) == 100
    assert seen.index((101, False)) < 41  # the live one overtook the rest of the backlog
    assert took >= (40 - 4) / 40 * 0.9  # the bucket held the replay to its rate
    assert box.stats().backlog == 0


async def test_rejected_entries_are_dead_lettered_with_their_reason(
    tmp_path: Path, open_box: OpenBox
) -> None:
    """A message that can never go is kept aside for inspection, counted, and not retried."""
    opened = open_box()
    box = opened.box
    await box.put([delta(1), delta(2)])
    bad, good = await claim(box)
    box.settle(bad.seq, Delivery.REJECTED, "publish_refused: payload too large")
    box.settle(good.seq, Delivery.DELIVERED)
    await box.commit()
    db = sqlite3.connect(tmp_path / DB_FILE)
    assert db.execute("SELECT seq, reason FROM dead_letter").fetchall() == [
        (bad.seq, "publish_refused: payload too large")]
    assert opened.metric("edgetwin_outbox_rejected_total") == 1
    box.rewind()
    assert box.depth() == 0


async def test_retry_puts_an_entry_back_in_order(open_box: OpenBox) -> None:
    """RETRY: the entry goes again before anything newer of its lane."""
    box = open_box().box
    await box.put([delta(v) for v in range(1, 5)])
    first = await claim(box, limit=2)
    box.settle(first[0].seq, Delivery.RETRY)
    assert values(await claim(box)) == [1, 3, 4]


async def test_qos0_entries_are_held_for_the_window_and_replayed_after_a_drop(
    tmp_path: Path, open_box: OpenBox
) -> None:
    """SENT entries stay for the hold window; a rewind in it replays them; after it, gone."""
    opened = open_box(hold_s=0.3)
    box = opened.box
    await box.put([delta(1), delta(2)])
    for entry in await claim(box):
        box.settle(entry.seq, Delivery.SENT)
    box.rewind()  # the link dropped inside the window: no ack means maybe not received
    replay = await claim(box)
    assert values(replay) == [1, 2] and all(e.historical for e in replay)
    for entry in replay:
        box.settle(entry.seq, Delivery.SENT)
    await until(lambda: stored_seqs(tmp_path / DB_FILE) == [], 5.0,
                "the committer prunes held entries after the window")
    assert box.depth() == 0
    assert opened.metric("edgetwin_outbox_sent_total") == 4


def _entry_size() -> int:
    from edgetwin.outbox import codec

    return len(codec.encode(delta(1))) + ROW_OVERHEAD


async def test_drop_oldest_keeps_the_newest_within_max_bytes_and_counts(
    open_box: OpenBox
) -> None:
    """drop_oldest: the file never holds more than max_bytes; the oldest go first."""
    size = _entry_size()
    opened = open_box(max_bytes=size * 10, on_full=OnFull.DROP_OLDEST)
    box = opened.box
    for v in range(1, 31):
        await box.put([delta(v)])
        await box.commit()
        assert box.nbytes() <= size * 10 + 400  # one alarm record may sit above the data
    got = values([e for e in await claim(box) if not isinstance(e.item, Record)])
    assert got[-1] == 30 and got == sorted(got) and len(got) <= 10
    assert opened.metric("edgetwin_outbox_dropped_total", policy="drop_oldest") >= 20
    alarms = [e.item for e in await _all(box) if isinstance(e.item, Record)]
    assert any(a.body["alarm"] == "outbox_full" and a.body["active"] for a in alarms)


async def _all(box: object) -> list:  # type: ignore[type-arg]
    box.rewind()  # type: ignore[attr-defined]
    return await claim(box, limit=1000)


async def test_drop_newest_keeps_the_oldest_and_counts(open_box: OpenBox) -> None:
    """drop_newest: once full, new data is refused and counted; what was there stays."""
    size = _entry_size()
    opened = open_box(max_bytes=size * 10, on_full=OnFull.DROP_NEWEST)
    box = opened.box
    for v in range(1, 31):
        await box.put([delta(v)])
    await box.commit()
    data = values([e for e in await claim(box) if not isinstance(e.item, Record)])
    # The oldest stay (less the room the "buffer full" alarm itself takes: alarms go last).
    assert data == list(range(data[0], data[-1] + 1)) and data[-1] <= 10 and len(data) >= 7
    assert opened.metric("edgetwin_outbox_dropped_total", policy="drop_newest") == 30 - len(data)


async def test_block_sources_waits_for_room_and_drops_nothing(open_box: OpenBox) -> None:
    """block_sources: put waits until delivery frees room; every entry arrives."""
    size = _entry_size()
    opened = open_box(max_bytes=size * 5, on_full=OnFull.BLOCK_SOURCES)
    box = opened.box
    producer = asyncio.create_task(box.put([delta(v) for v in range(1, 21)]))
    got: list[int] = []
    while len(got) < 20:
        for entry in await claim(box, limit=3):
            if not isinstance(entry.item, Record):
                got.append(values([entry])[0])
            box.settle(entry.seq, Delivery.DELIVERED)
        assert box.nbytes() <= size * 5 + 400
    await asyncio.wait_for(producer, 5)
    assert got == list(range(1, 21))
    assert opened.metric("edgetwin_outbox_dropped_total", policy="block_sources") == 0


async def test_alarms_and_command_records_are_evicted_last(open_box: OpenBox) -> None:
    """A full buffer evicts data before alarms, and alarms before command results."""
    size = _entry_size()
    box = open_box(max_bytes=size * 6, on_full=OnFull.DROP_OLDEST).box
    result = Record(RecordKind.COMMAND_RESULT, "pump1", 1, {"id": "c1", "verdict": "denied"})
    await box.put([result])
    await box.commit()
    for v in range(1, 40):
        await box.put([delta(v)])
        await box.commit()
    kinds = [e.item.kind for e in await claim(box) if isinstance(e.item, Record)]
    assert RecordKind.COMMAND_RESULT in kinds


async def test_twin_state_is_stored_with_each_commit_even_when_data_is_dropped(
    tmp_path: Path, open_box: OpenBox
) -> None:
    """The latest state of every point survives a restart, whatever the buffer dropped."""
    size = _entry_size()
    one = open_box(max_bytes=size * 2, on_full=OnFull.DROP_NEWEST)
    for v in range(1, 20):
        await one.box.put([delta(v, asset="tank1")])
    await one.box.commit()
    await one.close()
    twin = open_box().box.restored_twin
    assert twin["tank1/p0"].value == 19 and twin["tank1/p0"].version == 19


def damage(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database" * 200)


def set_aside(state_dir: Path) -> list[Path]:
    return list(state_dir.glob(f"{DB_FILE}.damaged-*"))


async def test_a_damaged_file_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path, open_box: OpenBox
) -> None:
    """No crash loop: a corrupt database is kept for inspection; sequence numbers still grow."""
    one = open_box()
    await one.box.put([delta(1)])
    (entry,) = await claim(one.box)
    await one.close()
    damage(tmp_path / DB_FILE)

    two = open_box()
    assert set_aside(tmp_path)
    assert [a["alarm"] for a in two.box.active_alarms()] == ["outbox_database_damaged"]
    alarm = (await claim(two.box))[0]
    assert alarm.item.kind is RecordKind.ALARM and alarm.seq > entry.seq
    assert two.telemetry.errors_count("outbox", "database_damaged") == 1


async def test_a_full_disk_degrades_to_a_bounded_memory_queue_and_recovers(
    small_fs: Path, open_box: OpenBox
) -> None:
    """ENOSPC: an alarm, new data still goes out from memory within its bound; then back."""
    opened = open_box(state_dir=small_fs, memory_max_bytes=64 * 1024)
    box = opened.box
    await box.put([delta(1)])
    box.settle((await claim(box))[0].seq, Delivery.DELIVERED)
    await box.commit()
    filler = fill_disk(small_fs)

    for v in range(2, 400):  # about 400 kB of deltas: far more than the disk has left
        await box.put([delta(v, points=20)])
    await box.commit()
    await until(lambda: box.stats().degraded == "full", 5.0, "the outbox notices the full disk")
    assert "outbox_disk_full" in [a["alarm"] for a in box.active_alarms()]
    assert opened.metric("edgetwin_outbox_degraded") == 1
    live = [e for e in await claim(box, limit=1000) if not isinstance(e.item, Record)]
    assert live and values(live) == sorted(values(live)) and values(live)[-1] == 399
    assert box.stats().nbytes <= 64 * 1024 + 2 * _entry_size() * 20  # memory stays bounded
    assert opened.metric("edgetwin_outbox_dropped_total", policy="drop_oldest") > 0

    unclaimed = [e.seq for e in live[len(live) // 2:]]
    for entry in live[: len(live) // 2]:
        box.settle(entry.seq, Delivery.DELIVERED)
    free(filler)
    await until(lambda: box.stats().degraded is None, 10.0, "the outbox recovers")
    await box.commit()
    assert set(unclaimed) <= set(stored_seqs(small_fs / DB_FILE))  # now safe on disk
    assert "outbox_disk_full" not in [a["alarm"] for a in box.active_alarms()]


def fill_disk(where: Path) -> Path:
    return fill(where)


def free(filler: Path) -> None:
    filler.unlink()
