"""Recording stand-ins for the ports a driver talks to: every call kept, waiters woken."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from edgetwin.core.types import Sample

BatchT = TypeVar("BatchT")
WAIT_S = 15.0  # upper bound for any awaited condition; tests normally finish far sooner


class Recorder:
    """Base: records events and wakes waiters on each one."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, check: Callable[[], object], what: str, timeout_s: float) -> object:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    changed = self._changed
                    found = check()
                    if found:
                        return found
                    await changed.wait()
        except TimeoutError:
            raise AssertionError(what) from None


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
        self.requests: list[tuple[str, float]] = []  # (outcome, duration_s), in order

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

    def request(self, outcome: str, duration_s: float) -> None:
        self.requests.append((outcome, duration_s))

    def of(self, kind: str) -> list[HealthEvent]:
        return [e for e in self.events if e.kind == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout_s: float = WAIT_S) -> None:
        await self._until(lambda: len(self.of(kind)) >= count,
                          f"no {count} x {kind} within {timeout_s} s: {self.events}", timeout_s)


class BatchLog(Recorder, Generic[BatchT]):
    """An Emit that keeps every batch in the shape ``_keep`` gives it, and can wait for one."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[BatchT] = []

    def _keep(self, batch: Sequence[Sample]) -> BatchT:
        raise NotImplementedError

    async def __call__(self, batch: Sequence[Sample]) -> None:
        self.batches.append(self._keep(batch))
        self._notify()

    async def wait_for(
        self, check: Callable[[BatchT], bool], *, after: int = 0, timeout_s: float = WAIT_S
    ) -> tuple[int, BatchT]:
        """The first batch at index >= ``after`` that passes ``check``, with its index."""

        def find() -> tuple[int, BatchT] | None:
            for index in range(after, len(self.batches)):
                if check(self.batches[index]):
                    return index, self.batches[index]
            return None

        found = await self._until(find, f"no matching batch within {timeout_s} s", timeout_s)
        assert isinstance(found, tuple)
        return found
