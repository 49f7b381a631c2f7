"""Fixtures for the OPC UA driver tests: plcsim's OPC UA face in-process, recording ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import Sample
from edgetwin.sources.opcua import OpcuaConfig, OpcuaSource
from plcsim.opcua_face import OpcuaFace
from plcsim.sim import Sim
from tests.helpers.recording import BatchLog, RecordingHealth


class BatchRecorder(BatchLog[list[Sample]]):
    """An Emit that keeps every batch, as emitted."""

    def _keep(self, batch: Sequence[Sample]) -> list[Sample]:
        return list(batch)

    def samples(self, point: str, after: int = 0) -> list[Sample]:
        """Every sample of ``point`` in batches at index >= ``after``."""
        return [s for b in self.batches[after:] for s in b if s.point == point]

@pytest.fixture
def batches() -> BatchRecorder:
    return BatchRecorder()


@pytest.fixture
def sim(ticking_sim: Sim) -> Sim:
    """The plant these tests read follows real time: the suite's ticking simulation."""
    return ticking_sim


@pytest.fixture
async def face(sim: Sim) -> AsyncIterator[OpcuaFace]:
    """The plcsim OPC UA face on a free loopback port (about 1.5 s to start)."""
    opcua = OpcuaFace(sim)
    await opcua.start()
    yield opcua
    await opcua.stop()


def make_config(face: OpcuaFace | Mapping[str, Any], points: list[dict[str, Any]],
                **source: Any) -> OpcuaConfig:
    """A source config for ``face``; node paths ``PumpSkid.X`` get the face's namespace.

    ``face`` is an in-process face or the listening line of a plcsim process.
    """
    if isinstance(face, OpcuaFace):
        endpoint, namespace_index = face.endpoint, face.namespace_index
    else:
        endpoint, namespace_index = face["endpoint"], face["namespace_index"]
    for point in points:
        if not point["node"].startswith(("ns=", "nsu=", "i=", "s=")):
            point["node"] = f"ns={namespace_index};s={point['node']}"
    raw: dict[str, Any] = {
        "name": "line-opcua", "type": "opcua", "endpoint": endpoint, "timeout": 1.0,
        "subscription": {"publishing_interval": 0.1, "watchdog_interval": 0.3,
                         "keepalive_interval": 0.5},
        "points": points,
    }
    raw.update(source)
    return OpcuaConfig.model_validate(raw)


@contextlib.asynccontextmanager
async def running(
    source: OpcuaSource, batches: BatchRecorder, health: RecordingHealth
) -> AsyncIterator[asyncio.Task[None]]:
    """``source.run`` as a task, cancelled (and checked to end) on exit."""
    task = asyncio.create_task(source.run(batches, health))
    try:
        yield task
    finally:
        assert await cancel_and_wait(task, timeout_s=3.0), "source did not stop"
        await asyncio.sleep(0)  # let cancelled helpers finish
        left = client_tasks()
        assert not left, f"the source left asyncua client tasks behind: {left}"


CLIENT_CODE = ("asyncua/client/", "edgetwin/sources/opcua/")


def client_tasks() -> list[str]:
    """Running tasks whose coroutine is asyncua client code or this driver's."""
    names = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        code = getattr(coro, "cr_code", None)
        if task.done() or code is None:
            continue
        if any(part in code.co_filename for part in CLIENT_CODE):
            names.append(f"{task.get_name()}: {code.co_qualname}")
    return names
