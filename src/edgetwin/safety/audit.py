"""The command audit log: append-only JSON lines in ``state_dir``, fsynced, hash-chained.

Layout: ``<state_dir>/safety/audit.jsonl`` is written; when the next line would take it over
``max_bytes`` it becomes ``audit.jsonl.1`` (``.1`` becomes ``.2`` and so on) and the oldest
beyond ``keep`` is deleted. Each line is one JSON object with at least ``seq``, ``ts`` (ms),
``event`` and ``prev``.

Invariants:
- a line is appended and synced (fdatasync) before ``append`` returns; nothing is ever rewritten,
  only whole files are rotated away, so what was written stays as written until its file
  is the oldest beyond ``keep``;
- ``seq`` grows by one per line, across restarts and rotations;
- ``prev`` is the SHA-256 (hex) of the bytes of the line before it (in this file, or the
  last line of the file rotated before it; ``null`` for the very first line), so a line
  removed or edited later breaks the chain where it was (``verify_chain``);
- a line torn by a crash is left as it is; the next line starts on a fresh line and
  chains to the torn bytes; readers report it as unreadable.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgetwin.core.errors import StoreError

AUDIT_DIR = "safety"  # under state_dir; the policy's other files live there too
AUDIT_FILE = "audit.jsonl"
_TAIL_CHUNK = 256 * 1024  # bytes read from a file's end to find its last lines


def audit_dir(state_dir: Path) -> Path:
    """Where the audit files of a state directory are."""
    return state_dir / AUDIT_DIR


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _last_lines(path: Path, chunk_bytes: int = _TAIL_CHUNK) -> list[bytes]:
    """The complete-or-torn lines in the last chunk of a file, oldest first (no newlines)."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            start = max(0, size - chunk_bytes)
            file.seek(start)
            chunk = file.read()
    except FileNotFoundError:
        return []
    lines = chunk.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first one is probably cut by the chunk boundary
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


class AuditLog:
    """The writer of the audit files. One per state directory, from one thread at a time.

    Args:
        directory: ``audit_dir(state_dir)``; made (0700) if missing.
        max_bytes: size at which the current file is rotated.
        keep: rotated files kept.

    Raises:
        StoreError: the folder or file cannot be opened.
    """

    def __init__(self, directory: Path, max_bytes: int, keep: int) -> None:
        self.directory = directory
        self.path = directory / AUDIT_FILE
        self.max_bytes = max_bytes
        self.keep = keep
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = self._open()
            self._size = os.fstat(self._fd).st_size
            self._seq, self._prev = self._recover()
        except OSError as err:
            raise StoreError(f"audit log {self.path} cannot be opened: {err}") from err

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _recover(self) -> tuple[int, str | None]:
        """The last seq and the hash of the last line; a torn tail gets its newline."""
        for path in (self.path, self._rotated(1)):
            lines = _last_lines(path)
            if not lines:
                continue
            if path == self.path and self._size and not self._ends_with_newline():
                self._write(b"\n")  # the torn line stays; the next one starts clean
            seq = next((e["seq"] for e in map(_parse, reversed(lines))
                        if e is not None and isinstance(e.get("seq"), int)), 0)
            return seq, _digest(lines[-1])
        return 0, None

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as file:
            file.seek(-1, os.SEEK_END)
            return file.read(1) == b"\n"

    def _rotated(self, index: int) -> Path:
        return self.directory / f"{AUDIT_FILE}.{index}"

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        # fdatasync flushes the data and the new file size (what reading it back needs),
        # skipping the timestamps: about a third cheaper than fsync for an append.
        os.fdatasync(self._fd)
        self._size += len(data)

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Append one entry (``seq`` and ``prev`` are added) and fsync; returns it whole.

        Raises:
            StoreError: the write or fsync failed; the entry may be missing.
        """
        entry = {"seq": self._seq + 1, **fields, "prev": self._prev}
        line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False,
                          default=repr).encode("utf-8", "backslashreplace")
        try:
            if self._size and self._size + len(line) + 1 > self.max_bytes:
                self._rotate()
            self._write(line + b"\n")
        except OSError as err:
            raise StoreError(f"audit log {self.path}: append failed: {err}") from err
        self._seq += 1
        self._prev = _digest(line)
        return entry

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        oldest = self._rotated(self.keep)
        if oldest.exists():
            oldest.unlink()
        for index in range(self.keep - 1, 0, -1):
            if self._rotated(index).exists():
                self._rotated(index).replace(self._rotated(index + 1))
        self.path.replace(self._rotated(1))
        self._fd = self._open()
        self._size = 0
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the renames survive a power cut before the next line is trusted
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        """Close the file; ``append`` must not be called afterwards."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# -- readers (edgetwin audit tail) -----------------------------------------------------------


def _files_newest_first(directory: Path) -> list[Path]:
    rotated = sorted((p for p in directory.glob(f"{AUDIT_FILE}.*")
                      if p.suffix[1:].isdigit()), key=lambda p: int(p.suffix[1:]))
    return [directory / AUDIT_FILE, *rotated]


