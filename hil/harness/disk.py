"""The gateway's state directory, optionally on a small real filesystem the bench can fill.

A tmpfs of a few MiB gives a disk that really runs full (ENOSPC from the kernel, not a
mock). Mounting needs root or password-less sudo; without either the scenario fails with
that reason rather than being skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHUNK = b"\0" * 65536


def privileged(cmd: list[str]) -> list[str]:
    """``cmd`` as root: as is when we are root, else through password-less sudo."""
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo") is None:
        raise RuntimeError(f"a small real disk needs root or sudo: {' '.join(cmd)}")
    return ["sudo", "-n", *cmd]


class TmpfsStateDir:
    """``path``, a plain folder or (with ``size_kib``) a tmpfs of that size."""

    def __init__(self, path: Path, size_kib: int | None) -> None:
        self.path = path
        self.size_kib = size_kib
        self.mounted = False
        self.filler = path / "hil-filler"

    def create(self) -> None:
        """Make the folder (and mount the tmpfs on it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.size_kib is None:
            return
        options = f"size={self.size_kib}k,mode=0700,uid={os.getuid()},gid={os.getgid()}"
        subprocess.run(privileged(["mount", "-t", "tmpfs", "-o", options, "tmpfs",
                                    str(self.path)]), check=True, capture_output=True,
                       timeout=30)
        self.mounted = True

    def fill(self) -> int:
        """Write a file until the disk is full; returns its size in bytes."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                written += os.write(fd, CHUNK)
        except OSError:
            pass  # ENOSPC: the point
        finally:
            os.close(fd)
        # A tmpfs may still take a partial page or two; fill those too.
        fd = os.open(self.filler, os.O_WRONLY | os.O_APPEND)
        try:
            while True:
                written += os.write(fd, b"\0" * 512)
        except OSError:
            pass
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        """Delete the filler: the disk has room again."""
        self.filler.unlink(missing_ok=True)

    def remove(self) -> None:
        """Unmount the tmpfs (lazily: a process that still holds a file cannot block it)."""
        if self.mounted:
            subprocess.run(privileged(["umount", "-l", str(self.path)]), check=False,
                           capture_output=True, timeout=30)
            self.mounted = False
