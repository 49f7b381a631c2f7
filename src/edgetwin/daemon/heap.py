"""Gives the C heap's free pages back to the kernel now and then.

An outage leaves glibc's heap with megabytes of free chunks between live ones (message
buffers built during the outage, freed after it). glibc returns only the top of the heap
by itself, so the process's RSS ratchets up outage after outage although nothing leaks: a
soak with broker blackholes grew it by ~4 MB/hour while Python's own allocations stayed
flat. ``malloc_trim(0)`` hands every whole free page back (madvise), in milliseconds.
Without glibc (musl, macOS) there is nothing to call and nothing is done.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

TRIM_EVERY_S = 60.0


def _find_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _find_trim()


def available() -> bool:
    """Whether this C library can trim its heap (glibc can)."""
    return _TRIM is not None


def trim_now() -> bool:
    """Return the heap's free pages to the kernel; True if any went back."""
    return _TRIM is not None and bool(_TRIM(0))


class HeapTrimmer:
    """Trims at most once per ``every_s``; the daemon's housekeeping calls ``tick`` often."""

    def __init__(self, every_s: float = TRIM_EVERY_S,
                 clock: Callable[[], float] = time.monotonic,
                 trim: Callable[[], bool] = trim_now) -> None:
        self._every_s = every_s
        self._clock = clock
        self._trim = trim
        self._next_s = clock() + every_s
        self.trims = 0

    def tick(self) -> None:
        """Trim if the period has passed since the last trim."""
        now = self._clock()
        if now < self._next_s:
            return
        self._next_s = now + self._every_s
        self._trim()
        self.trims += 1
