"""Durable store-and-forward: raw SQLite, the outbox through a real Mosquitto, a backlog drain.

Issue 5 asks for these in one run, each on its own temporary state directory:

1. **raw SQLite**, the floor: a table shaped like the outbox's, WAL, ``executemany`` of
   ``--batch`` rows per transaction with bodies as the outbox stores them (``codec.encode``
   of a delta of ``--points`` points), for ``synchronous=NORMAL`` and ``FULL``: inserts
   only (the table grows), and inserts plus deletion of the previous batch (the table stays
   small, as the outbox's does while the link keeps up).
2. **the durable cycle**, for NORMAL and FULL: a producer ``put``s one poll cycle (a delta of
   ``--points`` points for each of ``--assets`` assets) after another, as fast as the
   outbox accepts them (or at ``--rate``), yielding to the loop between cycles, while the
   gateway's ``MqttSession`` publishes at QoS 1 to a private Mosquitto on loopback and
   settles each entry on its PUBACK (the next commit deletes it). Over ``--seconds`` it
   reports what the producer enqueued and what the broker acknowledged
   (``edgetwin_outbox_acked_total``), the depth at both ends, the commits, and the CPU time
   of this process (all threads; per 1000 acknowledged points, which includes producing the
   points still queued), of its event loop thread alone, and of the broker.
3. **the drain of a 1,000,000-point backlog**: ``--backlog-points`` are put with no session,
   the outbox is closed and opened again (a restart), then the session drains it with a
   ``replay_rate`` that does not limit; time from the session's start until the depth is
   zero. What the default ``replay_rate`` (messages/s) would take is computed, not run.

The producer puts prebuilt deltas (a pool it cycles through), so the figures are the cost of
the outbox and the session, not of the twin (``bench_pipeline.py`` measures that). The
gateway runs on one event loop: when its thread is near 100 % of a core, running or ready
and waiting for a CPU that other processes hold (its run-queue wait, shown apart), the loop
is the bottleneck; the broker's share and the raw SQLite rates show how far the others are.
The host's load average is recorded too, as other work on the machine lowers every figure.

Prints one human line per figure and one JSON line; the goal is 50,000 points/s acknowledged
through the durable path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import pwd
import random
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_modbus_face import process_cpu_s

from edgetwin.config.model import BufferConfig, Durability, MqttConfig, SyncConfig
from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import Delta, PointSpec, PointState, Quality, Sample
from edgetwin.outbox import DurableOutbox
from edgetwin.outbox.codec import encode
from edgetwin.outbox.database import ROW_OVERHEAD
from edgetwin.sync import MqttSession
from edgetwin.telemetry import Telemetry, configure_logging
from edgetwin.twin import TwinStore

GOAL_POINTS_PER_S = 50_000
LOOPBACK = "127.0.0.1"
POOL_CYCLES = 20  # distinct poll cycles in the producer's pool
BACKLOG_MAX_BYTES = 2**40  # the backlog is measured whole, never evicted (--backlog-points)
LOOP_SATURATED = 0.85  # share of a core above which a single-threaded process is the limit

RAW_SCHEMA = """
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY, priority INTEGER NOT NULL, asset TEXT NOT NULL,
    created_ns INTEGER NOT NULL, size INTEGER NOT NULL, body BLOB NOT NULL
)"""


# -- the workload ----------------------------------------------------------------------------


def make_pool(assets: int, points: int, cycles: int = POOL_CYCLES) -> list[list[Delta]]:
    """``cycles`` poll cycles, each one delta of ``points`` float points per asset."""
    rng = random.Random(5)
    version = 0
    pool = []
    for _ in range(cycles):
        ts_ns = time.time_ns()
        batch = []
        for a in range(assets):
            version += 1
            changes = {f"p{i}": PointState(rng.uniform(0, 100), ts_ns, Quality.GOOD, version)
                       for i in range(points)}
            batch.append(Delta(f"asset{a}", version, ts_ns, changes))
        pool.append(batch)
    return pool


def specs_of(pool: list[list[Delta]]) -> dict[str, PointSpec]:
    """The point specs a twin needs for every point in the pool."""
    return {f"{d.asset}/{name}": PointSpec(f"{d.asset}/{name}", "bench")
            for d in pool[0] for name in d.changes}


def runqueue_wait_s() -> float:
    """Seconds the calling thread was ready to run but waited for a CPU (Linux), else 0."""
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def points_of(batch: list[Delta]) -> int:
    return sum(len(d.changes) for d in batch)


# -- the broker --------------------------------------------------------------------------------


@contextlib.contextmanager
def mosquitto(workdir: Path) -> Iterator[tuple[int, int]]:
    """A private Mosquitto on an ephemeral loopback port: yields (port, pid); always stopped."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
    if binary is None:
        raise RuntimeError("mosquitto is not installed; `make bench` installs it")
    with socket.socket() as sock:  # mosquitto cannot report a port it chose itself
        sock.bind((LOOPBACK, 0))
        port = int(sock.getsockname()[1])
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} {LOOPBACK}\n"
        # Started as root it would switch to user "mosquitto", who cannot read our temp dir.
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        "allow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n"
        f"log_dest file {workdir / 'mosquitto.log'}\nlog_type error\nlog_type warning\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((LOOPBACK, port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start on {LOOPBACK}:{port}") from None
                time.sleep(0.02)  # connect retry pacing while the broker starts
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- 1. raw SQLite -----------------------------------------------------------------------------


