"""Fixtures for the Modbus driver tests: a plcsim subprocess and recording ports."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from edgetwin.core.types import Sample
from tests.helpers.recording import BatchLog


class BatchRecorder(BatchLog[dict[str, Sample]]):
    """An Emit that keeps every batch as {point: Sample}."""

    def _keep(self, batch: Sequence[Sample]) -> dict[str, Sample]:
        return {s.point: s for s in batch}


@pytest.fixture
def batches() -> BatchRecorder:
    return BatchRecorder()
