"""Fixtures for the Modbus driver tests: a plcsim subprocess and recording ports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from edgetwin.core.types import Sample
from tests.helpers.recording import WAIT_S, Recorder, RecordingHealth


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
