"""The durable outbox: SQLite in ``state_dir``, group commit, two lanes, bounded, self-healing.

Invariants:
- journal first: an entry is claimable only after the transaction holding it committed
  (or, while the disk refuses writes, after it went into the bounded in-memory queue);
- one writer thread owns the database; every call to it holds ``_db_lock``, so a read's
  result is applied before the next commit can change what it read;
- sequence numbers come from a ``ReservedCounter`` whose floor is the database's own
  ``last_seq``: they only grow, across restarts, crashes and a database moved aside;
- ``_bytes`` is what the outbox holds (stored, in memory, staged); eviction keeps it within
  ``max_bytes`` and takes the lowest priority first, never an entry in flight;
- live entries (accepted since the latest reconnect) leave before the backlog; the backlog
  leaves at ``replay_rate``, marked historical; each lane keeps ``seq`` order;
- the twin table always gets the latest state of every point, even when the buffer drops
  the delta that carried it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from edgetwin.config.model import BufferConfig, OnFull
from edgetwin.core.counter import ReservedCounter
from edgetwin.core.errors import DecodeError, StoreError
from edgetwin.core.tasks import finish_despite_cancel, raise_if_cancelling, wait_set
from edgetwin.core.types import (
    Delivery,
    Delta,
    Item,
    OutboxEntry,
    PointState,
    Priority,
    Quality,
    Record,
    RecordKind,
    priority_of,
)
from edgetwin.outbox import codec
from edgetwin.outbox.bucket import TokenBucket
from edgetwin.outbox.database import (
    ROW_OVERHEAD,
    Commit,
    Committed,
    DamagedDatabase,
    OutboxDatabase,
    Row,
    Trouble,
    trouble_of,
)
from edgetwin.telemetry import Telemetry

log = structlog.get_logger("edgetwin.outbox")

DB_FILE = "outbox.db"
SEQ_FILE = "outbox.seq"
_T = TypeVar("_T")

STAGE_MAX = 20_000  # entries accepted but not committed; put waits beyond it
LIVE_CACHE_MAX = 20_000  # committed live entries kept in memory; the rest is read back
LOAD_BATCH = 200  # rows read back at a time; decoded, a 10-point delta holds ~3 KiB
DELETE_DELAY_S = 0.25  # settled entries are deleted in batches at most this late
RETRY_S = 1.0  # while the disk refuses writes, a commit is retried this often
STATS_S = 2.0  # how often the oldest entry's age is looked up
GATHER_S = 0.01  # how long a first staged entry waits for others before its commit
FULL_CLEAR = 0.5  # a "buffer full" episode ends when the outbox is below this share


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What ``status`` and the metrics show of the outbox."""

    depth: int
    nbytes: int
    oldest_age_s: float | None
    backlog: int
    drain_s: float | None
    degraded: str | None
    dead_letters: int


@dataclass(slots=True)
class _Queued:
    """An entry on its way out, with the bytes it holds (and its row until it is stored)."""

    entry: OutboxEntry
    size: int
    row: Row | None = None


def twin_row(point: str, state: PointState) -> tuple[str, str, int, str, int]:
    """The twin table row of one point's state."""
    return (point, codec.encode_value(state.value), state.ts_ns,
            codec.QUALITY_NAME[state.quality], state.version)


