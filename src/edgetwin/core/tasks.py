"""Cancellation that holds on Python 3.11, whose ``asyncio.wait_for`` can lose one.

``asyncio.wait_for`` (awaited by pymodbus for every response and by aiomqtt for every
acknowledgement) drops a cancellation that arrives while the awaited result is landing
(CPython gh-86296, fixed in 3.12). A loop around such a call then runs on after it was
cancelled, and a TaskGroup or a shutdown waiting for it hangs. The task's ``cancelling()``
count still records the request, so loops check it, and stoppers cancel until the task ends.
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

_T = TypeVar("_T")


def raise_if_cancelling() -> None:
    """Raise CancelledError if the current task was asked to stop and a library swallowed it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def wait_set(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait for ``event`` at most ``timeout_s``; True if it is set.

    Our own waits use this, not ``wait_for``: a cancel that lands with the event goes
    through.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def cancel_and_wait(task: asyncio.Task[None], timeout_s: float = 1.0) -> bool:
    """Cancel ``task`` and wait for it to end, cancelling again while it keeps running.

    Returns False when it did not end within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while not task.done():
        task.cancel()
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.wait({task}, timeout=min(0.1, left))
    return True


async def finish_despite_cancel(future: asyncio.Future[_T]) -> _T:
    """Await ``future`` to its end even when cancelled meanwhile.

    For work whose result must be applied once begun: a commit handed to a thread (a commit
    that happened is a commit), a request a device already answered (a value served is a
    value kept). A cancellation waits for the result instead of dropping it, and stays
    recorded in ``cancelling()``, so the caller's next ``raise_if_cancelling()`` ends it.
    """
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                raise
