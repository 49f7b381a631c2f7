"""Samples/s through deadband -> twin -> durable outbox -> JSON twin encoding, in one process.

This is the gateway's per-sample hot path without the network: a source's batch is folded
into the twin, its deltas committed to the SQLite outbox (group commit, synchronous=NORMAL,
on a temporary directory), claimed, encoded and settled as if the broker had acknowledged
them. It prints one line per scenario and one JSON line for machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edgetwin.config.model import BufferConfig
from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import Delivery, Delta, PointSpec, Quality, Sample
from edgetwin.outbox import DurableOutbox
from edgetwin.sync.jsontwin import JsonTwinEncoder
from edgetwin.telemetry import Telemetry
from edgetwin.twin import TwinStore

DEADBAND = 0.5


async def run_scenario(points: int, assets: int, cycles: int, change_ratio: float,
                       state_dir: Path) -> dict[str, float]:
    """Push ``cycles`` batches of ``points`` samples; ``change_ratio`` of them beat the deadband."""
    ids = [f"asset{i % assets}/p{i}" for i in range(points)]
    specs = {pid: PointSpec(pid, "bench", deadband=DEADBAND) for pid in ids}
    outbox = DurableOutbox(state_dir, BufferConfig(max_bytes=1 << 30), Telemetry(),
                           max_delay_s=0.005)
    committer = asyncio.create_task(outbox.run())
    twin = TwinStore(specs, state_dir, outbox.restored_twin)
    encoder = JsonTwinEncoder("edgetwin/v1", "bench")
    rng = np.random.default_rng(7)
    # Precomputed values: a point that changes in a cycle toggles between two levels 2*DEADBAND
    # apart; the others only jitter by DEADBAND/10 around their level, which the deadband hides.
    base = rng.uniform(0, 100, points)
    toggles = rng.random((cycles, points)) < change_ratio
    level = (np.cumsum(toggles, axis=0) % 2) * 2 * DEADBAND
    jitter = rng.uniform(-DEADBAND / 10, DEADBAND / 10, (cycles, points))
    values = base + level + jitter
    batches = [
        [Sample(pid, float(v), Quality.GOOD, c + 1) for pid, v in zip(ids, row, strict=True)]
        for c, row in enumerate(values.tolist())
    ]
    first = twin.apply(batches[0])  # first sight of every point is a change
    await outbox.put(first)
    settled = 0
    while settled < len(first):
        for entry in await outbox.claim(10**6):
            outbox.settle(entry.seq, Delivery.DELIVERED)
            settled += 1

    deltas = messages = changes = payload_bytes = 0
    started = time.perf_counter()
    for batch in batches[1:]:
        new = twin.apply(batch)
        await outbox.put(new)
        deltas += len(new)
    await outbox.commit()
    while messages < deltas:
        for entry in await outbox.claim(10_000):
            message = encoder.entry(entry)
            payload_bytes += len(message.payload)
            assert isinstance(entry.item, Delta)
            messages += 1
            changes += len(entry.item.changes)
            outbox.settle(entry.seq, Delivery.DELIVERED)
    elapsed = time.perf_counter() - started
    await cancel_and_wait(committer)
    await outbox.close()
    samples = points * (cycles - 1)
    return {
        "points": points, "change_ratio": change_ratio, "samples": samples,
        "seconds": round(elapsed, 4), "samples_per_s": round(samples / elapsed),
        "changes_per_s": round(changes / elapsed), "deltas_per_s": round(deltas / elapsed),
        "us_per_sample": round(elapsed / samples * 1e6, 3),
        "bytes_per_change": round(payload_bytes / changes, 1) if changes else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--assets", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    results = []
    for ratio in (0.0, 0.1, 1.0):
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(run_scenario(args.points, args.assets, args.cycles, ratio,
                                              Path(tmp)))
        results.append(result)
        print(f"pipeline  {ratio:>4.0%} of samples change: {result['samples_per_s']:>10,} samples/s"
              f"  {result['changes_per_s']:>9,} changes/s  {result['us_per_sample']:.2f} us/sample"
              f"  ({result['samples']:,} samples, {result['points']} points)")
    print(json.dumps({"bench": "pipeline", "python": platform.python_version(),
                      "machine": platform.machine(), "results": results}))


if __name__ == "__main__":
    main()
