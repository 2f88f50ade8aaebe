"""Each invariant of the work queue, tested on its own (see agent/workqueue.py)."""

from __future__ import annotations

import asyncio

import pytest

from pockestrator.agent.workqueue import ShutDown, WorkQueue


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


async def test_delayed_adds_only_move_a_key_earlier() -> None:
    queue = WorkQueue()
    loop = asyncio.get_running_loop()
    queue.add_after("a", 0.05)
    queue.add_after("a", 10.0)  # later: ignored
    assert queue.waiting_later()["a"] == pytest.approx(loop.time() + 0.05, abs=0.02)
    started = loop.time()
    assert await asyncio.wait_for(queue.get(), 2) == "a"
    assert loop.time() - started < 1.0
    queue.done("a")

    queue.add_after("b", 10.0)
    queue.add_after("b", 0.02)  # earlier: wins
    assert await asyncio.wait_for(queue.get(), 2) == "b"
    queue.done("b")
    assert queue.waiting_later() == {}


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
