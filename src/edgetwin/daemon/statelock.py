"""One gateway per state directory: an advisory lock held for the life of the process.

Two daemons on one outbox would each replay and delete the other's entries; the second
one must fail at start with a clear error, not corrupt the first's work. The kernel drops
the lock when the process dies, so a kill -9 leaves no stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO

from edgetwin.core.errors import StoreError

LOCK_FILE = "edgetwin.lock"


def lock_state_dir(state_dir: Path) -> BinaryIO:
    """Create ``state_dir`` if needed and lock it; close the returned file to unlock.

    Raises:
        StoreError: the directory cannot be created or written, or another process holds it.
    """
    path = state_dir / LOCK_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+b")
    except OSError as err:
        msg = f"state directory {state_dir} cannot be used: {err.strerror or err}"
        raise StoreError(msg) from err
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().decode(errors="replace").strip() or "another process"
        handle.close()
        msg = f"state directory {state_dir} is in use by pid {holder}; is a gateway running?"
        raise StoreError(msg) from None
    if not os.access(state_dir, os.W_OK):
        handle.close()
        msg = f"state directory {state_dir} is not writable"
        raise StoreError(msg)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()).encode())
    handle.flush()
    return handle
