import asyncio
from collections.abc import Sequence

from edgetwin.core.backoff import Backoff
from edgetwin.core.ports import Emit, SourceHealth
from edgetwin.core.types import Quality, Sample
from edgetwin.daemon.supervisor import supervise
from edgetwin.telemetry import Telemetry


class CrashingSource:
    """A driver with a bug: its first ``crashes`` runs raise, later ones emit forever."""

    def __init__(self, name: str, runs: list[int], crashes: int) -> None:
        self.name = name
        self._runs = runs
        self._crashes = crashes

    def resources(self) -> frozenset[str]:
        return frozenset()

    async def run(self, emit: Emit, health: SourceHealth) -> None:
        self._runs.append(1)
        if len(self._runs) <= self._crashes:
            raise ZeroDivisionError("driver bug")
        health.up()
        while True:
            await emit([Sample(f"{self.name}/x", len(self._runs), Quality.GOOD, 1)])
            await asyncio.sleep(0.01)


async def test_failing_source_is_restarted_while_others_keep_running() -> None:
    """A crashing driver is restarted with backoff; a healthy one is never interrupted."""
    telemetry = Telemetry()
    got: dict[str, list[int]] = {"bad": [], "good": []}
    recovered = asyncio.Event()

    def emitter(name: str) -> Emit:
        async def emit(batch: Sequence[Sample]) -> None:
            got[name].extend(s.value for s in batch)
            if name == "bad":
                recovered.set()
        return emit

    bad_runs: list[int] = []
    good_runs: list[int] = []
    tasks = [
        asyncio.create_task(supervise(lambda: CrashingSource("bad", bad_runs, 3), emitter("bad"),
                                      telemetry.source_health("bad"), telemetry,
                                      Backoff(initial_s=0.01, max_s=0.05))),
        asyncio.create_task(supervise(lambda: CrashingSource("good", good_runs, 0),
                                      emitter("good"), telemetry.source_health("good"),
                                      telemetry)),
    ]
    await asyncio.wait_for(recovered.wait(), 5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert len(bad_runs) == 4  # three crashes, then a run that works
    assert len(good_runs) == 1  # never restarted
    assert got["good"]
    assert telemetry.errors_count("supervisor", "source_crashed") == 3
    assert telemetry.source_health("bad").state == "up"


async def test_a_source_that_returns_is_restarted_too() -> None:
    """run() returning is a bug as well: a source runs until cancelled."""
    telemetry = Telemetry()
    runs: list[int] = []
    again = asyncio.Event()

    class Quitter:
        name = "quitter"

        def resources(self) -> frozenset[str]:
            return frozenset()

        async def run(self, emit: Emit, health: SourceHealth) -> None:
            runs.append(1)
            if len(runs) > 1:
                again.set()
                await asyncio.Event().wait()

    async def emit(_batch: Sequence[Sample]) -> None:
        return None

    task = asyncio.create_task(supervise(Quitter, emit, telemetry.source_health("quitter"),
                                         telemetry, Backoff(initial_s=0.01, max_s=0.01)))
    await asyncio.wait_for(again.wait(), 5)
    task.cancel()
    assert telemetry.errors_count("supervisor", "source_crashed") == 1