def _entries(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in data.split(b"\n"):
        if line:
            entry = _parse(line)
            out.append(entry if entry is not None else
                       {"event": "unreadable", "raw": line[:200].decode("utf-8", "replace")})
    return out


def read_tail(directory: Path, count: int) -> list[dict[str, Any]]:
    """The last ``count`` entries, oldest first, across rotated files.

    A line that is not JSON (torn by a crash, or damaged) comes back as
    ``{"event": "unreadable", "raw": ...}``.
    """
    collected: list[dict[str, Any]] = []
    for path in _files_newest_first(directory):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        collected[:0] = _entries(data)
        if len(collected) >= count:
            break
    return collected[-count:] if count > 0 else []


def tail_entries(directory: Path, max_bytes: int) -> list[dict[str, Any]]:
    """The readable entries in about the last ``max_bytes`` of the log, oldest first.

    Reads no more than that from the disk, across a rotation; unreadable lines are left out.
    """
    collected: list[dict[str, Any]] = []
    left = max_bytes
    for path in _files_newest_first(directory):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        collected[:0] = [e for e in map(_parse, _last_lines(path, left)) if e is not None]
        left -= size
        if left <= 0:
            break
    return collected


def follow(directory: Path, poll_s: float = 0.5) -> Iterator[dict[str, Any]]:
    """Entries appended after this call, as they come (a blocking iterator for the CLI).

    Follows rotation: when the current file is replaced, it reads the new one from its start.
    """
    path = directory / AUDIT_FILE
    try:
        stat = path.stat()
        start: tuple[int, int | None] = (stat.st_size, stat.st_ino)
    except FileNotFoundError:
        start = (0, None)
    return _follow(path, *start, poll_s)


def _follow(path: Path, position: int, inode: int | None,
            poll_s: float) -> Iterator[dict[str, Any]]:
    pending = b""
    while True:
        try:
            stat = path.stat()
        except FileNotFoundError:
            time.sleep(poll_s)
            continue
        if stat.st_ino != inode or stat.st_size < position:
            if inode is not None and stat.st_ino != inode:
                yield from _rest_of_rotated(path, inode, position, pending)
            position, inode, pending = 0, stat.st_ino, b""
            continue
        if stat.st_size > position:
            with path.open("rb") as file:
                file.seek(position)
                data = file.read()
            position += len(data)
            pending += data
            complete, _, pending = pending.rpartition(b"\n")
            yield from _entries(complete)
        else:
            time.sleep(poll_s)


def _rest_of_rotated(path: Path, inode: int, position: int,
                     pending: bytes) -> Iterator[dict[str, Any]]:
    """What was appended after the last read to the followed file and to any rotated since."""
    rotated = _files_newest_first(path.parent)[1:]
    found = next((i for i, p in enumerate(rotated) if _inode(p) == inode), None)
    if found is None:
        yield {"event": "gap", "raw": "entries were rotated away while following"}
        return
    for index in range(found, -1, -1):
        try:
            with rotated[index].open("rb") as file:
                file.seek(position if index == found else 0)
                data = (pending if index == found else b"") + file.read()
        except FileNotFoundError:
            continue
        yield from _entries(data)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def verify_chain(directory: Path) -> list[str]:
    """Breaks in the hash chain over every file kept, oldest first; [] when it is whole.

    The first line kept has nothing to chain to (its predecessor may have been rotated away)
    and is not checked.
    """
    problems: list[str] = []
    previous: bytes | None = None
    for path in reversed(_files_newest_first(directory)):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        for number, line in enumerate(data.split(b"\n")[:-1], start=1):
            entry = _parse(line)
            if previous is not None:
                expected = _digest(previous)
                if entry is None or entry.get("prev") != expected:
                    problems.append(f"{path.name}:{number}: does not chain to the line before")
            previous = line
    return problems


def chain_summary(directory: Path) -> str:
    """What ``verify_chain`` went over, for people: entries, files, first and last seq."""
    entries = files = 0
    seqs: list[int] = []
    for path in _files_newest_first(directory):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        files += 1
        lines = data.split(b"\n")[:-1]
        entries += len(lines)
        for line in (lines[0], lines[-1]) if lines else ():
            entry = _parse(line)
            if entry is not None and isinstance(entry.get("seq"), int):
                seqs.append(entry["seq"])
    span = f" (seq {min(seqs)}..{max(seqs)})" if seqs else ""
    return f"{entries} entries in {files} file(s){span}"


def render(entry: Mapping[str, Any]) -> str:
    """One entry as a line for people."""
    ts = entry.get("ts")
    when = (datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z") if isinstance(ts, int | float) else "-")
    event = entry.get("event", "?")
    if event == "verdict":
        reason = str(entry.get("reason") or "")
        outcome = ("ACCEPTED" if entry.get("accepted")
                   else "FAILED" if reason.startswith("failed:") else "DENIED")
        value = json.dumps(entry.get("value"), ensure_ascii=False)
        return (f"{when} #{entry.get('seq')} {outcome} {entry.get('point')}={value} "
                f"op={entry.get('op')} id={entry.get('id')} key={entry.get('key_id')} "
                f"origin={entry.get('origin')} [{entry.get('code')}] {entry.get('reason')}")
    if event == "pending":
        return (f"{when} #{entry.get('seq')} WRITING {entry.get('point')}="
                f"{json.dumps(entry.get('value'), ensure_ascii=False)} id={entry.get('id')}")
    if event == "readonly":
        state = "ON" if entry.get("readonly") else "OFF"
        return f"{when} #{entry.get('seq')} READONLY {state} by {entry.get('by')}"
    return f"{when} #{entry.get('seq', '-')} {event.upper()} {json.dumps(dict(entry))[:300]}"
