"""Real small filesystems for disk-full and read-only tests: a tmpfs of a given size.

Mounting needs root (CI runs as root, or has password-less sudo for apt already); a test
that needs a full disk fails with the reason when neither is there, it is never skipped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hil.harness.disk import privileged


def mount_tmpfs(where: Path, size_kib: int, *, readonly: bool = False) -> None:
    """Mount a tmpfs of ``size_kib`` at ``where`` (created if missing), owned by us."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kib}k,mode=0700,uid={os.getuid()},gid={os.getgid()}"
    if readonly:
        options += ",ro"
    subprocess.run(privileged(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)]),
                   check=True, capture_output=True, timeout=30)


def unmount(where: Path) -> None:
    """Unmount (lazily, so a file a failed test left open cannot block the teardown)."""
    subprocess.run(privileged(["umount", "-l", str(where)]), check=False,
                   capture_output=True, timeout=30)


def fill(where: Path, leave_bytes: int = 0) -> Path:
    """Fill the filesystem at ``where`` with one file until writes fail; returns the file."""
    filler = where / "filler"
    chunk = b"\0" * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError:
        pass
    finally:
        os.close(fd)
    if leave_bytes:
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - leave_bytes))
    return filler
