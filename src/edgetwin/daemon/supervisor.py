"""Restarts a failed source with backoff so one driver's bug never stops the gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from edgetwin.core.backoff import Backoff
from edgetwin.core.ports import Emit, Source
from edgetwin.telemetry import SourceHealthTracker, Telemetry

HEALTHY_RUN_S = 60.0  # a run this long counts as recovered: the next failure starts backoff anew


async def supervise(
    make_source: Callable[[], Source],
    emit: Emit,
    health: SourceHealthTracker,
    telemetry: Telemetry,
    backoff: Backoff | None = None,
) -> None:
    """Run a source until cancelled, restarting it with jittered backoff whenever it fails.

    A source's ``run`` raises only for bugs (device trouble is handled inside the driver), so
    every failure here is logged with its traceback and counted.
    """
    backoff = backoff or Backoff(initial_s=1.0, max_s=60.0)
    restarts = telemetry.counter(
        "edgetwin_source_restarts_total", "Sources restarted after a failure", ("source",)
    )
    name = health.source
    while True:
        started = time.monotonic()
        try:
            source = make_source()
            await source.run(emit, health)
            error: BaseException = RuntimeError("run() returned; a source runs until cancelled")
        except asyncio.CancelledError:
            raise
        except Exception as err:  # any bug in a driver: restart it, keep the rest
            error = err
        if time.monotonic() - started > HEALTHY_RUN_S:
            backoff.reset()
        delay = backoff.next_delay()
        health.down("crashed", error)
        telemetry.emit_error(
            "supervisor", "source_crashed", "run", error, source=name,
            message="Source crashed; restarting it", restart_in_s=round(delay, 2),
            exc_info=error,
        )
        restarts.labels(name).inc()
        await asyncio.sleep(delay)  # backoff pacing; cancellation ends it at once
