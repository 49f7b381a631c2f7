from pathlib import Path

import pytest

from edgetwin.core.backoff import Backoff
from edgetwin.core.counter import ReservedCounter
from tests.helpers.mounts import fill, mount_tmpfs, unmount


def test_counter_grows_across_reopen_without_clean_close(tmp_path: Path) -> None:
    """A reopened counter (as after a crash) never hands out a value it handed out before."""
    path = tmp_path / "seq"
    first = ReservedCounter(path, block=10)
    issued = [first.next() for _ in range(25)]
    second = ReservedCounter(path, block=10)  # no close: the first one "crashed"
    assert second.next() > max(issued)


def test_counter_writes_once_per_block(tmp_path: Path) -> None:
    """The ceiling file changes only when a block is used up, not per value."""
    path = tmp_path / "seq"
    counter = ReservedCounter(path, block=100)
    ceiling = path.read_text()
    for _ in range(50):
        counter.next()
    assert path.read_text() == ceiling


def test_counter_reserves_its_next_block_on_a_full_disk(tmp_path: Path) -> None:
    """A real 64 KiB tmpfs, filled up: the next block is still reserved and survives."""
    state = tmp_path / "state"
    mount_tmpfs(state, 64)
    try:
        path = state / "seq"
        (state / "old-format").write_text("5\n")  # a ceiling file of an older release
        ReservedCounter(state / "old-format", block=10)
        counter = ReservedCounter(path, block=10)
        fill(state)
        issued = [counter.next() for _ in range(25)]  # two more blocks reserved
        assert issued == list(range(1, 26))
        assert ReservedCounter(path, block=10).next() > 25
        assert int((state / "old-format").read_text()) == 15
    finally:
        unmount(state)


def test_counter_respects_floor(tmp_path: Path) -> None:
    """A floor (the highest version in a restored snapshot) is honoured."""
    counter = ReservedCounter(tmp_path / "seq", floor=500)
    assert counter.next() == 501


def test_corrupt_counter_file_is_refused(tmp_path: Path) -> None:
    """A corrupt ceiling file is an error, never a silent restart from zero."""
    path = tmp_path / "seq"
    path.write_text("not a number")
    with pytest.raises(OSError, match="corrupt"):
        ReservedCounter(path)


def test_backoff_doubles_with_jitter_up_to_max_and_resets() -> None:
    """Delays grow exponentially within [d/2, d], cap at max_s, and start over on reset."""
    backoff = Backoff(initial_s=1.0, max_s=8.0)
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0
