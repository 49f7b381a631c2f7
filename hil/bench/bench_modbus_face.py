"""Throughput of plcsim's Modbus TCP face: 125-register holding reads per second.

plcsim runs as it does for a gateway (``python -m plcsim modbus --port 0``, a subprocess
with its plant ticking every 100 ms); pymodbus clients in this process read the vibration
block (holding 1000-5095, 125 registers per request, cycling through its 33 requests) as
fast as each gets answers, one request outstanding per connection, for ``--seconds`` per
connection count. Every answer is checked for its length. It prints one human line per
connection count and one JSON line for machines. The target: 2,000 reads/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import pymodbus
from pymodbus.client import AsyncModbusTcpClient

from plcsim import SimProcess

TARGET_READS_PER_S = 2000
BLOCK = 1000
SAMPLES = 4096
COUNT = 125
STARTS = list(range(BLOCK, BLOCK + SAMPLES - COUNT + 1, COUNT))  # 32 full reads in the block


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process used so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hammer(host: str, port: int, connections: int, seconds: float,
                 server_pid: int) -> dict[str, Any]:
    """``connections`` clients reading for ``seconds``; reads per second in total."""
    clients = [AsyncModbusTcpClient(host, port=port, timeout=2, retries=0, reconnect_delay=0)
               for _ in range(connections)]
    for client in clients:
        if not await client.connect():
            raise RuntimeError(f"cannot connect to {host}:{port}")
    errors = 0

    async def reader(client: AsyncModbusTcpClient, offset: int, until: float) -> int:
        nonlocal errors
        done = 0
        while time.perf_counter() < until:
            start = STARTS[(done + offset) % len(STARTS)]
            response = await client.read_holding_registers(start, count=COUNT, device_id=1)
            if response.isError() or len(response.registers) != COUNT:
                errors += 1
            done += 1
        return done

    try:
        for client in clients:  # warm up: connections, caches, the first capture's conversion
            await client.read_holding_registers(BLOCK, count=COUNT, device_id=1)
        cpu = time.process_time()
        server_cpu = process_cpu_s(server_pid)
        started = time.perf_counter()
        until = started + seconds
        counts = await asyncio.gather(*(reader(c, i * 7, until) for i, c in enumerate(clients)))
        elapsed = time.perf_counter() - started
        cpu_s = time.process_time() - cpu
        server_after = process_cpu_s(server_pid)
    finally:
        for client in clients:
            client.close()
    reads = sum(counts)
    server_s = (None if server_cpu is None or server_after is None
                else server_after - server_cpu)
    return {"connections": connections, "reads": reads, "seconds": round(elapsed, 3),
            "reads_per_s": round(reads / elapsed), "errors": errors,
            "client_cpu_share": round(cpu_s / elapsed, 2),
            "server_cpu_share": None if server_s is None else round(server_s / elapsed, 2),
            "server_us_per_read": None if server_s is None else round(server_s / reads * 1e6)}


async def run(connections: list[int], seconds: float) -> list[dict[str, Any]]:
    sim = await SimProcess.start("modbus", "--host", "127.0.0.1", "--port", "0",
                                 "--seed", "1")
    try:
        results = []
        for count in connections:
            results.append(await hammer(sim.host, sim.port, count, seconds, sim.pid))
        return results
    finally:
        await sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per connection count")
    parser.add_argument("--connections", default="1,4",
                        help="connection counts to run, comma separated (default 1,4)")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    results = asyncio.run(run(counts, args.seconds))
    for result in results:
        print(f"modbus face  125-register reads: {result['reads_per_s']}/s with "
              f"{result['connections']} connections ({result['errors']} errors; server "
              f"{result['server_us_per_read']} us CPU per read)")
    best = max(r["reads_per_s"] for r in results)
    print(json.dumps({
        "bench": "modbus_face", "python": platform.python_version(),
        "pymodbus": pymodbus.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(), "registers_per_read": COUNT, "results": results,
        "best_reads_per_s": best, "target_reads_per_s": TARGET_READS_PER_S,
        "meets_target": best >= TARGET_READS_PER_S,
    }))


if __name__ == "__main__":
    main()
