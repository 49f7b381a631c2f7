"""Keep the gateway's memory flat over months of outages: glibc's heap, Python's collector.

glibc serves a request above its mmap threshold (128 KiB at start) with its own mapping
and gives it back on free. But each such free raises the threshold to that block's size
(up to 32 MiB), so from then on large buffers come from the brk heap, between objects
that live for good; the heap's free space fragments and its top cannot shrink. The HIL
memory hunt (broker blackholes and cuts every 12 s) measured that: the heap's free space
grew from 2.5 to 7 MB in 14 minutes and RSS with it; with a fixed threshold the free space
stayed at 1.5-2.5 MB. Fixing the threshold turns the adjustment off.

Python frees most objects the moment their last reference goes, but objects in reference
cycles wait for its collector, whose full passes come rarely (about every 7 minutes in a
soak) and walk every object (~130,000 after start-up: 75 ms on a PC, several times that
on a Pi). Freezing the start-up objects leaves a full pass only what came since, so a
component that drops a cyclic graph (a lost broker session) can afford to collect it at
once, before new long-lived objects settle between its holes.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import sqlite3  # noqa: F401  (loads the library _loaded_sqlite finds)
from dataclasses import dataclass
from typing import Final

from edgetwin.telemetry import Telemetry

MMAP_THRESHOLD_BYTES: Final = 64 * 1024
"""Blocks from here up get a mapping of their own, returned to the system when freed.

Above the largest hot-path buffer that is allocated every cycle (a 4096-sample waveform,
32 KiB), so the per-second work stays in the heap and costs no system call.
"""

_M_MMAP_THRESHOLD: Final = -3  # glibc <malloc.h>
_SQLITE_SONAME: Final = "libsqlite3.so.0"
OPERATOR_OVERRIDE: Final = "MALLOC_MMAP_THRESHOLD_"  # glibc reads it at start-up


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (musl has a mallopt that accepts all and does nothing)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold; False where it cannot be (not glibc) or an operator did.

    An operator's ``MALLOC_MMAP_THRESHOLD_`` in the environment wins: glibc has already
    applied it, and it is just as fixed.
    """
    libc = _glibc()
    if libc is None or OPERATOR_OVERRIDE in os.environ:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold) == 1)


def freeze_startup_objects() -> int:
    """Collect the start-up garbage, then keep what is left out of every later collection.

    For a process that built what it keeps for good (modules, configuration, models) and
    is about to run: full collections then cost what was allocated since. Objects frozen
    are still freed by reference counting; only a cycle among them would stay. Returns
    how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def refreeze() -> int | None:
    """After a reload: free what start-up built and the reload dropped, freeze what stays.

    A cycle among frozen objects is never collected, and a reload drops some (the old
    sources, session and rules). One full pass per reload. None when nothing was frozen
    (the daemon run outside ``edgetwin run``, as in tests).
    """
    if gc.get_freeze_count() == 0:
        return None
    gc.unfreeze()
    return freeze_startup_objects()


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


@dataclass(frozen=True, slots=True)
class HeapUsage:
    """glibc's own account of the memory malloc holds, in bytes."""

    in_use: int
    """Handed out and not yet freed, in the heaps."""
    free: int
    """Held in the heaps but free: fragmentation when it grows while ``in_use`` does not."""
    mapped: int
    """Blocks above the mmap threshold, each in a mapping of its own."""


def heap_usage() -> HeapUsage | None:
    """The heaps' figures now, or None where malloc is not glibc's (2.33 or later)."""
    mallinfo2 = getattr(_glibc(), "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.argtypes = []
    mallinfo2.restype = _Mallinfo2
    info: _Mallinfo2 = mallinfo2()
    return HeapUsage(in_use=info.uordblks, free=info.fordblks, mapped=info.hblkhd)


@functools.cache
def _loaded_sqlite() -> ctypes.CDLL | None:
    """The SQLite library the ``sqlite3`` module runs on, never a second copy of it.

    ``RTLD_NOLOAD`` only finds a library already loaded: where Python carries its own
    SQLite built in, a fresh load would count a copy that holds nothing.
    """
    try:
        lib = ctypes.CDLL(_SQLITE_SONAME, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return None
    lib.sqlite3_memory_used.argtypes = []
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return lib


def sqlite_memory() -> int | None:
    """Bytes SQLite holds now (page caches, prepared statements), part of the heap in use."""
    lib = _loaded_sqlite()
    return None if lib is None else int(lib.sqlite3_memory_used())


class HeapGauges:
    """The heap's figures as gauges: a slow climb in RSS is either use or fragmentation."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._in_use = telemetry.gauge("edgetwin_heap_in_use_bytes",
                                       "Bytes malloc has handed out from its heaps")
        self._free = telemetry.gauge("edgetwin_heap_free_bytes",
                                     "Bytes free inside malloc's heaps (fragmentation)")
        self._mapped = telemetry.gauge("edgetwin_heap_mapped_bytes",
                                       "Bytes in blocks malloc mapped one by one")
        self._sqlite = telemetry.gauge("edgetwin_sqlite_memory_bytes",
                                       "Bytes SQLite holds (page caches, prepared statements)")

    def update(self) -> None:
        """Set the gauges from glibc; they stay at 0 where malloc is not glibc's."""
        usage = heap_usage()
        if usage is not None:
            self._in_use.set(usage.in_use)
            self._free.set(usage.free)
            self._mapped.set(usage.mapped)
        sqlite = sqlite_memory()
        if sqlite is not None:
            self._sqlite.set(sqlite)
