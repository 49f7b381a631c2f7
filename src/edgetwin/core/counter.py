"""A counter that only grows, also across crashes, with one small file write per block.

It lives in ``core`` because the twin (versions) and the outbox (message sequence) both
need it and may not import each other. Stdlib only.

Invariants:
- every value handed out is larger than every value handed out before, in this process or
  any earlier one that used the same file;
- a value is handed out only while it is below the ceiling already written (fsynced) to the
  file, so a crash at any instant cannot lead to a value being reused.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def overwrite_in_place(path: Path, data: bytes) -> None:
    """Write ``data`` over a file of the same size without allocating: works on a full disk.

    A small fixed-width record (a few bytes, inside one sector) is overwritten where it
    lies and fsynced; that needs no new block, so it still succeeds when the disk is full.
    A file that is missing or of another size is replaced with ``write_atomically``.
    """
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        write_atomically(path, data)
        return
    try:
        if os.fstat(fd).st_size != len(data):
            os.close(fd)
            fd = -1
            write_atomically(path, data)
            return
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        if fd >= 0:
            os.close(fd)


class ReservedCounter:
    """Monotonic integer counter backed by a ceiling file in blocks of ``block`` values."""

    def __init__(self, path: Path, block: int = 100_000, floor: int = 0) -> None:
        """Open the counter; the first value is above ``floor`` and above the stored ceiling."""
        self._path = path
        self._block = block
        stored = 0
        try:
            stored = int(path.read_text(encoding="ascii").strip() or 0)
        except FileNotFoundError:
            pass
        except ValueError as err:
            # A torn ceiling file cannot happen (one sector overwritten, or a rename); refuse
            # rather than reuse.
            msg = f"counter file {path} is corrupt: {err}"
            raise OSError(msg) from err
        self._last = max(stored, floor)
        self._ceiling = self._last
        self._reserve(self._last + block)

    @property
    def last(self) -> int:
        """The last value handed out (or the starting point when none was)."""
        return self._last

    def next(self) -> int:
        """The next value."""
        value = self._last + 1
        if value >= self._ceiling:
            self._reserve(value + self._block)
        self._last = value
        return value

    def _reserve(self, ceiling: int) -> None:
        # Fixed width, overwritten in place: reserving the next block must work on a full
        # disk, or the twin and the outbox would stop there.
        overwrite_in_place(self._path, f"{ceiling:020d}\n".encode("ascii"))
        self._ceiling = ceiling
