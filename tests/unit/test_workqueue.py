"""Each invariant of the work queue, tested on its own (see agent/workqueue.py).

The queue takes its time from the event loop, so these tests run on a loop of their own
with fake time (looptime): a delay of 10 s passes at once, and a key due after 0.05 s is
handed out at exactly 0.05 s of loop time, however loaded the machine is. A wait that
would hang is bounded by ``asyncio.wait_for`` in loop time too (``NEVER``), so a broken
queue fails in milliseconds instead of at the suite's timeout.
"""

from __future__ import annotations

import asyncio

import pytest
from looptime import LoopTimeProxy

from pockestrator.agent.workqueue import ShutDown, WorkQueue

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.looptime]

# Loop seconds after which a key that should have come is taken as never coming.
NEVER = 600.0


async def next_key(queue: WorkQueue) -> str:
    """The next key handed out, or a failure when none comes within ``NEVER``."""
    try:
        return await asyncio.wait_for(queue.get(), NEVER)
    except TimeoutError:
        pytest.fail(f"no key was handed out within {NEVER} s of loop time")


async def drain(queue: WorkQueue) -> list[str]:
    """Every key ready now, marked done at once."""
    keys = []
    while len(queue):
        key = await queue.get()
        keys.append(key)
        queue.done(key)
    return keys


async def test_adding_a_waiting_key_again_is_a_no_op() -> None:
    queue = WorkQueue()
    for key in ["a", "b", "a", "a", "c", "b"]:
        queue.add(key)
    assert await drain(queue) == ["a", "b", "c"]


async def test_a_key_is_never_handed_to_two_workers_at_once() -> None:
    queue = WorkQueue()
    queue.add("a")
    first = await queue.get()
    queue.add("a")  # dirty again while processing
    second_worker = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not second_worker.done(), "a key in processing was handed out again"
    queue.done(first)
    assert await asyncio.wait_for(second_worker, 1) == "a"
    queue.done("a")


async def test_a_key_added_during_processing_runs_exactly_once_more() -> None:
    queue = WorkQueue()
    queue.add("a")
    key = await queue.get()
    for _ in range(5):
        queue.add("a")
    assert len(queue) == 0  # not ready while it is processing
    queue.done(key)
    assert await drain(queue) == ["a"]
    assert len(queue) == 0


async def test_a_key_not_added_during_processing_does_not_run_again() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.done(await queue.get())
    assert len(queue) == 0


async def test_delayed_adds_only_move_a_key_earlier(looptime: LoopTimeProxy) -> None:
    queue = WorkQueue()
    assert looptime == 0
    queue.add_after("a", 0.05)
    queue.add_after("a", 10.0)  # later: ignored
    assert queue.waiting_later() == {"a": 0.05}
    assert await next_key(queue) == "a"
    assert looptime == 0.05
    queue.done("a")

    queue.add_after("b", 10.0)
    queue.add_after("b", 0.02)  # earlier: wins
    assert await next_key(queue) == "b"
    assert looptime == 0.07
    queue.done("b")
    assert queue.waiting_later() == {}


async def test_each_delayed_key_comes_at_its_own_time_after_the_first_has_fired(
    looptime: LoopTimeProxy,
) -> None:
    # One loop timer serves the whole heap: after it fires for the earliest key it must be
    # armed again for the next, or retries and requeue_after are lost.
    queue = WorkQueue()
    queue.add_after("late", 2.0)
    queue.add_after("early", 1.0)
    queue.add_after("latest", 3.5)
    handed_out = []
    for _ in range(3):
        key = await next_key(queue)
        handed_out.append((key, float(looptime)))
        queue.done(key)
    assert handed_out == [("early", 1.0), ("late", 2.0), ("latest", 3.5)]
    assert queue.waiting_later() == {}


async def test_a_second_failure_is_retried_after_its_own_backoff(
    looptime: LoopTimeProxy,
) -> None:
    queue = WorkQueue(base_delay=0.5, max_delay=60.0)
    assert queue.add_rate_limited("a") == 0.5
    assert queue.add_rate_limited("b") == 0.5
    assert queue.add_rate_limited("b") == 1.0  # b's second failure: its pending retry stays
    retried = []
    for _ in range(2):
        key = await next_key(queue)
        retried.append((key, float(looptime)))
        queue.done(key)
    assert retried == [("a", 0.5), ("b", 0.5)]
    assert queue.add_rate_limited("b") == 2.0
    assert await next_key(queue) == "b"
    assert looptime == 2.5


