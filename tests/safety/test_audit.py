"""The audit log: append-only, fsynced, chained, rotated by size, and readable for tail."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from edgetwin.safety.audit import (
    AUDIT_FILE,
    AuditLog,
    follow,
    read_tail,
    render,
    tail_entries,
    verify_chain,
)


def entry(i: int) -> dict[str, object]:
    return {"ts": 1_763_770_000_000 + i, "event": "verdict", "id": f"c{i}", "point": "a/b",
            "value": i, "op": "operate", "key_id": "ops", "accepted": i % 2 == 0,
            "code": "accepted" if i % 2 == 0 else "out_of_range", "reason": f"r{i}"}


def test_appends_survive_a_restart_and_keep_counting(tmp_path: Path) -> None:
    """A reopened log appends after what is there; seq and the chain continue."""
    log = AuditLog(tmp_path, 1 << 20, 3)
    first = [log.append(entry(i)) for i in range(3)]
    log.close()
    before = (tmp_path / AUDIT_FILE).read_bytes()
    log = AuditLog(tmp_path, 1 << 20, 3)
    later = log.append(entry(3))
    log.close()
    after = (tmp_path / AUDIT_FILE).read_bytes()
    assert after.startswith(before)  # append-only: nothing written before changed
    assert [e["seq"] for e in first] == [1, 2, 3]
    assert later["seq"] == 4
    assert later["prev"] == hashlib.sha256(before.splitlines()[-1]).hexdigest()
    assert first[0]["prev"] is None
    assert [e["id"] for e in read_tail(tmp_path, 10)] == ["c0", "c1", "c2", "c3"]
    assert verify_chain(tmp_path) == []
    assert stat_mode(tmp_path / AUDIT_FILE) == 0o600


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_an_edited_or_removed_line_breaks_the_chain(tmp_path: Path) -> None:
    """Tampering shows: the line after an edit or a deletion no longer chains."""
    log = AuditLog(tmp_path, 1 << 20, 3)
    for i in range(4):
        log.append(entry(i))
    log.close()
    path = tmp_path / AUDIT_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], lines[1].replace(b'"r1"', b'"ok"'), *lines[2:]]))
    assert verify_chain(tmp_path) == [f"{AUDIT_FILE}:3: does not chain to the line before"]
    path.write_bytes(b"".join([lines[0], *lines[2:]]))
    assert verify_chain(tmp_path) == [f"{AUDIT_FILE}:2: does not chain to the line before"]


def test_a_torn_last_line_is_kept_and_the_next_starts_clean(tmp_path: Path) -> None:
    """A crash mid-line leaves the torn bytes; the next entry begins on its own line."""
    log = AuditLog(tmp_path, 1 << 20, 3)
    log.append(entry(0))
    log.close()
    with (tmp_path / AUDIT_FILE).open("ab") as file:
        file.write(b'{"seq":2,"ts":17637700')
    log = AuditLog(tmp_path, 1 << 20, 3)
    following = log.append(entry(2))
    log.close()
    assert following["seq"] == 2  # the torn line never counted
    assert following["prev"] == hashlib.sha256(b'{"seq":2,"ts":17637700').hexdigest()
    tail = read_tail(tmp_path, 10)
    assert [e["event"] for e in tail] == ["verdict", "unreadable", "verdict"]
    assert verify_chain(tmp_path) == [f"{AUDIT_FILE}:2: does not chain to the line before"]


def test_rotation_keeps_n_files_and_tail_reads_across_them(tmp_path: Path) -> None:
    """Past max_bytes the file rotates; keep files are kept; tail spans the files."""
    log = AuditLog(tmp_path, 64 * 1024, 2)
    written = [log.append({**entry(i), "pad": "x" * 900}) for i in range(300)]
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [AUDIT_FILE, f"{AUDIT_FILE}.1", f"{AUDIT_FILE}.2"]
    assert all(p.stat().st_size <= 64 * 1024 for p in tmp_path.iterdir())
    tail = read_tail(tmp_path, 100)
    assert [e["seq"] for e in tail] == [e["seq"] for e in written[-100:]]
    assert verify_chain(tmp_path) == []  # the chain runs across the rotated files
    log = AuditLog(tmp_path, 64 * 1024, 2)
    assert log.append(entry(300))["seq"] == 301
    log.close()


def test_tail_entries_reads_only_about_the_bytes_asked_for(tmp_path: Path) -> None:
    """The newest entries in the last max_bytes, across a rotation, and no further back."""
    log = AuditLog(tmp_path, 64 * 1024, 2)
    written = [log.append({**entry(i), "pad": "x" * 900}) for i in range(300)]
    log.close()
    newest = (tmp_path / AUDIT_FILE).stat().st_size
    tail = tail_entries(tmp_path, newest + 20 * 1024)  # the current file and ~20 more lines
    seqs = [e["seq"] for e in tail]
    assert seqs == [e["seq"] for e in written[-len(seqs):]]
    assert newest // 1000 + 15 <= len(seqs) <= newest // 1000 + 25
    assert [e["seq"] for e in tail_entries(tmp_path, 10**9)] == [
        e["seq"] for e in written[-len(read_tail(tmp_path, 1000)):]]


def test_follow_yields_new_entries_also_across_a_rotation(tmp_path: Path) -> None:
    """--follow: entries appended after it started, including those around a rotation."""
    log = AuditLog(tmp_path, 64 * 1024, 2)
    log.append(entry(0))
    entries = follow(tmp_path, poll_s=0.01)
    for i in range(1, 150):
        log.append({**entry(i), "pad": "y" * 900})
    log.close()
    got = [next(entries)["seq"] for _ in range(149)]
    assert got == list(range(2, 151))


def test_render_is_one_readable_line() -> None:
    """A verdict renders with its time, outcome, point, value, ids and reason."""
    line = render({**entry(1), "seq": 7})
    assert line == ("2025-11-22T00:06:40.001Z #7 DENIED a/b=1 op=operate id=c1 key=ops "
                    "origin=None [out_of_range] r1")
    failed = render({**entry(2), "accepted": False, "code": "interrupted",
                     "reason": "failed: the gateway stopped"})
    assert " FAILED a/b=2 " in failed  # the policy allowed it; the device did not confirm
    assert "READONLY ON by test" in render({"seq": 1, "ts": 0, "event": "readonly",
                                            "readonly": True, "by": "test"})
    assert render({"event": "unreadable", "raw": "x"}).startswith("- #- UNREADABLE")


def test_values_json_cannot_hold_are_still_written(tmp_path: Path) -> None:
    """An odd value is written as its repr rather than failing the audit."""
    log = AuditLog(tmp_path, 1 << 20, 3)
    log.append({"ts": 0, "event": "verdict", "value": object.__new__(object)})
    log.close()
    (line,) = (tmp_path / AUDIT_FILE).read_text().splitlines()
    assert json.loads(line)["value"].startswith("<object object")
    assert os.stat(tmp_path).st_mode & 0o777 in (0o700, 0o755)  # tmp_path existed already
