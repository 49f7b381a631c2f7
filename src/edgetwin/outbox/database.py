"""The outbox's SQLite file: entries, the twin's last state, dead letters; one transaction a batch.

Every method is synchronous and must be called from one thread only (the outbox's writer
thread); readers in other processes (``edgetwin buffer inspect``) open the file read-only,
which WAL allows while the gateway writes.

Invariants:
- one ``commit`` is one transaction: new entries, twin rows, deletions, dead letters and
  evictions become durable together or not at all;
- ``meta.last_seq`` never decreases and is at least every ``seq`` ever committed, so the
  sequence survives the counter file;
- eviction never touches an entry the caller protects (in flight) and takes the lowest
  priority first, oldest first within it.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edgetwin.config.model import Durability

ROW_OVERHEAD = 48  # bytes a row costs beyond its body: key, columns, b-tree cell
# SQLite's page cache, per connection (its default is 2000 KiB, filled page by page as the
# file is used). The outbox touches the head and the tail of one table and the kernel keeps
# the file's pages anyway: 512 KiB costs nothing measurable in bench_outbox and bounds it.
PAGE_CACHE_KIB = 512

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,      -- the per-gateway message sequence
    priority INTEGER NOT NULL,    -- edgetwin.core.types.Priority
    asset TEXT NOT NULL,
    created_ns INTEGER NOT NULL,  -- when it was accepted (Unix ns)
    size INTEGER NOT NULL,        -- body plus row overhead, for max_bytes
    body BLOB NOT NULL            -- edgetwin.outbox.codec
);
CREATE TABLE IF NOT EXISTS twin (
    point TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    quality TEXT NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    rejected_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""

DEAD_LETTER_KEEP = 10_000  # the newest rejected entries kept for inspection

# Rows per INSERT/DELETE statement. Each statement releases and retakes the GIL, and a busy
# event loop holds the GIL for up to the switch interval (5 ms) each time, so a commit of
# one statement per row takes seconds under load; a few large statements do not.
MAX_ROWS_PER_STATEMENT = 512
_TWIN_UPSERT = (" ON CONFLICT(point) DO UPDATE SET value = excluded.value,"
                " ts_ns = excluded.ts_ns, quality = excluded.quality, version = excluded.version")
_T = TypeVar("_T")


def statement_runs(items: Sequence[_T]) -> list[Sequence[_T]]:
    """``items`` in runs of 512, 256, ... 1 rows: at most ten statement texts per kind.

    The sqlite3 module keeps a prepared statement per distinct text (up to 128 per
    connection), and a 500-row INSERT's program holds ~365 KiB: a text per batch size grew
    that cache by megabytes as new outages brought new sizes.
    """
    runs: list[Sequence[_T]] = []
    size = MAX_ROWS_PER_STATEMENT
    start = 0
    while start < len(items):
        while size > len(items) - start:
            size //= 2
        runs.append(items[start:start + size])
        start += size
    return runs


def _insert_sql(table: str, columns: int, rows: int) -> str:
    row = "(" + ",".join("?" * columns) + ")"
    return f"INSERT INTO {table} VALUES " + ",".join([row] * rows)


def _flat(rows: Sequence[tuple[Any, ...]]) -> list[Any]:
    return [value for row in rows for value in row]


class Trouble(enum.Enum):
    """What an SQLite error means for the gateway."""

    CORRUPT = "corrupt"  # the file is damaged: move it aside and start afresh
    FULL = "full"  # no space: keep going in memory until space returns
    IO = "io"  # the disk failed a read or write: like FULL, retried
    LOCKED = "locked"  # another process holds it
    ACCESS = "access"  # cannot open or write: permissions, read-only filesystem
    OTHER = "other"


_TROUBLE_BY_CODE = {
    sqlite3.SQLITE_CORRUPT: Trouble.CORRUPT,
    sqlite3.SQLITE_NOTADB: Trouble.CORRUPT,
    sqlite3.SQLITE_FULL: Trouble.FULL,
    sqlite3.SQLITE_IOERR: Trouble.IO,
    sqlite3.SQLITE_BUSY: Trouble.LOCKED,
    sqlite3.SQLITE_LOCKED: Trouble.LOCKED,
    sqlite3.SQLITE_READONLY: Trouble.ACCESS,
    sqlite3.SQLITE_CANTOPEN: Trouble.ACCESS,
    sqlite3.SQLITE_PERM: Trouble.ACCESS,
    sqlite3.SQLITE_AUTH: Trouble.ACCESS,
}


def trouble_of(err: sqlite3.Error) -> Trouble:
    """Classify an SQLite error by its primary result code."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is None:
        return Trouble.OTHER
    return _TROUBLE_BY_CODE.get(code & 0xFF, Trouble.OTHER)


