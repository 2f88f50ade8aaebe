"""The check that fails a test leaving asyncio tasks behind tells the test's tasks from the
tasks of long-lived parts (see tests/asyncio_tasks.py); it is autouse in tests/conftest.py."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from tests.asyncio_tasks import owner_of, pending_tasks_of


def pending_besides_this_one(test: str) -> list[str]:
    """The test's pending tasks other than the one running the test itself."""
    running = asyncio.current_task()
    assert running is not None and owner_of(running) == test
    return [
        task for task in pending_tasks_of(test) if not task.startswith(f"{running.get_name()} (")
    ]


async def test_a_task_the_test_created_is_pending_until_it_is_awaited(
    request: pytest.FixtureRequest,
) -> None:
    test = request.node.nodeid
    task = asyncio.create_task(asyncio.sleep(3600), name="forgotten")
    assert owner_of(task) == test
    assert pending_besides_this_one(test) == ["forgotten (sleep)"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pending_besides_this_one(test) == []


async def test_a_task_created_by_a_task_of_the_test_is_the_tests_too(
    request: pytest.FixtureRequest,
) -> None:
    children: list[asyncio.Task[None]] = []

    async def parent() -> None:
        children.append(asyncio.create_task(asyncio.sleep(3600), name="grandchild"))

    await asyncio.create_task(parent())
    assert owner_of(children[0]) == request.node.nodeid
    assert pending_besides_this_one(request.node.nodeid) == ["grandchild (sleep)"]
    children[0].cancel()
    await asyncio.gather(*children, return_exceptions=True)


async def test_a_task_started_from_a_long_lived_parts_context_is_not_the_tests() -> None:
    # What an aiohttp server or the agent's workers do: create a task from a callback that
    # runs in the context they were started in (here a fresh one), not the test's.
    created: asyncio.Future[asyncio.Task[None]] = asyncio.get_running_loop().create_future()

    def start_background_work() -> None:
        created.set_result(asyncio.create_task(asyncio.sleep(3600), name="server handler"))

    asyncio.get_running_loop().call_soon(start_background_work, context=contextvars.Context())
    task = await created
    assert owner_of(task) is None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_a_task_created_in_a_loop_the_test_runs_itself_is_not_tracked() -> None:
    async def main() -> asyncio.Task[None]:
        return asyncio.create_task(asyncio.sleep(0))

    assert owner_of(asyncio.run(main())) is None
