"""Waiting on a condition with a deadline, for state that has no event to wait on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s}s: {what or condition}")
        await asyncio.sleep(0.02)  # re-check pacing, bounded by the deadline above