class DurableOutbox:
    """The Outbox port on SQLite. ``run()`` must be running for anything to commit."""

    def __init__(
        self,
        state_dir: Path,
        config: BufferConfig,
        telemetry: Telemetry,
        *,
        max_delay_s: float = 0.05,
        max_batch: int = 500,
        hold_s: float = 45.0,
    ) -> None:
        """Open (or create, or repair) ``state_dir/outbox.db``.

        Raises:
            StoreError: the state directory or database cannot be used (locked, read-only,
                no permission); a damaged file is not an error, it is moved aside.
        """
        self.path = state_dir / DB_FILE
        self._config = config
        self._telemetry = telemetry
        self._max_delay_s = max_delay_s
        self._commit_rows = max(max_batch, 1_000)
        self._hold_s = hold_s
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="outbox-db")
        self._db_lock = asyncio.Lock()
        self._init_metrics()
        # Accepted, not yet committed.
        self._staged: list[_Queued] = []
        self._staged_since = 0.0
        self._twin_rows: dict[str, PointState] = {}  # the latest of each point, to store
        # Settled, not yet deleted from the file.
        self._deletes: list[int] = []
        self._dead: list[tuple[int, int, str]] = []
        self._gone: set[int] = set()
        self._dirty_since = 0.0
        # Committed to memory only, while the disk refuses writes.
        self._volatile: dict[int, _Queued] = {}
        self._volatile_bytes = 0
        self._degraded: Trouble | None = None
        self._retry_at = 0.0
        # Out for delivery.
        self._claimed: dict[int, _Queued] = {}
        self._held: deque[tuple[float, int, int]] = deque()  # (sent at, seq, size)
        # The two lanes.
        self._live: deque[_Queued] = deque()
        self._live_tail = 0
        self._live_complete = True
        self._hist: deque[_Queued] = deque()
        self._hist_tail = 0
        self._hist_done = True
        self._boundary = 0
        self._rewound = True  # the first claim starts a replay of what the file holds
        self._backlog = 0
        self._bucket = TokenBucket(config.replay_rate)
        # Events.
        self._wake = asyncio.Event()  # the committer has work
        self._claimable = asyncio.Event()
        self._room = asyncio.Event()
        self._committed = asyncio.Event()
        self._full_episode: str | None = None
        self._episode_drops = 0
        self._closed = False
        self._oldest_ns: int | None = None
        self._dead_count = 0
        self._pending_alarms: list[Record] = []
        self._active_alarms: dict[str, dict[str, Any]] = {}
        self._ack_rate = 0.0  # entries/s settled over the last stats period
        self._acked_since_stats = 0
        self._stats_at = time.monotonic()

        state_dir_ok = state_dir.is_dir()
        if not state_dir_ok:
            msg = f"state directory {state_dir} does not exist"
            raise StoreError(msg)
        self._db, twin_rows, totals_count, totals_bytes, last_seq = self._sync(self._open)
        self.restored_twin = _twin_states(twin_rows)
        self._count = totals_count
        self._bytes = totals_bytes
        self._last_committed = last_seq
        try:
            self._seq = ReservedCounter(state_dir / SEQ_FILE, floor=last_seq)
        except OSError as err:
            self._sync(self._db.close)
            msg = f"outbox sequence in {state_dir} cannot be opened: {err}"
            raise StoreError(msg) from err
        for record in self._pending_alarms:
            body = codec.encode(record)
            self._stage(record, body, Priority.ALARM, len(body) + ROW_OVERHEAD)
        self._pending_alarms.clear()
        self._set_gauges()
        log.info("Outbox opened", path=str(self.path), entries=self._count, bytes=self._bytes,
                 last_seq=last_seq, durability=config.durability.value)

    # -- opening --------------------------------------------------------------------------

    def _sync(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` on the writer thread and wait (only while no loop work depends on it)."""
        return self._thread.submit(fn, *args).result()

    def _open(self) -> tuple[OutboxDatabase, Sequence[Any], int, int, int]:
        try:
            db = self._open_checked()
        except (DamagedDatabase, sqlite3.DatabaseError) as err:
            if isinstance(err, sqlite3.Error) and trouble_of(err) is not Trouble.CORRUPT:
                raise _store_error(self.path, err) from err
            aside = self._move_aside(err)
            db = self._open_checked()
            self._alarm("outbox_database_damaged", True,
                        f"outbox database was damaged ({err}); moved to {aside.name},"
                        " started a fresh one", path=str(aside))
        totals = db.totals()
        return db, db.twin_rows(), totals.count, totals.nbytes, totals.last_seq

    def _open_checked(self) -> OutboxDatabase:
        try:
            db = OutboxDatabase(self.path, self._config.durability)
        except sqlite3.Error as err:
            if trouble_of(err) is Trouble.CORRUPT:
                raise
            raise _store_error(self.path, err) from err
        try:
            db.check()
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, err: BaseException) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").replace(f"{aside}{suffix}")
        self._telemetry.emit_error(
            "outbox", "database_damaged", "open", err, path=str(self.path), moved_to=str(aside),
            message="Outbox database damaged; moved aside, starting a fresh one",
        )
        return aside

    def _init_metrics(self) -> None:
        t = self._telemetry
        self._m_enqueued = t.counter("edgetwin_outbox_enqueued_total", "Entries accepted")
        self._m_acked = t.counter("edgetwin_outbox_acked_total", "Entries the broker confirmed")
        self._m_sent = t.counter("edgetwin_outbox_sent_total",
                                 "Entries written at QoS 0 and held for the replay window")
        self._m_dropped = t.counter("edgetwin_outbox_dropped_total",
                                    "Entries dropped because the buffer was full", ("policy",))
        self._m_rejected = t.counter("edgetwin_outbox_rejected_total",
                                     "Entries that can never be delivered (dead-lettered)")
        self._m_replayed = t.counter("edgetwin_outbox_replayed_total",
                                     "Backlog entries sent as history after a reconnect")
        self._m_commits = t.counter("edgetwin_outbox_commits_total", "Transactions committed")
        self._m_commit_s = t.histogram("edgetwin_outbox_commit_seconds",
                                       "Time one group commit took")
        self._m_depth = t.gauge("edgetwin_outbox_depth", "Entries not yet delivered")
        self._m_bytes = t.gauge("edgetwin_outbox_bytes", "Bytes the outbox holds")
        self._m_oldest = t.gauge("edgetwin_outbox_oldest_age_seconds",
                                 "Age of the oldest undelivered entry")
        self._m_backlog = t.gauge("edgetwin_outbox_backlog",
                                  "Backlog entries still to replay after the latest reconnect")
        self._m_drain = t.gauge("edgetwin_outbox_drain_seconds",
                                "Estimated time to replay the backlog at replay_rate")
        self._m_degraded = t.gauge("edgetwin_outbox_degraded",
                                   "1 while the database refuses writes and memory holds new data")
        self._m_alarms = t.gauge("edgetwin_outbox_alarm", "1 while an outbox alarm is active",
                                 ("alarm",))

    # -- put --------------------------------------------------------------------------------

    async def put(self, items: Sequence[Item]) -> None:
        """Accept a batch; assigns sequence numbers; applies the ``on_full`` policy.

        With ``block_sources`` this waits for room; it also waits while more than
        ``STAGE_MAX`` entries are waiting for a commit (a disk slower than the sources).
        """
        while len(self._staged) >= STAGE_MAX and not self._closed:
            self._committed.clear()
            self._wake.set()
            await self._committed.wait()
        for item in items:
            if isinstance(item, Delta):
                self._mark_dirty()
                prefix = item.asset + "/"
                for name, state in item.changes.items():
                    self._twin_rows[prefix + name] = state
            try:
                body = codec.encode(item)
            except (TypeError, ValueError) as err:
                self._m_rejected.inc()
                self._telemetry.emit_error("outbox", "encode_failed", "put", err,
                                           asset=item.asset)
                continue
            priority = priority_of(item)
            size = len(body) + ROW_OVERHEAD
            if not await self._admit(size, priority):
                continue
            self._stage(item, body, priority, size)
        self._end_full_episode_if_room()

    def _stage(self, item: Item, body: bytes, priority: Priority, size: int) -> None:
        try:
            seq = self._seq.next()
        except OSError as err:  # the counter's ceiling file cannot be written (disk full)
            self._drop("no_sequence", 1)
            self._telemetry.emit_error("outbox", "sequence_unavailable", "put", err,
                                       log=self._episode_drops <= 1)
            return
        row = Row(seq, int(priority), item.asset, time.time_ns(), size, body)
        if not self._staged:
            self._staged_since = time.monotonic()
        self._staged.append(_Queued(OutboxEntry(seq, item), size, row))
        self._bytes += size
        self._count += 1
        self._m_enqueued.inc()
        self._wake.set()

    def _limit(self) -> int:
        """Bytes the outbox may hold now: ``max_bytes``, less while memory stands in for disk."""
        if self._degraded is None:
            return self._config.max_bytes
        in_memory = self._volatile_bytes + sum(q.size for q in self._staged)
        return min(self._config.max_bytes,
                   self._bytes - in_memory + self._config.memory_max_bytes)

    async def _admit(self, size: int, priority: Priority) -> bool:
        """Whether an entry of ``size`` may come in now; blocks under ``block_sources``."""
        if self._bytes + size <= self._limit():
            return True
        policy = self._config.on_full
        if priority > Priority.DATA:
            return True  # the commit evicts lower priorities to make room
        if policy is OnFull.DROP_OLDEST:
            self._start_full_episode("dropping the oldest data")
            return True  # the commit evicts the oldest
        if policy is OnFull.DROP_NEWEST:
            self._start_full_episode("dropping new data")
            self._drop(policy.value, 1)
            return False
        self._start_full_episode("blocking sources until there is room")
        while self._bytes + size > self._limit() and not self._closed:
            self._room.clear()
            await self._room.wait()
        return True

    def _drop(self, reason: str, n: int) -> None:
        self._m_dropped.labels(reason).inc(n)
        self._episode_drops += n

    def _start_full_episode(self, action: str) -> None:
        if self._full_episode is None:
            self._full_episode = action
            self._episode_drops = 0
            self._alarm("outbox_full", True,
                        f"outbox reached its limit of {self._limit()} bytes; {action}",
                        depth=self._count)

    def _end_full_episode_if_room(self) -> None:
        if self._full_episode is not None and self._bytes <= FULL_CLEAR * self._limit():
            self._alarm("outbox_full", False,
                        f"outbox has room again; {self._episode_drops} entries dropped",
                        dropped=self._episode_drops)
            self._full_episode = None

    def _alarm(self, name: str, active: bool, message: str, **fields: Any) -> None:
        """Log, count and queue an alarm record (published on the alarms topic)."""
        self._m_alarms.labels(name).set(1 if active else 0)
        if active:
            self._active_alarms[name] = {"alarm": name, "source": "outbox", "message": message,
                                         "since_ns": time.time_ns()}
        else:
            self._active_alarms.pop(name, None)
        if active:
            self._telemetry.emit_error("outbox", name, "alarm", message,
                                       message="Outbox alarm raised", **fields)
        else:
            log.info("Outbox alarm cleared", alarm=name, detail=message, **fields)
        record = Record(RecordKind.ALARM, "", time.time_ns(), {
            "alarm": name, "active": active, "source": "outbox", "message": message,
        })
        if getattr(self, "_seq", None) is None:
            self._pending_alarms.append(record)  # raised while opening: staged once open
            return
        body = codec.encode(record)
        self._stage(record, body, Priority.ALARM, len(body) + ROW_OVERHEAD)

    # -- the committer ----------------------------------------------------------------------

    async def run(self) -> None:
        """Commit staged entries and deletions until cancelled."""
        last_stats = 0.0
        while True:
            wait_s = self._next_commit_in()
            if wait_s > 0:
                self._wake.clear()
                await wait_set(self._wake, wait_s)
                raise_if_cancelling()
                if self._next_commit_in() > 0:
                    continue  # woken by new work that is not due yet
            await self.commit()
            raise_if_cancelling()
            if (now := time.monotonic()) - last_stats >= STATS_S:
                last_stats = now
                await self._refresh_oldest()

    def _next_commit_in(self) -> float:
        """Seconds until the next commit (or stats refresh) is due."""
        now = time.monotonic()
        due = now + STATS_S
        if self._staged:
            if len(self._staged) >= self._commit_rows:
                return 0.0
            # Gather briefly, not for all of max_delay: under load commits run back to back
            # (batching themselves); when quiet, a change is claimable within milliseconds.
            due = min(due, self._staged_since + min(self._max_delay_s, GATHER_S))
        if self._deletes or self._dead or self._twin_rows:
            due = min(due, self._dirty_since + DELETE_DELAY_S)
        if self._degraded is not None:
            due = max(due, self._retry_at) if not self._staged else due
        if self._held:
            due = min(due, self._held[0][0] + self._hold_s)
        return max(0.0, due - now)

    def _mark_dirty(self) -> None:
        """Something besides new entries waits to be written (twin rows, deletions)."""
        if not (self._deletes or self._dead or self._twin_rows):
            self._dirty_since = time.monotonic()
            self._wake.set()

    async def commit(self) -> None:
        """Write what is staged and settled now, in one transaction (or into memory)."""
        async with self._db_lock:
            self._expire_held()
            if self._degraded is not None and time.monotonic() < self._retry_at:
                # No write attempt before the retry time; new entries go out from memory.
                self._to_memory(self._take_staged())
                return
            staged = self._take_staged()
            volatile = list(self._volatile.values())
            deletes, self._deletes = self._deletes, []
            dead, self._dead = self._dead, []
            twin, self._twin_rows = self._twin_rows, {}
            work = Commit(rows=[q.row for q in volatile + staged if q.row is not None],
                          twin=[twin_row(p, st) for p, st in twin.items()],
                          deletes=deletes, dead=dead,
                          last_seq=self._seq.last)
            if not (work.rows or work.twin or work.deletes or work.dead):
                return
            excess = self._bytes - self._config.max_bytes
            # block_sources promises no drops: a record may overshoot the bound instead.
            if excess > 0 and work.rows and self._config.on_full is not OnFull.BLOCK_SOURCES:
                top = max(r.priority for r in work.rows)
                work.evict_bytes = excess
                work.evict_priority = top if self._config.on_full is OnFull.DROP_OLDEST else top - 1
                work.protected = frozenset(self._claimed)
            started = time.perf_counter()
            future = asyncio.get_running_loop().run_in_executor(self._thread, self._db.commit,
                                                                 work)
            try:
                done = await finish_despite_cancel(future)
            except sqlite3.Error as err:
                self._deletes[:0] = deletes
                self._dead[:0] = dead
                twin.update(self._twin_rows)
                self._twin_rows = twin
                self._commit_failed(err, staged)
                return
            self._m_commit_s.observe(time.perf_counter() - started)
            self._m_commits.inc()
            self._gone.difference_update(deletes)
            self._gone.difference_update(seq for seq, _, _ in dead)
            if self._degraded is not None:
                self._recovered(len(volatile))
            self._apply_committed(staged, done)
            self._end_full_episode_if_room()
            self._committed.set()
            self._set_gauges()

    def _take_staged(self) -> list[_Queued]:
        staged, self._staged = self._staged, []
        return staged

    def _apply_committed(self, staged: list[_Queued], done: Committed) -> None:
        for queued in staged:
            queued.row = None
            self._last_committed = queued.entry.seq
            self._offer_live(queued)
        lost = {seq: size for seq, size in done.evicted}
        lost.update((r.seq, r.size) for r in done.refused)
        if lost:
            self._count -= len(lost)
            self._bytes -= sum(lost.values())
            self._purge_lanes(lost.keys())
            self._drop(self._config.on_full.value, len(lost))
            self._room.set()

    def _purge_lanes(self, seqs: Collection[int]) -> None:
        self._live = deque(q for q in self._live if q.entry.seq not in seqs)
        self._hist = deque(q for q in self._hist if q.entry.seq not in seqs)

    def _offer_live(self, queued: _Queued) -> None:
        """A newly committed entry joins the live lane (or stays on disk when the lane is long)."""
        if self._rewound:
            return  # the next claim starts a replay that reads it back
        if self._live_complete and len(self._live) < LIVE_CACHE_MAX:
            self._live.append(queued)
            self._live_tail = queued.entry.seq
        else:
            self._live_complete = False
        self._claimable.set()

    def _commit_failed(self, err: sqlite3.Error, staged: list[_Queued]) -> None:
        """The disk refused the transaction: new entries live on in memory, bounded."""
        trouble = trouble_of(err)
        self._retry_at = time.monotonic() + RETRY_S
        if self._degraded is None:
            self._degraded = trouble
            self._m_degraded.set(1)
            self._alarm("outbox_disk_" + trouble.value, True,
                        f"outbox database refuses writes ({err}); holding up to"
                        f" {self._config.memory_max_bytes} bytes of new data in memory",
                        path=str(self.path))
        else:
            self._telemetry.emit_error("outbox", "disk_" + trouble.value, "commit", err,
                                       log=False)
        self._to_memory(staged)

    def _to_memory(self, staged: list[_Queued]) -> None:
        """Entries the disk cannot take become claimable from memory, within its bound."""
        for queued in staged:
            self._volatile[queued.entry.seq] = queued
            self._volatile_bytes += queued.size
            self._last_committed = queued.entry.seq
            self._offer_live(queued)
        excess = self._volatile_bytes - self._config.memory_max_bytes
        if excess <= 0:
            return
        newest_first = self._config.on_full is not OnFull.DROP_OLDEST
        order = sorted(self._volatile.values(), key=lambda q: (
            priority_of(q.entry.item), -q.entry.seq if newest_first else q.entry.seq))
        shed: dict[int, int] = {}
        for queued in order:
            if excess <= 0:
                break
            if queued.entry.seq not in self._claimed:
                shed[queued.entry.seq] = queued.size
                excess -= queued.size
        for seq, size in shed.items():
            del self._volatile[seq]
            self._volatile_bytes -= size
            self._count -= 1
            self._bytes -= size
        if shed:
            self._start_full_episode("dropping new data held in memory")
            self._drop(self._config.on_full.value, len(shed))
            self._purge_lanes(shed.keys())
        self._committed.set()

    def _recovered(self, moved: int) -> None:
        trouble = self._degraded
        assert trouble is not None
        self._degraded = None
        self._volatile.clear()
        self._volatile_bytes = 0
        self._m_degraded.set(0)
        self._alarm("outbox_disk_" + trouble.value, False,
                    f"outbox database accepts writes again; {moved} entries moved"
                    " from memory to disk")

    def _expire_held(self) -> None:
        """QoS 0 entries whose replay window has passed are delivered for good."""
        cutoff = time.monotonic() - self._hold_s
        held = self._held
        while held and held[0][0] <= cutoff:
            _, seq, size = held.popleft()
            self._forget(seq, size)

    async def _refresh_oldest(self) -> None:
        """Oldest entry, the measured delivery rate, and free pages back to the filesystem."""
        now = time.monotonic()
        self._ack_rate = self._acked_since_stats / max(1e-3, now - self._stats_at)
        self._acked_since_stats, self._stats_at = 0, now
        idle = self._count == 0 and self._degraded is None
        async with self._db_lock:
            loop = asyncio.get_running_loop()
            try:
                self._oldest_ns = await finish_despite_cancel(
                    loop.run_in_executor(self._thread, self._db.oldest_ns))
                if idle:  # an empty queue: give the high-water mark's pages back, a few at a time
                    await finish_despite_cancel(loop.run_in_executor(self._thread,
                                                                     self._db.reclaim_space))
            except sqlite3.Error:
                return
            raise_if_cancelling()
        self._set_gauges()

    # -- claim, settle, rewind ------------------------------------------------------------

    async def claim(self, limit: int) -> list[OutboxEntry]:
        """Live entries first, then the backlog at ``replay_rate``; waits while there is none."""
        while True:
            if self._rewound:
                self._start_replay()
            batch: list[_Queued] = []
            live_dry = not self._take(self._live, batch, limit)
            if live_dry and not self._live_complete:
                if not batch:
                    await self._load_live()
                    continue
            elif live_dry and (room := min(limit - len(batch), self._bucket.available())) > 0:
                before = len(batch)
                hist_dry = not self._take(self._hist, batch, before + room)
                self._count_replayed(len(batch) - before)
                if hist_dry and not self._hist_done and not batch:
                    await self._load_hist()
                    continue
            if batch:
                for queued in batch:
                    self._claimed[queued.entry.seq] = queued
                return [q.entry for q in batch]
            pending_hist = bool(self._hist) or not self._hist_done
            self._claimable.clear()
            await wait_set(self._claimable, self._bucket.wait_s() if pending_hist else None)

    def _count_replayed(self, replayed: int) -> None:
        if replayed:
            self._bucket.spend(replayed)
            self._m_replayed.inc(replayed)
            self._backlog = max(0, self._backlog - replayed)

    def _take(self, lane: deque[_Queued], batch: list[_Queued], limit: int) -> bool:
        """Move entries from ``lane`` to ``batch`` up to ``limit``; False when the lane ran dry."""
        while len(batch) < limit:
            if not lane:
                return False
            queued = lane.popleft()
            seq = queued.entry.seq
            if seq not in self._gone and seq not in self._claimed:
                batch.append(queued)
        return True

    def _start_replay(self) -> None:
        """After a (re)connect: everything committed so far is the backlog."""
        self._rewound = False
        self._boundary = self._last_committed
        self._hist.clear()
        self._hist_tail = 0
        self._hist_done = False
        self._live.clear()
        self._live_tail = self._boundary
        self._live_complete = True
        self._backlog = self._count - len(self._staged)
        if self._backlog:
            log.info("Replaying the backlog", entries=self._backlog,
                     rate=self._config.replay_rate, drain_s=round(self._drain_s() or 0, 1))

    async def _load_live(self) -> None:
        rows, complete = await self._load(self._live_tail, None, historical=False)
        self._live.extend(rows)
        if rows:
            self._live_tail = rows[-1].entry.seq
        self._live_complete = complete

    async def _load_hist(self) -> None:
        rows, complete = await self._load(self._hist_tail, self._boundary, historical=True)
        self._hist.extend(rows)
        if rows:
            self._hist_tail = rows[-1].entry.seq
        self._hist_done = complete or self._hist_tail >= self._boundary

    async def _load(self, after: int, upto: int | None,
                    *, historical: bool) -> tuple[list[_Queued], bool]:
        """Entries ``after < seq <= upto`` from the file and the in-memory queue, in order."""
        async with self._db_lock:
            future = asyncio.get_running_loop().run_in_executor(
                self._thread, self._db.fetch, after, upto, LOAD_BATCH)
            try:
                stored = await finish_despite_cancel(future)
            except sqlite3.Error as err:
                self._telemetry.emit_error("outbox", "read_failed", "claim", err)
                stored = []
            raise_if_cancelling()  # a read may be dropped: the lane's tail did not move
            complete = len(stored) < LOAD_BATCH
            out: list[_Queued] = []
            for seq, body in stored:
                if seq in self._gone:
                    continue
                try:
                    item = codec.decode(body)
                except DecodeError as err:
                    self._dead_letter(seq, len(body) + ROW_OVERHEAD, str(err))
                    continue
                out.append(_Queued(OutboxEntry(seq, item, historical), len(body) + ROW_OVERHEAD))
            if self._volatile and complete:
                # In-memory entries are newer than every stored one: they follow the file.
                out.extend(_Queued(OutboxEntry(seq, q.entry.item, historical), q.size)
                           for seq, q in self._volatile.items()
                           if seq > after and (upto is None or seq <= upto))
        return out, complete

    def settle(self, seq: int, outcome: Delivery, reason: str | None = None) -> None:
        """Record the outcome of one claimed entry; others (rewound since) are ignored."""
        queued = self._claimed.pop(seq, None)
        if queued is None:
            return
        if outcome is Delivery.RETRY:
            lane = self._hist if queued.entry.historical else self._live
            lane.appendleft(queued)
            if len(lane) > 1 and lane[1].entry.seq < seq:
                ordered = sorted(lane, key=lambda q: q.entry.seq)
                lane.clear()
                lane.extend(ordered)
            self._claimable.set()
            return
        if outcome is Delivery.SENT:
            self._m_sent.inc()
            self._acked_since_stats += 1
            self._held.append((time.monotonic(), seq, queued.size))
            self._wake.set()
            return
        if outcome is Delivery.REJECTED:
            self._dead_letter(seq, queued.size, reason or "rejected")
            return
        self._m_acked.inc()
        self._acked_since_stats += 1
        self._forget(seq, queued.size)

    def _dead_letter(self, seq: int, size: int, reason: str) -> None:
        self._m_rejected.inc()
        self._dead_count += 1
        self._mark_dirty()
        self._dead.append((seq, time.time_ns(), reason))
        self._release(seq, size)

    def _forget(self, seq: int, size: int) -> None:
        self._mark_dirty()
        self._deletes.append(seq)
        self._release(seq, size)

    def _release(self, seq: int, size: int) -> None:
        """The entry is done: out of memory now, out of the file at the next commit."""
        self._gone.add(seq)
        queued = self._volatile.pop(seq, None)
        if queued is not None:
            self._volatile_bytes -= queued.size
        self._count -= 1
        self._bytes -= size
        self._room.set()

    def confirm_sent(self) -> None:
        """A clean disconnect: whatever was written at QoS 0 reached the broker."""
        while self._held:
            _, seq, size = self._held.popleft()
            self._forget(seq, size)

    def waiting(self) -> int:
        """Entries not yet written to any broker (depth less those held after QoS 0)."""
        return self._count - len(self._held)

    def rewind(self) -> None:
        """Everything claimed or held goes again, as history, in order."""
        self._claimed.clear()
        self._held.clear()
        self._live.clear()
        self._hist.clear()
        self._rewound = True
        self._claimable.set()

    # -- sizes and stats --------------------------------------------------------------------

    def depth(self) -> int:
        """Entries not yet delivered (pending, claimed and held for the QoS 0 window)."""
        return self._count

    def nbytes(self) -> int:
        """Bytes the outbox holds."""
        return self._bytes

    def _drain_s(self) -> float | None:
        """Backlog over the rate it can leave at: the replay rate, or the link when slower."""
        if not self._backlog:
            return None
        rate = self._config.replay_rate
        if self._ack_rate > 0:
            rate = min(rate, self._ack_rate)
        return self._backlog / rate

    def stats(self) -> OutboxStats:
        """Depth, bytes, oldest age, backlog and its drain time, degradation."""
        oldest = None
        if self._oldest_ns is not None and self._count:
            oldest = max(0.0, (time.time_ns() - self._oldest_ns) / 1e9)
        return OutboxStats(
            depth=self._count, nbytes=self._bytes, oldest_age_s=oldest, backlog=self._backlog,
            drain_s=self._drain_s(),
            degraded=None if self._degraded is None else self._degraded.value,
            dead_letters=self._dead_count,
        )

    def active_alarms(self) -> list[dict[str, Any]]:
        """Alarms raised and not yet cleared (a damaged database stays until restart)."""
        return list(self._active_alarms.values())

    def _set_gauges(self) -> None:
        stats = self.stats()
        self._m_depth.set(stats.depth)
        self._m_bytes.set(stats.nbytes)
        self._m_oldest.set(stats.oldest_age_s or 0.0)
        self._m_backlog.set(stats.backlog)
        self._m_drain.set(stats.drain_s or 0.0)

    # -- closing ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Commit what is staged and settled, then close the file. Call after ``run`` ended."""
        if self._closed:
            return
        self._retry_at = 0.0  # one last real attempt, even while degraded
        await self.commit()
        self._closed = True
        self._room.set()
        self._committed.set()
        async with self._db_lock:
            future = asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
            await finish_despite_cancel(future)
        self._thread.shutdown(wait=True)
        lost = len(self._volatile) + len(self._staged)
        if lost:
            log.error("Outbox closed with entries only in memory; they are lost", lost=lost)
        log.info("Outbox closed", entries=self._count, bytes=self._bytes)


def _twin_states(rows: Sequence[tuple[str, str, int, str, int]]) -> dict[str, PointState]:
    states = {}
    for point, value, ts_ns, quality, version in rows:
        try:
            states[point] = PointState(codec.decode_value(value), int(ts_ns), Quality(quality),
                                       int(version))
        except ValueError:
            log.warning("Twin row unreadable; point starts empty", point=point)
    return states


def _store_error(path: Path, err: sqlite3.Error) -> StoreError:
    trouble = trouble_of(err)
    why = {
        Trouble.LOCKED: "it is locked by another process (is another gateway running?)",
        Trouble.ACCESS: "no permission to write it, or the filesystem is read-only",
        Trouble.FULL: "the disk is full",
    }.get(trouble, str(err))
    return StoreError(f"outbox database {path} cannot be opened: {why} ({err})")
