"""The outbox's SQLite layer: statement shapes that keep its memory bounded."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from edgetwin.daemon.allocator import heap_usage
from edgetwin.outbox.database import (
    MAX_ROWS_PER_STATEMENT,
    Commit,
    OutboxDatabase,
    Row,
    statement_runs,
)

SIZES = {2**k for k in range(10)}  # 1 .. 512


@given(st.integers(0, 5000))
def test_statement_runs_cover_the_items_in_order_with_ten_sizes_at_most(count: int) -> None:
    items = list(range(count))
    runs = statement_runs(items)
    assert [item for run in runs for item in run] == items
    assert {len(run) for run in runs} <= SIZES
    assert max(SIZES) == MAX_ROWS_PER_STATEMENT
    # as few statements as the ladder allows: full runs, then one per binary digit
    assert len(runs) == count // 512 + (count % 512).bit_count()


def test_batches_of_every_size_do_not_grow_the_statement_cache(tmp_path: Path) -> None:
    """Commits of 1..600 rows leave the heap where it was, give or take one ladder.

    With one INSERT and one DELETE text per batch size, the sqlite3 module's statement cache
    (128 per connection) filled with large programs: this sweep grew the heap by 3.75 MiB.
    """
    db = OutboxDatabase(tmp_path / "outbox.db")
    seq = 0

    def store_and_delete(count: int) -> None:
        nonlocal seq
        rows = [Row(seq + i, 1, "pump1", 0, 10, b"0123456789") for i in range(count)]
        seq += count
        twin = [(f"pump1/p{i}", "1", 0, "GOOD", 1) for i in range(min(count, 40))]
        db.commit(Commit(rows=rows, twin=twin, last_seq=seq))
        db.commit(Commit(deletes=[row.seq for row in rows]))

    try:
        store_and_delete(1023)  # every run size once: the ladder's statements are cached
        before = heap_usage()
        assert before is not None, "glibc's mallinfo2 is needed to see the heap"
        for count in range(1, 601):
            store_and_delete(count)
        after = heap_usage()
        assert after is not None
        assert after.in_use - before.in_use < 1.5 * 2**20
        assert db.totals().count == 0
    finally:
        db.close()
