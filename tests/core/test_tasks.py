import asyncio
import contextlib

import pytest

from edgetwin.core.tasks import cancel_and_wait, raise_if_cancelling


async def swallows_once(ticks: list[int], *, check: bool) -> None:
    """A loop around a library call that loses the first cancellation (as wait_for does on 3.11)."""
    swallowed = False
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True  # the library returned a result instead of raising
        if check:
            raise_if_cancelling()
        ticks.append(1)


async def test_raise_if_cancelling_honours_a_swallowed_cancellation() -> None:
    """After a lost cancellation, the loop's own check ends it."""
    ticks: list[int] = []
    task = asyncio.create_task(swallows_once(ticks, check=True))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)


async def test_cancel_and_wait_cancels_again_until_the_task_ends() -> None:
    """A task that loses one cancellation is still stopped, within the timeout."""
    ticks: list[int] = []
    task = asyncio.create_task(swallows_once(ticks, check=False))
    await asyncio.sleep(0.02)
    assert await cancel_and_wait(task, timeout_s=2)
    assert task.cancelled()


async def test_cancel_and_wait_reports_a_task_that_will_not_stop() -> None:
    """A task that ignores every cancellation is reported, not waited for forever."""
    async def stubborn() -> None:
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0.02)  # let it start; a task cancelled before its first step just ends
    assert not await cancel_and_wait(task, timeout_s=0.3)
    assert not task.done()
    task.get_coro().close()  # type: ignore[union-attr]  # end the test's stubborn coroutine

