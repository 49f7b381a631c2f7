"""Fixtures for the OPC UA driver tests: plcsim's OPC UA face in-process, recording ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import Sample
from edgetwin.sources.opcua import OpcuaConfig, OpcuaSource
from plcsim.opcua_face import OpcuaFace
from plcsim.sim import Sim

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
                          f"no {count} x {kind} within {timeout_s} s: {self.events}", timeout_s)


@dataclass
class BatchRecorder(Recorder):
    """An Emit that keeps every batch, as emitted."""

    batches: list[list[Sample]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    async def __call__(self, batch: Sequence[Sample]) -> None:
        self.batches.append(list(batch))
        self._notify()

    def samples(self, point: str, after: int = 0) -> list[Sample]:
        """Every sample of ``point`` in batches at index >= ``after``."""
        return [s for b in self.batches[after:] for s in b if s.point == point]

    async def wait_for(
        self,
        check: Callable[[list[Sample]], bool],
        *,
        after: int = 0,
        timeout_s: float = WAIT_S,
    ) -> tuple[int, list[Sample]]:
        """The first batch at index >= ``after`` that passes ``check``, with its index."""

        def find() -> tuple[int, list[Sample]] | None:
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


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    """A simulation ticking in real time (50 ms ticks)."""
    simulation = Sim(seed=1, tick_s=0.05)
    task = asyncio.create_task(simulation.run())
    yield simulation
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def face(sim: Sim) -> AsyncIterator[OpcuaFace]:
    """The plcsim OPC UA face on a free loopback port (about 1.5 s to start)."""
    opcua = OpcuaFace(sim)
    await opcua.start()
    yield opcua
    await opcua.stop()


def make_config(face: OpcuaFace, points: list[dict[str, Any]], **source: Any) -> OpcuaConfig:
    """A source config for ``face``; node paths ``PumpSkid.X`` get the face's namespace."""
    for point in points:
        if not point["node"].startswith(("ns=", "nsu=", "i=", "s=")):
            point["node"] = f"ns={face.namespace_index};s={point['node']}"
    raw: dict[str, Any] = {
        "name": "line-opcua", "type": "opcua", "endpoint": face.endpoint, "timeout": 1.0,
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