async def test_an_immediate_add_supersedes_a_pending_delay() -> None:
    queue = WorkQueue()
    queue.add_after("a", 10.0)
    queue.add("a")
    assert await drain(queue) == ["a"]
    assert queue.waiting_later() == {}


async def test_failures_back_off_exponentially_and_forget_resets() -> None:
    queue = WorkQueue(base_delay=0.01, max_delay=0.05)
    delays = [queue.add_rate_limited("a") for _ in range(5)]
    assert delays == [0.01, 0.02, 0.04, 0.05, 0.05]
    assert queue.failures("a") == 5
    queue.forget("a")
    assert queue.failures("a") == 0
    assert queue.add_rate_limited("a") == 0.01


async def test_shutdown_wakes_waiting_workers() -> None:
    queue = WorkQueue()
    workers = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    queue.shutdown()
    for worker in workers:
        with pytest.raises(ShutDown):
            await asyncio.wait_for(worker, 1)
    queue.add("late")
    assert len(queue) == 0


async def test_keys_queued_before_shutdown_are_not_handed_out_after_it() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    queue.shutdown()
    for _ in range(2):
        with pytest.raises(ShutDown):
            await asyncio.wait_for(queue.get(), NEVER)
    assert queue.processing == frozenset()


async def test_delayed_keys_do_not_come_after_shutdown(looptime: LoopTimeProxy) -> None:
    queue = WorkQueue()
    queue.add_after("a", 1.0)
    queue.shutdown()
    queue.add_after("b", 1.0)
    await asyncio.sleep(5.0)
    assert looptime == 5.0
    assert len(queue) == 0
    with pytest.raises(ShutDown):
        await asyncio.wait_for(queue.get(), NEVER)


async def test_a_cancelled_worker_does_not_swallow_a_key() -> None:
    queue = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    other = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("a")
    waiting.cancel()  # woken, then cancelled before it could take the key
    assert await asyncio.wait_for(other, 1) == "a"


async def test_bounded_workers_process_every_key_once_with_no_overlap() -> None:
    queue = WorkQueue()
    running: set[str] = set()
    seen: list[str] = []
    overlap = False
    idle = asyncio.Event()

    async def worker() -> None:
        nonlocal overlap
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            overlap |= key in running
            running.add(key)
            await asyncio.sleep(0.001)
            seen.append(key)
            running.discard(key)
            queue.done(key)
            if not len(queue) and not queue.processing:
                idle.set()

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for index in range(100):
        queue.add(f"k{index % 20}")
    await asyncio.wait_for(idle.wait(), 5)
    queue.shutdown()
    await asyncio.gather(*workers)
    assert not overlap
    assert sorted(set(seen)) == sorted(f"k{index}" for index in range(20))


async def test_a_delay_of_zero_or_less_is_an_immediate_add() -> None:
    queue = WorkQueue()
    queue.add_after("now", 0)
    queue.add_after("before", -1.0)
    assert len(queue) == 2  # ready in this very loop turn, no timer in between
    assert queue.waiting_later() == {}
    assert await drain(queue) == ["now", "before"]


async def test_a_key_superseded_at_the_head_of_the_delays_does_not_stop_the_next_one(
    looptime: LoopTimeProxy,
) -> None:
    queue = WorkQueue()
    queue.add_after("a", 1.0)
    queue.add("a")  # the delayed entry for "a", first in line, is now stale
    queue.add_after("b", 5.0)
    assert await drain(queue) == ["a"]
    assert await next_key(queue) == "b"
    assert looptime == 5.0


async def test_forgetting_a_key_that_never_failed_is_harmless() -> None:
    queue = WorkQueue()
    queue.forget("never-failed")
    assert queue.failures("never-failed") == 0


async def test_the_default_backoff_starts_at_50_ms_and_stops_at_60_s() -> None:
    queue = WorkQueue()
    delays = [queue.add_rate_limited("a") for _ in range(12)]
    assert delays[:3] == [0.05, 0.1, 0.2]
    assert delays[-1] == 60.0 and max(delays) == 60.0


async def test_keys_due_at_the_same_moment_come_in_the_order_they_were_added(
    looptime: LoopTimeProxy,
) -> None:
    # The heap breaks ties by the order of the adds, not by the keys' names.
    queue = WorkQueue()
    for key in ("zeta", "alpha", "mid"):
        queue.add_after(key, 1.0)
    assert queue.waiting_later() == {"zeta": 1.0, "alpha": 1.0, "mid": 1.0}
    handed_out = []
    for _ in range(3):
        key = await next_key(queue)
        handed_out.append((key, float(looptime)))
        queue.done(key)
    assert handed_out == [("zeta", 1.0), ("alpha", 1.0), ("mid", 1.0)]
