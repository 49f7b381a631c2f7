"""Open real durable outboxes on SQLite files in tmp dirs, with their committer running."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edgetwin.config.model import BufferConfig
from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import Delta, PointState, Quality
from edgetwin.outbox import DurableOutbox
from edgetwin.telemetry import Telemetry


def delta(value: int, asset: str = "pump1", points: int = 1) -> Delta:
    """A delta whose points all hold ``value`` (and whose version is ``value``)."""
    changes = {f"p{i}": PointState(value, value * 1000, Quality.GOOD, value) for i in range(points)}
    return Delta(asset, value, value * 1000, changes)


def values(entries: Any) -> list[int]:
    """The value each claimed delta carries."""
    return [e.item.changes["p0"].value for e in entries]


def stored_seqs(path: Path) -> list[int]:
    """Sequence numbers in the file, read by a separate connection as another process would."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    finally:
        db.close()


class Opened:
    """One outbox with its committer task."""

    def __init__(self, box: DurableOutbox, telemetry: Telemetry) -> None:
        self.box = box
        self.telemetry = telemetry
        self.task = asyncio.create_task(box.run())

    async def close(self) -> None:
        await cancel_and_wait(self.task)
        await self.box.close()

    def metric(self, name: str, **labels: str) -> float:
        value = self.telemetry.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


OpenBox = Callable[..., Opened]


@pytest.fixture
async def open_box(tmp_path: Path) -> AsyncIterator[OpenBox]:
    """``open_box(state_dir=tmp_path, **BufferConfig keys, **DurableOutbox keywords)``."""
    opened: list[Opened] = []

    def open_(state_dir: Path = tmp_path, *, max_delay_s: float = 0.01, hold_s: float = 45.0,
              **buffer: Any) -> Opened:
        telemetry = Telemetry(process_metrics=False)
        box = DurableOutbox(state_dir, BufferConfig(**buffer), telemetry,
                            max_delay_s=max_delay_s, hold_s=hold_s)
        opened.append(Opened(box, telemetry))
        return opened[-1]

    yield open_
    for one in opened:
        await one.close()