def raw_sqlite(path: Path, durability: Durability, bodies: list[tuple[str, bytes]],
               points: int, batch: int, seconds: float, *, delete: bool) -> dict[str, Any]:
    """Rows/s of batched inserts (and deletes of the previous batch) for ``seconds``."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={durability.value.upper()}")
    db.execute(RAW_SCHEMA)
    seq = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        now_ns = time.time_ns()
        rows = [(s, 0, *bodies[s % len(bodies)]) for s in range(seq, seq + batch)]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?)",
                       ((s, p, asset, now_ns, len(body) + ROW_OVERHEAD, body)
                        for s, p, asset, body in rows))
        if delete and seq:
            db.executemany("DELETE FROM outbox WHERE seq = ?",
                           ((s,) for s in range(seq - batch, seq)))
        db.execute("COMMIT")
        seq += batch
    db.close()
    return {"durability": durability.value, "mode": "insert+delete" if delete else "insert",
            "rows_per_s": round(seq / elapsed), "points_per_s": round(seq * points / elapsed),
            "rows": seq, "batch": batch}


# -- the gateway's side ------------------------------------------------------------------------


class Rig:
    """Outbox, committer, twin and session, wired as the daemon wires them."""

    def __init__(self, state: Path, buffer: BufferConfig, sync: SyncConfig,
                 specs: dict[str, PointSpec]) -> None:
        self.telemetry = Telemetry(process_metrics=False)
        self.outbox = DurableOutbox(state, buffer, self.telemetry, max_delay_s=sync.max_delay,
                                    max_batch=sync.max_batch)
        self.committer = asyncio.create_task(self.outbox.run(), name="outbox.commit")
        self.twin = TwinStore(specs, state, self.outbox.restored_twin)
        self.session = MqttSession(sync, "bench", self.outbox, self.twin, self.telemetry)
        self.stop = asyncio.Event()
        self.session_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Start the session and return once it is connected."""
        self.session_task = asyncio.create_task(self.session.run(self.stop, drain_s=0.0),
                                                name="sync.session")
        while not self.session.connected:
            if self.session_task.done():
                self.session_task.result()
            await asyncio.sleep(0.01)

    def counter(self, name: str) -> float:
        """The value of one of the outbox's unlabelled metrics."""
        return self.telemetry.registry.get_sample_value(name) or 0.0

    def reading(self, broker_pid: int) -> dict[str, float]:
        """Clocks, CPU times and the outbox's counters now; two readings make a measurement."""
        usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: the writer's too
        return {
            "wall": time.perf_counter(), "cpu": usage.ru_utime + usage.ru_stime,
            "loop_cpu": time.thread_time(),  # called on the loop's thread
            "loop_wait": runqueue_wait_s(),  # ready but other processes had the CPUs
            "broker_cpu": process_cpu_s(broker_pid) or 0.0,
            "enqueued": self.counter("edgetwin_outbox_enqueued_total"),
            "acked": self.counter("edgetwin_outbox_acked_total"),
            "commits": self.counter("edgetwin_outbox_commits_total"),
            "commit_s": self.counter("edgetwin_outbox_commit_seconds_sum"),
            "depth": self.outbox.depth(),
        }

    async def close(self) -> None:
        """Stop the session (no drain), then the committer; close the outbox."""
        self.stop.set()
        if self.session_task is not None:
            await asyncio.wait_for(self.session_task, 10)
        await cancel_and_wait(self.committer)
        await self.outbox.close()


