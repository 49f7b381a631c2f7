"""Freshness windows and the on-disk memory of command ids."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edgetwin.core.errors import StoreError
from edgetwin.core.types import Command, CommandOrigin
from edgetwin.safety.replay import Remembered, ReplayStore, freshness_problem

NOW = 1_763_770_000_000
AGE, SKEW = 30_000, 5_000


def command(issued: int | None, expires: int | None = None) -> Command:
    return Command("c", "a/b", 1, CommandOrigin.JSON_CMD, 0, issued, expires)


@pytest.mark.parametrize(("issued", "expires", "code"), [
    (NOW, None, None),
    (NOW - AGE - SKEW, None, None),  # the oldest still accepted
    (NOW - AGE - SKEW - 1, None, "too_old"),
    (NOW + SKEW, None, None),  # the furthest ahead still accepted
    (NOW + SKEW + 1, None, "from_future"),
    (NOW - 1000, NOW, None),  # expires this very millisecond: still valid
    (NOW - 1000, NOW - 1, "expired"),  # no skew on expiry
    (None, NOW + 1000, "no_issued_at"),
])
def test_freshness_window(issued: int | None, expires: int | None, code: str | None) -> None:
    """issued_at within [now - max_age - skew, now + skew], expires_at not passed."""
    problem = freshness_problem(command(issued, expires), NOW, AGE, SKEW)
    assert (problem[0] if problem else None) == code


def test_ids_are_remembered_across_a_reopen(tmp_path: Path) -> None:
    """An id is on disk once remember returns NEW; a new store on the file knows it."""
    path = tmp_path / "seen.sqlite"
    store = ReplayStore(path, 100, SKEW)
    assert store.remember("a", NOW + AGE, NOW) is Remembered.NEW
    assert store.remember("a", NOW + AGE, NOW) is Remembered.SEEN
    store.close()
    again = ReplayStore(path, 100, SKEW)
    assert again.remember("a", NOW + AGE, NOW + 1) is Remembered.SEEN
    assert len(again) == 1
    again.close()


def test_expired_ids_are_forgotten_and_the_store_stays_bounded(tmp_path: Path) -> None:
    """When full, expired ids make room; live ones never do: the store refuses instead."""
    store = ReplayStore(tmp_path / "seen.sqlite", 100, SKEW)
    for i in range(100):
        assert store.remember(f"old{i}", NOW + i, NOW) is Remembered.NEW
    assert store.remember("one-more", NOW + 1000, NOW) is Remembered.FULL
    assert store.remember("old5", NOW + 1000, NOW) is Remembered.SEEN
    later = NOW + 50  # ids until < NOW+50 have expired: old0..old49
    assert store.remember("one-more", later + 1000, later) is Remembered.NEW
    assert len(store) == 51
    assert store.remember("old60", later, later) is Remembered.SEEN
    store.close()


def test_a_clock_stepping_back_is_refused(tmp_path: Path) -> None:
    """Behind the recorded high-water mark by more than the skew: nothing can be judged."""
    path = tmp_path / "seen.sqlite"
    store = ReplayStore(path, 100, SKEW)
    assert store.remember("a", NOW + AGE, NOW) is Remembered.NEW
    assert store.remember("b", NOW + AGE, NOW - SKEW) is Remembered.NEW  # within the skew
    assert store.remember("c", NOW + AGE, NOW - SKEW - 1) is Remembered.CLOCK
    store.close()
    reopened = ReplayStore(path, 100, SKEW)  # the mark is on disk too
    assert reopened.high_water_ms == NOW
    assert reopened.remember("c", NOW + AGE, NOW - 60_000) is Remembered.CLOCK
    reopened.close()


def test_a_broken_database_is_a_store_error(tmp_path: Path) -> None:
    """A file that is not a database cannot be opened; a closed one raises on use."""
    bad = tmp_path / "seen.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot be opened"):
        ReplayStore(bad, 100, SKEW)
    store = ReplayStore(tmp_path / "ok.sqlite", 100, SKEW)
    store.close()
    with pytest.raises((StoreError, sqlite3.ProgrammingError)):
        store.remember("x", NOW, NOW)


def test_purge_forgets_only_what_can_no_longer_be_fresh(tmp_path: Path) -> None:
    """At start-up the policy purges ids that expired while the gateway was down."""
    store = ReplayStore(tmp_path / "replay.db", 100, 0)
    store.remember("old", 1_000, 500)
    store.remember("live", 5_000, 500)
    store.purge(2_000)
    assert len(store) == 1
    assert store.remember("old", 9_000, 2_000) is Remembered.NEW  # forgotten
    assert store.remember("live", 9_000, 2_000) is Remembered.SEEN
    store.close()