class DamagedDatabase(Exception):
    """The integrity check failed; what it found is the message."""


@dataclass(slots=True)
class Row:
    """One entry as stored."""

    seq: int
    priority: int
    asset: str
    created_ns: int
    size: int
    body: bytes


@dataclass(slots=True)
class Commit:
    """Everything one transaction writes."""

    rows: list[Row] = field(default_factory=list)
    twin: list[tuple[str, str, int, str, int]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    dead: list[tuple[int, int, str]] = field(default_factory=list)  # (seq, rejected_ns, reason)
    last_seq: int = 0
    # Eviction: free this many bytes from stored rows of priority <= evict_priority, never
    # touching ``protected``; then drop new rows (lowest priority, oldest first) if still short.
    evict_bytes: int = 0
    evict_priority: int = -1
    protected: Collection[int] = ()


@dataclass(slots=True)
class Committed:
    """What a commit did beyond the obvious."""

    evicted: list[tuple[int, int]] = field(default_factory=list)  # stored rows: (seq, size)
    refused: list[Row] = field(default_factory=list)  # new rows dropped for room


@dataclass(frozen=True, slots=True)
class Totals:
    """What the file holds."""

    count: int
    nbytes: int
    last_seq: int
    oldest_ns: int | None


class OutboxDatabase:
    """The open SQLite file."""

    def __init__(self, path: Path, durability: Durability = Durability.NORMAL,
                 *, readonly: bool = False) -> None:
        """Open (creating if needed) and prepare the file; raises ``sqlite3.Error``."""
        self.path = path
        if readonly:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False)
            return
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                msg = f"{path}: cannot switch to WAL (journal_mode={mode})"
                raise sqlite3.OperationalError(msg)
            self._db.execute(f"PRAGMA synchronous={durability.value.upper()}")
            self._db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
            self._db.executescript(_SCHEMA)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the WAL stays; the next open replays it
        finally:
            self._db.close()

    def close_readonly(self) -> None:
        """Close a reader's connection (no checkpoint: the file belongs to the gateway)."""
        self._db.close()

    def check(self) -> None:
        """Quick integrity check; raises ``DamagedDatabase`` with what it found."""
        problems = [r[0] for r in self._db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise DamagedDatabase("; ".join(str(p) for p in problems))

    # -- writes ---------------------------------------------------------------------------

    def commit(self, work: Commit) -> Committed:
        """Apply one batch in one transaction; rolls back and raises ``sqlite3.Error``."""
        done = Committed()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if work.deletes:
                self._delete(work.deletes)
            if work.dead:
                self._dead_letter(work.dead)
            rows = work.rows
            if work.evict_bytes > 0:
                freed = self._evict(work.evict_bytes, work.evict_priority, work.protected, done)
                if freed < work.evict_bytes:
                    rows = self._refuse(rows, work.evict_bytes - freed, done)
            stored = [(r.seq, r.priority, r.asset, r.created_ns, r.size, r.body) for r in rows]
            for batch in statement_runs(stored):
                db.execute(_insert_sql("outbox", 6, len(batch)), _flat(batch))
            for points in statement_runs(work.twin):
                db.execute(_insert_sql("twin", 5, len(points)) + _TWIN_UPSERT, _flat(points))
            if work.last_seq:
                db.execute(
                    "INSERT INTO meta VALUES ('last_seq', ?) ON CONFLICT(key) DO UPDATE SET"
                    " value = max(value, excluded.value)", (work.last_seq,),
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT may have rolled back already
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        return done

    def _evict(self, need: int, max_priority: int, protected: Collection[int],
               done: Committed) -> int:
        freed = 0
        for priority in range(max_priority + 1):
            after = 0
            while freed < need:
                batch = self._db.execute(
                    "SELECT seq, size FROM outbox WHERE priority = ? AND seq > ?"
                    " ORDER BY seq LIMIT 500", (priority, after),
                ).fetchall()
                if not batch:
                    break
                victims = []
                for seq, size in batch:
                    after = seq
                    if seq in protected:
                        continue
                    victims.append((seq, size))
                    freed += size
                    if freed >= need:
                        break
                self._delete([s for s, _ in victims])
                done.evicted.extend(victims)
            if freed >= need:
                break
        return freed

    @staticmethod
    def _refuse(rows: list[Row], need: int, done: Committed) -> list[Row]:
        """Drop new rows, lowest priority and oldest first, until ``need`` bytes are free."""
        order = sorted(rows, key=lambda r: (r.priority, r.seq))
        refused: set[int] = set()
        freed = 0
        for row in order:
            if freed >= need:
                break
            refused.add(row.seq)
            freed += row.size
        done.refused = [r for r in rows if r.seq in refused]
        return [r for r in rows if r.seq not in refused]

    def _dead_letter(self, dead: list[tuple[int, int, str]]) -> None:
        db = self._db
        db.executemany(
            "INSERT OR REPLACE INTO dead_letter SELECT seq, ?, ?, body FROM outbox WHERE seq = ?",
            ((rejected_ns, reason, seq) for seq, rejected_ns, reason in dead),
        )
        self._delete([seq for seq, _, _ in dead])
        db.execute(
            "DELETE FROM dead_letter WHERE seq <= (SELECT seq FROM dead_letter"
            " ORDER BY seq DESC LIMIT 1 OFFSET ?)", (DEAD_LETTER_KEEP,),
        )

    def _delete(self, seqs: Sequence[int]) -> None:
        for chunk in statement_runs(list(seqs)):
            marks = ",".join("?" * len(chunk))
            self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk)

    def reclaim_space(self, max_pages: int = 2000) -> int:
        """Give free pages back to the filesystem; returns how many were free before."""
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        if free:
            self._db.execute(f"PRAGMA incremental_vacuum({int(max_pages)})")
        return free

    # -- reads ----------------------------------------------------------------------------

    def fetch(self, after: int, upto: int | None, limit: int) -> list[tuple[int, bytes]]:
        """Entries with ``after < seq <= upto``, in ``seq`` order."""
        if upto is None:
            query = "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?"
            return self._db.execute(query, (after, limit)).fetchall()
        query = "SELECT seq, body FROM outbox WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
        return self._db.execute(query, (after, upto, limit)).fetchall()

    def totals(self) -> Totals:
        """Count, bytes, last sequence and oldest entry."""
        count, nbytes, oldest = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0), min(created_ns) FROM outbox"
        ).fetchone()
        last = self._db.execute(
            "SELECT max(coalesce((SELECT value FROM meta WHERE key = 'last_seq'), 0),"
            " coalesce((SELECT max(seq) FROM outbox), 0))"
        ).fetchone()[0]
        return Totals(int(count), int(nbytes), int(last), oldest)

    def oldest_ns(self) -> int | None:
        """When the oldest entry was accepted (Unix ns); None when empty."""
        row = self._db.execute("SELECT created_ns FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def per_asset(self) -> list[tuple[str, int, int, int]]:
        """(asset, entries, bytes, oldest created_ns) for every asset with entries."""
        return self._db.execute(
            "SELECT asset, count(*), sum(size), min(created_ns) FROM outbox"
            " GROUP BY asset ORDER BY asset"
        ).fetchall()

    def dead_letters(self) -> int:
        """How many rejected entries are kept."""
        return int(self._db.execute("SELECT count(*) FROM dead_letter").fetchone()[0])

    def rows(self, batch: int = 1000) -> Iterator[Row]:
        """Every entry in ``seq`` order, read in batches (for export)."""
        after = -1
        while True:
            chunk = self._db.execute(
                "SELECT seq, priority, asset, created_ns, size, body FROM outbox"
                " WHERE seq > ? ORDER BY seq LIMIT ?", (after, batch),
            ).fetchall()
            if not chunk:
                return
            for values in chunk:
                yield Row(*values)
            after = chunk[-1][0]

    def twin_rows(self) -> Sequence[tuple[str, str, int, str, int]]:
        """The twin's last state: (point, value, ts_ns, quality, version)."""
        return self._db.execute("SELECT point, value, ts_ns, quality, version FROM twin").fetchall()