def measured(before: dict[str, float], after: dict[str, float], points: int) -> dict[str, Any]:
    """Rates and CPU between two readings; ``points`` is what the acknowledged entries held."""
    d = {k: after[k] - before[k] for k in before}
    wall = d["wall"]
    return {
        "seconds": round(wall, 2), "acked_msgs_per_s": round(d["acked"] / wall),
        "acked_points_per_s": round(points / wall),
        "cpu_ms_per_1000_points": round(d["cpu"] / points * 1e6, 2) if points else None,
        "process_cpu_share": round(d["cpu"] / wall, 2),
        "loop_cpu_share": round(d["loop_cpu"] / wall, 2),
        "loop_wait_share": round(d["loop_wait"] / wall, 2),
        "broker_cpu_share": round(d["broker_cpu"] / wall, 2),
        "commits_per_s": round(d["commits"] / wall, 1),
        "commit_ms_mean": round(d["commit_s"] / d["commits"] * 1e3, 1) if d["commits"] else None,
    }


# -- 2. the durable cycle ----------------------------------------------------------------------


async def produce(outbox: DurableOutbox, pool: list[list[Delta]], rate: float) -> None:
    """Put poll cycles back to back (or ``rate`` points/s); yield between them as a source does."""
    interval = points_of(pool[0]) / rate if rate else 0.0
    due = time.monotonic()
    for i in range(sys.maxsize):
        await outbox.put(pool[i % len(pool)])
        due += interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))


