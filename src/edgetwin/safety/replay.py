"""Freshness of a command and the on-disk memory of command ids already seen.

Invariants:
- a command is fresh only when it says when it was issued, that time is at most
  ``max_age + skew`` ago and at most ``skew`` ahead, and ``expires_at`` (if given) has not
  passed: ``now <= expires_at``, with no tolerance;
- an id is remembered (committed with ``synchronous=FULL``) before ``remember`` returns
  True, so a write can follow only after the id is on disk, and it stays remembered until
  ``issued_at + max_age + skew``: past that the command would be refused as too old anyway,
  so forgetting the id reopens nothing;
- the store refuses (``clock``) while the wall clock is more than ``skew`` behind the latest
  time it recorded, since an id forgotten by the later clock could otherwise be replayed;
- the store holds at most ``max_ids`` ids; when full of live ids it refuses (``full``)
  rather than forget one early.
"""

from __future__ import annotations

import enum
import sqlite3
from pathlib import Path

from edgetwin.core.errors import StoreError
from edgetwin.core.types import Command

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, until_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_until ON seen (until_ms);
CREATE TABLE IF NOT EXISTS clock (one INTEGER PRIMARY KEY CHECK (one = 1),
                                  high_water_ms INTEGER NOT NULL);
"""
_PURGE_EVERY = 256  # inserts between sweeps of expired ids (also swept when full)


def freshness_problem(
    command: Command, now_ms: int, max_age_ms: int, skew_ms: int
) -> tuple[str, str] | None:
    """None when the command is fresh, else (code, why)."""
    issued = command.issued_at_ms
    if issued is None:
        return "no_issued_at", "the command does not say when it was issued (issued_at)"
    age_ms = now_ms - issued
    if age_ms > max_age_ms + skew_ms:
        return "too_old", (f"issued {age_ms / 1000:.3f} s ago; commands older than "
                           f"max_age {max_age_ms / 1000:g} s (+ {skew_ms / 1000:g} s clock "
                           f"skew) are refused")
    if age_ms < -skew_ms:
        return "from_future", (f"issued {-age_ms / 1000:.3f} s in the future; the allowed "
                               f"clock skew is {skew_ms / 1000:g} s")
    expires = command.expires_at_ms
    if expires is not None and now_ms > expires:
        return "expired", f"expired {(now_ms - expires) / 1000:.3f} s ago (expires_at)"
    return None


class Remembered(enum.Enum):
    """What ``ReplayStore.remember`` made of an id."""

    NEW = "new"  # never seen; now remembered on disk
    SEEN = "seen"  # a replay
    FULL = "full"  # too many live ids to remember one more
    CLOCK = "clock"  # the wall clock went back; nothing can be judged


class ReplayStore:
    """Command ids seen, in SQLite, each kept until its command could no longer be fresh.

    Not thread-safe: the policy calls it from its one disk thread only. ``close`` ends it.

    Raises:
        StoreError: the database cannot be opened.
    """

    def __init__(self, path: Path, max_ids: int, skew_ms: int) -> None:
        self.path = path
        self._max_ids = max_ids
        self._skew_ms = skew_ms
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an id counts once it survives power loss
            self._db.executescript(_SCHEMA)
            (self._count,) = self._db.execute("SELECT count(*) FROM seen").fetchone()
            row = self._db.execute("SELECT high_water_ms FROM clock").fetchone()
        except sqlite3.Error as err:
            raise StoreError(f"replay store {path} cannot be opened: {err}") from err
        self.high_water_ms: int = row[0] if row else 0
        self._since_purge = 0

    def __len__(self) -> int:
        return int(self._count)

    def configure(self, max_ids: int, skew_ms: int) -> None:
        """Take new bounds (a reload); ids already remembered stay."""
        self._max_ids = max_ids
        self._skew_ms = skew_ms

    def remember(self, command_id: str, until_ms: int, now_ms: int) -> Remembered:
        """Record ``command_id`` until ``until_ms``, unless it is known or cannot be judged.

        Raises:
            StoreError: the database failed; the caller must deny.
        """
        if now_ms < self.high_water_ms - self._skew_ms:
            return Remembered.CLOCK
        try:
            self._since_purge += 1
            if self._since_purge >= _PURGE_EVERY or self._count >= self._max_ids:
                self.purge(now_ms)
            if self._db.execute("SELECT 1 FROM seen WHERE id = ?", (command_id,)).fetchone():
                return Remembered.SEEN
            if self._count >= self._max_ids:
                return Remembered.FULL
            high = max(self.high_water_ms, now_ms)
            with self._db:  # one transaction: the id and the clock's high-water mark
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO seen (id, until_ms) VALUES (?, ?)",
                                 (command_id, until_ms))
                self._db.execute("INSERT INTO clock (one, high_water_ms) VALUES (1, ?) "
                                 "ON CONFLICT (one) DO UPDATE SET high_water_ms = ?",
                                 (high, high))
        except sqlite3.Error as err:
            raise StoreError(f"replay store {self.path}: {err}") from err
        self._count += 1
        self.high_water_ms = high
        return Remembered.NEW

    def purge(self, now_ms: int) -> None:
        """Forget the ids whose commands can no longer be fresh.

        Also run at start-up, for the ids that expired while the gateway was down.
        """
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            gone = self._db.execute("DELETE FROM seen WHERE until_ms < ?", (now_ms,)).rowcount
        self._count -= gone
        self._since_purge = 0

    def close(self) -> None:
        """Close the database; ``remember`` must not be called afterwards."""
        self._db.close()
