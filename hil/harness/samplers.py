"""Periodic witnesses of a run: the gateway's RSS and CPU, its own metrics, the sim's true state.

Each sampler is a task that appends JSON lines to its file until cancelled. Resource use
is read from ``/proc`` (the process and its descendants), so it works for any gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Coroutine
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds, RSS bytes) of one process, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the name in () may hold spaces
    ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
    return ppid, (utime + stime) / _TICKS, int(statm[1]) * _PAGE


def process_tree_usage(root: int) -> tuple[int, float] | None:
    """RSS bytes and cumulative CPU seconds of ``root`` and every descendant."""
    top = _stat(root)
    if top is None:
        return None
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (info := _stat(int(entry.name))) is not None:
            children.setdefault(info[0], []).append(int(entry.name))
    rss, cpu, todo = 0, 0.0, [root]
    while todo:
        pid = todo.pop()
        if (info := _stat(pid)) is not None:
            cpu += info[1]
            rss += info[2]
        todo.extend(children.get(pid, []))
    return rss, cpu


def parse_prometheus(text: str, names: Collection[str]) -> dict[str, float]:
    """Sum each wanted metric over its labels (``_total`` and histograms' ``_sum`` included)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None or match.group(1) not in names:
            continue
        with contextlib.suppress(ValueError):
            values[match.group(1)] = values.get(match.group(1), 0.0) + float(match.group(3))
    return values


async def _every(interval_s: float, out: Path, sample: Callable[[], Coroutine[Any, Any, Any]]
                 ) -> None:
    """Call ``sample`` every ``interval_s`` on a drift-free grid; write what it returns."""
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    with out.open("a", buffering=1) as file:
        while True:
            doc = await sample()
            if doc is not None:
                file.write(json.dumps(doc) + "\n")
            deadline += interval_s
            await asyncio.sleep(max(0.0, deadline - loop.time()))


async def sample_resources(pid_of: Callable[[], int | None], out: Path,
                           interval_s: float = 1.0) -> None:
    """RSS and CPU of the gateway process tree, whichever process runs now."""
    async def one() -> dict[str, Any] | None:
        pid = pid_of()
        usage = None if pid is None else await asyncio.to_thread(process_tree_usage, pid)
        if pid is None or usage is None or usage[0] == 0:
            return None  # not running, or a zombie (killed, not yet reaped): no memory
        return {"t": time.time(), "pid": pid, "rss_bytes": usage[0], "cpu_s": usage[1]}
    await _every(interval_s, out, one)


async def sample_metrics(url: str, names: Collection[str], out: Path,
                         interval_s: float = 1.0) -> None:
    """Scrape the gateway's Prometheus endpoint (nothing is written while it is down)."""
    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # loopback only
                return str(answer.read().decode())
        except (OSError, urllib.error.URLError):
            return None

    async def one() -> dict[str, Any] | None:
        text = await asyncio.to_thread(scrape)
        if text is None:
            return None
        return {"t": time.time(), "values": parse_prometheus(text, names)}
    await _every(interval_s, out, one)


async def sample_sim(api: Callable[[str, str], Coroutine[Any, Any, Any]], out: Path,
                     interval_s: float = 0.5) -> None:
    """The sim's true plant state (no sensor faults), for the convergence judge."""
    async def one() -> dict[str, Any] | None:
        try:
            state = await api("GET", "/state")
        except OSError:
            return None
        return {"t": time.time(), "t_s": state["t_s"], "rebooting": state["rebooting"],
                "values": state["values"]}
    await _every(interval_s, out, one)
