"""The heap trimmer: free pages stranded inside glibc's heap go back to the kernel."""

from __future__ import annotations

from pathlib import Path

from edgetwin.daemon import heap
from edgetwin.daemon.heap import HeapTrimmer

CHUNK = 8 * 1024  # above pymalloc's 512 bytes, below glibc's mmap threshold: a heap chunk
CHUNKS = 8_000  # 64 MiB


def resident_kib() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4


def test_a_trim_returns_the_free_pages_an_outage_left_inside_the_heap() -> None:
    """Freed chunks below a live one stay resident until trimmed; the trim returns them."""
    assert heap.available()  # glibc: the gateway's platforms (Debian, Raspberry Pi OS)
    heap.trim_now()
    chunks = [bytearray(CHUNK) for _ in range(CHUNKS)]  # zeroed: every page touched
    for chunk in chunks:
        chunk[::4096] = b"\x01" * len(chunk[::4096])
    pinned = chunks[-1]  # a live chunk on top: the heap cannot shrink by itself
    del chunks
    stranded_kib = resident_kib()
    assert heap.trim_now()
    released_kib = stranded_kib - resident_kib()
    assert released_kib > 0.75 * CHUNK * CHUNKS / 1024, released_kib
    assert len(pinned) == CHUNK


def test_the_trimmer_trims_once_per_period() -> None:
    """Housekeeping ticks every 0.5 s; a trim happens only when the period has passed."""
    now = [100.0]
    calls: list[float] = []
    trimmer = HeapTrimmer(every_s=60.0, clock=lambda: now[0],
                          trim=lambda: calls.append(now[0]) is None)
    for step in range(0, 300):  # 150 s of housekeeping
        now[0] = 100.0 + step * 0.5
        trimmer.tick()
    assert calls == [160.0, 220.0]
    assert trimmer.trims == 2
