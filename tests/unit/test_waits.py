"""``woken``: an event awaited with a time limit, and a cancellation that always ends the
waiter, also the one that comes in the same turn as the event (which Python 3.11's
``asyncio.wait_for`` swallowed, so a loop on it ran on after the agent's stop)."""

from __future__ import annotations

import asyncio

import pytest

from pockestrator.waits import cancelled, woken

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def a_loop_on(event: asyncio.Event, rounds: list[int]) -> None:
    """A wake-up loop as the agent's background jobs run them."""
    while True:
        rounds.append(1)
        await woken(event, 30.0)
        event.clear()


async def test_a_loop_cancelled_in_the_turn_its_event_is_set_ends() -> None:
    event, rounds = asyncio.Event(), []
    task = asyncio.create_task(a_loop_on(event, rounds))
    await asyncio.sleep(0)  # it waits
    event.set()
    task.cancel()
    done, _pending = await asyncio.wait([task], timeout=5)
    assert done == {task}, f"the loop ran on after its cancel ({len(rounds)} rounds)"
    assert task.cancelled()
    assert len(rounds) == 1


async def test_woken_is_true_when_set_in_time_and_false_when_the_time_runs_out() -> None:
    event = asyncio.Event()
    assert await woken(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await woken(event, 5.0) is True
    assert await woken(event, None) is True  # already set, no limit


async def test_cancelled_sends_the_cancel_again_to_a_task_that_swallowed_the_first() -> None:
    swallowed = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.append(1)  # as 3.11's wait_for did, in the turn its future completed
        await asyncio.sleep(30)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancelled([task], again_after=0.05), 5)
    assert swallowed == [1] and task.cancelled()
