import asyncio
import contextlib

import pytest

from edgetwin.core.tasks import cancel_and_wait, raise_if_cancelling, wait_set


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



async def waiting_loop(event: asyncio.Event, wait: str, rounds: list[int]) -> None:
    """Waits for ``event`` over and over, as a commit or reconnect loop does."""
    while True:
        if wait == "wait_set":
            await wait_set(event, 60.0)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 60.0)
        rounds.append(1)


@pytest.mark.parametrize(("wait", "lost"), [("wait_for", True), ("wait_set", False)])
async def test_a_cancel_that_lands_with_the_event(wait: str, lost: bool) -> None:
    """wait_set passes on a cancel that comes in the same turn as the event.

    wait_for (Python 3.11) drops it and the loop runs on: the control shows the race is real.
    """
    event = asyncio.Event()
    rounds: list[int] = []
    task = asyncio.create_task(waiting_loop(event, wait, rounds))
    await asyncio.sleep(0)  # one turn: the loop runs into its wait
    await asyncio.sleep(0)  # wait_for's inner task runs into Event.wait
    event.set()
    event.clear()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=0.5)
    assert (task not in done) is lost
    if lost:
        assert rounds == [1]  # it went round again after the cancel
        assert await cancel_and_wait(task)  # a second cancel ends it
    else:
        assert task.cancelled() and rounds == []


async def test_wait_set_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    event.set()
    assert await wait_set(event, 0.01) is True
    assert await wait_set(event, None) is True
