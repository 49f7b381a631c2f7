"""Fixtures for the Modbus driver tests: a plcsim subprocess and recording ports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from edgetwin.core.types import Sample

WAIT_S = 10.0  # upper bound for any awaited condition; tests normally finish far sooner


class Recorder:
    """Base: records events and wakes waiters on each one."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, check: Callable[[], object], what: str, timeout_s: float) -> object:
        async with asyncio.timeout(timeout_s):
            while True:
                changed = self._changed
                found = check()
                if found:
                    return found
                await changed.wait()
        raise AssertionError(what)  # pragma: no cover  # timeout raises first


@dataclass
class HealthEvent:
    kind: str  # up | down | point_error
    error_code: str | None = None
    point: str | None = None
    error: str = ""


class RecordingHealth(Recorder):
    """A SourceHealth that keeps every call, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[HealthEvent] = []
        self.cycles: list[float] = []

    def up(self) -> None:
        self.events.append(HealthEvent("up"))
        self._notify()

    def down(self, error_code: str, error: BaseException | str) -> None:
        self.events.append(HealthEvent("down", error_code, error=str(error)))
        self._notify()

    def point_error(self, point: str, error_code: str, error: BaseException | str) -> None:
        self.events.append(HealthEvent("point_error", error_code, point, str(error)))
        self._notify()

    def cycle(self, duration_s: float) -> None:
        self.cycles.append(duration_s)

    def of(self, kind: str) -> list[HealthEvent]:
        return [e for e in self.events if e.kind == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout_s: float = WAIT_S) -> None:
        await self._until(lambda: len(self.of(kind)) >= count,
                          f"no {count} x {kind} within {timeout_s} s", timeout_s)


@dataclass
class BatchRecorder(Recorder):
    """An Emit that keeps every batch as {point: Sample}."""

    batches: list[dict[str, Sample]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    async def __call__(self, batch: Sequence[Sample]) -> None:
        self.batches.append({s.point: s for s in batch})
        self._notify()

    async def wait_for(
        self,
        check: Callable[[dict[str, Sample]], bool],
        *,
        after: int = 0,
        timeout_s: float = WAIT_S,
    ) -> tuple[int, dict[str, Sample]]:
        """The first batch at index >= ``after`` that passes ``check``, with its index."""

        def find() -> tuple[int, dict[str, Sample]] | None:
            for index in range(after, len(self.batches)):
                if check(self.batches[index]):
                    return index, self.batches[index]
            return None

        found = await self._until(find, f"no matching batch within {timeout_s} s", timeout_s)
        assert isinstance(found, tuple)
        return found


@pytest.fixture
def health() -> RecordingHealth:
    return RecordingHealth()


@pytest.fixture
def batches() -> BatchRecorder:
    return BatchRecorder()
