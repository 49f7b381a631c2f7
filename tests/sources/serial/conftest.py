"""Fixtures for the serial driver tests: a ticking plcsim, recording emit and health."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from edgetwin.core.types import Sample
from plcsim.sim import Sim

WAIT_S = 5.0  # upper bound for any awaited condition; tests normally finish far sooner


@dataclass(frozen=True)
class Event:
    kind: str  # up | down | point_error
    code: str | None = None
    point: str | None = None
    error: str = ""


class Recording:
    """Keeps health calls and emitted batches in order; waiters wake on each one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches: list[list[Sample]] = []
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # Emit
    async def __call__(self, batch: Sequence[Sample]) -> None:
        self.batches.append(list(batch))
        self._notify()

    # SourceHealth
    def up(self) -> None:
        self.events.append(Event("up"))
        self._notify()

    def down(self, error_code: str, error: BaseException | str) -> None:
        self.events.append(Event("down", error_code, error=str(error)))
        self._notify()

    def point_error(self, point: str, error_code: str, error: BaseException | str) -> None:
        self.events.append(Event("point_error", error_code, point, str(error)))
        self._notify()

    def cycle(self, duration_s: float) -> None:
        assert duration_s >= 0

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    async def until(self, check: Callable[[], object], timeout_s: float = WAIT_S) -> None:
        """Return once ``check()`` is true; fail after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while True:
                changed = self._changed
                if check():
                    return
                await changed.wait()


@pytest.fixture
def rec() -> Recording:
    return Recording()


@pytest.fixture
def sim(ticking_sim: Sim) -> Sim:
    """The plant these tests read follows real time: the suite's ticking simulation."""
    return ticking_sim