async def cycle(port: int, broker_pid: int, durability: Durability, pool: list[list[Delta]],
                sync: SyncConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue -> publish -> PUBACK -> delete for ``--seconds`` after ``--warmup``."""
    per_delta = points_of(pool[0]) // len(pool[0])
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp), BufferConfig(durability=durability), sync, specs_of(pool))
        # The twin holds every asset, so the session's retained snapshots go out as in service.
        rig.twin.apply([Sample(f"{d.asset}/{n}", s.value, s.quality, s.ts_ns)
                        for d in pool[0] for n, s in d.changes.items()])
        try:
            await rig.connect()
            producer = asyncio.create_task(produce(rig.outbox, pool, args.rate),
                                           name="bench.producer")
            await asyncio.sleep(args.warmup)
            before = rig.reading(broker_pid)
            await asyncio.sleep(args.seconds)
            after = rig.reading(broker_pid)
            await cancel_and_wait(producer)
        finally:
            await rig.close()
        dropped = rig.counter("edgetwin_outbox_dropped_total")
        errors = rig.counter("edgetwin_errors_total")
    wall = after["wall"] - before["wall"]
    enqueued = after["enqueued"] - before["enqueued"]
    result: dict[str, Any] = {
        "durability": durability.value,
        **measured(before, after, round((after["acked"] - before["acked"]) * per_delta)),
        "produced_points_per_s": round(enqueued * per_delta / wall),
        "produced_msgs_per_s": round(enqueued / wall),
        "rows_per_commit": round(enqueued / max(1.0, after["commits"] - before["commits"])),
        "depth_start": int(before["depth"]), "depth_end": int(after["depth"]),
        "depth_growth_per_s": round((after["depth"] - before["depth"]) / wall),
        "dropped": dropped, "errors": errors,
    }
    result["bottleneck"] = bottleneck(result)
    return result


def bottleneck(c: dict[str, Any]) -> str:
    """Which side limits the cycle (the link: outbox -> session -> broker), and on what."""
    if c["acked_msgs_per_s"] >= 0.98 * c["produced_msgs_per_s"]:
        return "the producer (the link keeps up)"
    if c["loop_cpu_share"] >= LOOP_SATURATED:
        return "the link: the gateway's event loop is out of CPU"
    if c["loop_cpu_share"] + c["loop_wait_share"] >= LOOP_SATURATED:
        return "the link: the gateway's event loop is out of CPU, which other processes share"
    if c["broker_cpu_share"] >= LOOP_SATURATED:
        return "the link: the broker is out of CPU"
    return "the link, with no CPU saturated here: other work on the host, or waits"


# -- 3. the backlog drain ----------------------------------------------------------------------


async def fill(state: Path, pool: list[list[Delta]], backlog_points: int) -> dict[str, Any]:
    """Put ``backlog_points`` with no session, commit, close; the enqueue-only rate, file size."""
    outbox = DurableOutbox(state, BufferConfig(max_bytes=BACKLOG_MAX_BYTES),
                           Telemetry(process_metrics=False))
    committer = asyncio.create_task(outbox.run(), name="outbox.commit")
    cycles = max(1, backlog_points // points_of(pool[0]))
    started = time.perf_counter()
    for i in range(cycles):
        await outbox.put(pool[i % len(pool)])
    await outbox.commit()
    elapsed = time.perf_counter() - started
    messages = outbox.depth()
    await cancel_and_wait(committer)
    await outbox.close()
    points = cycles * points_of(pool[0])
    return {"points": points, "messages": messages, "fill_s": round(elapsed, 2),
            "fill_points_per_s": round(points / elapsed), "db_bytes": db_bytes(state)}


def db_bytes(state: Path) -> int:
    """Size of the outbox's database with its write-ahead log."""
    files = [state / f"outbox.db{suffix}" for suffix in ("", "-wal")]
    return sum(f.stat().st_size for f in files if f.exists())


async def drain(port: int, broker_pid: int, pool: list[list[Delta]], sync: SyncConfig,
                backlog_points: int) -> dict[str, Any]:
    """Fill, restart, then drain through the broker with a replay_rate that does not limit."""
    default_rate = BufferConfig().replay_rate
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        filled = await fill(state, pool, backlog_points)
        opened = time.perf_counter()
        rig = Rig(state, BufferConfig(max_bytes=BACKLOG_MAX_BYTES, replay_rate=1e9), sync,
                  specs_of(pool))
        open_s = time.perf_counter() - opened
        try:
            if rig.outbox.depth() != filled["messages"]:
                raise RuntimeError(f"reopened with {rig.outbox.depth()} entries, not"
                                   f" {filled['messages']}")
            before = rig.reading(broker_pid)
            await rig.connect()
            # The outbox has no "empty" event; a 10 ms poll is well within the precision needed.
            while rig.outbox.depth():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            after = rig.reading(broker_pid)
            replayed = rig.counter("edgetwin_outbox_replayed_total")
        finally:
            await rig.close()
        left_bytes = db_bytes(state)  # what the file keeps after the drain, closed
    messages = filled["messages"]
    default_s = messages / default_rate
    return {
        **filled, "open_s": round(open_s, 2), **measured(before, after, filled["points"]),
        "replayed": replayed, "db_bytes_after": left_bytes, "default_replay_rate": default_rate,
        "default_rate_drain_s": round(default_s, 1),
        "default_rate_points_per_s": round(filled["points"] / default_s),
    }


# -- the run -----------------------------------------------------------------------------------


def report(raw: list[dict[str, Any]], cycles: list[dict[str, Any]], backlog: dict[str, Any],
           facts: dict[str, Any]) -> None:
    for r in raw:
        print(f"raw sqlite   {r['durability']:<6} {r['mode']:<13}: {r['rows_per_s']:>7,} rows/s"
              f" {r['points_per_s']:>10,} points/s ({r['batch']} rows a transaction,"
              f" {facts['body_bytes']}-byte bodies)")
    for c in cycles:
        print(f"outbox cycle {c['durability']:<6}: {c['acked_points_per_s']:>7,} points/s"
              f" {c['acked_msgs_per_s']:>5,} msgs/s acknowledged; producer"
              f" {c['produced_points_per_s']:,} points/s; depth {c['depth_start']:,} ->"
              f" {c['depth_end']:,}; bottleneck: {c['bottleneck']}")
        print(f"             {'':<6}  {c['cpu_ms_per_1000_points']} ms CPU per 1000 points;"
              f" event loop {c['loop_cpu_share']:.0%} of a core"
              f" (+{c['loop_wait_share']:.0%} waiting for one), whole process"
              f" {c['process_cpu_share']:.0%}, broker {c['broker_cpu_share']:.0%};"
              f" {c['commits_per_s']} commits/s of {c['rows_per_commit']} rows,"
              f" {c['commit_ms_mean']} ms each; {c['dropped']:.0f} dropped")
    b = backlog
    print(f"backlog fill : {b['points']:,} points ({b['messages']:,} msgs) put with no session"
          f" in {b['fill_s']} s ({b['fill_points_per_s']:,} points/s); outbox.db"
          f" {b['db_bytes'] / 2**20:.1f} MiB; reopened in {b['open_s']} s")
    print(f"backlog drain: {b['seconds']} s = {b['acked_points_per_s']:,} points/s"
          f" {b['acked_msgs_per_s']:,} msgs/s with replay_rate unlimited;"
          f" {b['cpu_ms_per_1000_points']} ms CPU per 1000 points, event loop"
          f" {b['loop_cpu_share']:.0%} of a core (+{b['loop_wait_share']:.0%} waiting for one);"
          f" outbox.db {b['db_bytes_after'] / 2**20:.1f} MiB once empty")
    print(f"backlog drain: at the default replay_rate of {b['default_replay_rate']:g} msgs/s it"
          f" would take {b['default_rate_drain_s']} s ({b['default_rate_points_per_s']:,}"
          f" points/s)")
    print(f"goal         : {GOAL_POINTS_PER_S:,} points/s acknowledged in both modes:"
          f" {'met' if facts['meets_goal'] else 'NOT met'}; host load average before the run"
          f" {facts['loadavg_before'][0]} on {facts['cpus']} CPUs")
    print(json.dumps({"bench": "outbox", **facts, "raw": raw, "cycle": cycles,
                      "backlog": backlog}))


async def run(args: argparse.Namespace) -> None:
    loadavg = [round(x, 2) for x in os.getloadavg()]
    pool = make_pool(args.assets, args.points)
    bodies = [(d.asset, encode(d)) for batch in pool for d in batch]
    raw = []
    with tempfile.TemporaryDirectory() as tmp:
        for durability in Durability:
            for delete in (False, True):
                path = Path(tmp) / f"raw-{durability.value}-{delete}.db"
                raw.append(raw_sqlite(path, durability, bodies, args.points, args.batch,
                                      args.raw_seconds, delete=delete))
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as (port, pid):
        sync = SyncConfig(mqtt=MqttConfig(host=LOOPBACK, port=port, keepalive=30),
                          max_batch=args.max_batch, max_inflight=args.max_inflight)
        cycles = [await cycle(port, pid, durability, pool, sync, args)
                  for durability in Durability]
        backlog = await drain(port, pid, pool, sync, args.backlog_points)
    lowest = min(c["acked_points_per_s"] for c in cycles)
    report(raw, cycles, backlog, {
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "machine": platform.machine(), "cpus": os.cpu_count(), "loadavg_before": loadavg,
        "assets": args.assets, "points_per_delta": args.points,
        "body_bytes": round(sum(len(b) for _, b in bodies) / len(bodies)),
        "max_batch": args.max_batch, "max_inflight": args.max_inflight,
        "producer_rate": args.rate or None, "goal_points_per_s": GOAL_POINTS_PER_S,
        "lowest_acked_points_per_s": lowest, "meets_goal": lowest >= GOAL_POINTS_PER_S,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured time of the cycle, per durability mode (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="cycle time not measured")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="producer points/s (default 0: as fast as the outbox accepts)")
    parser.add_argument("--raw-seconds", type=float, default=2.0, help="per raw SQLite case")
    parser.add_argument("--assets", type=int, default=50)
    parser.add_argument("--points", type=int, default=20, help="points per delta")
    parser.add_argument("--batch", type=int, default=500, help="raw rows per transaction")
    parser.add_argument("--backlog-points", type=int, default=1_000_000)
    defaults = SyncConfig.model_fields
    parser.add_argument("--max-batch", type=int, default=defaults["max_batch"].default,
                        help="sync.max_batch (default: the gateway's)")
    parser.add_argument("--max-inflight", type=int, default=defaults["max_inflight"].default,
                        help="sync.max_inflight (default: the gateway's)")
    args = parser.parse_args()
    # Only errors, on stderr: the figures alone go to stdout.
    configure_logging("console", "error", sys.stderr, library_level="error")
    # aiomqtt pins its logger at WARNING and warns on every publish beyond 10 unacknowledged
    # ones, which the session always has under load; that would be a line per message here.
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
