"""Which asyncio tasks a test created, so that a test leaving one pending fails.

A task belongs to the test whose code, or whose function-scoped fixtures, created it,
directly or through tasks those created: it was created in a context holding the test's
id (``owned_by``; pytest-asyncio runs a test and its fixtures in copies of the context
current when they start). Module and session fixtures (the agent, the sandbox, the
release mirror) are set up before the test and run in contexts without it, so the tasks
they start, and the tasks those start later on their own (an aiohttp server's handler
for a connection the test opened, a reconcile of a name the test enqueued), are never
counted against a test. That is "compare with what existed before the test", made exact
for long-lived parts that keep creating tasks.

The owner is recorded by a task factory on each event loop the tests run in
(``record_task_owners``): Python 3.11 gives no access to a task's context afterwards.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

_TEST: contextvars.ContextVar[str | None] = contextvars.ContextVar("test", default=None)
_OWNERS: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = weakref.WeakKeyDictionary()


def _task_with_its_owner(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
) -> asyncio.Task[Any]:
    task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
    # The task runs in `context` when one is given, else in a copy of the creator's.
    context: contextvars.Context | None = kwargs.get("context")
    owner = context.get(_TEST) if context is not None else _TEST.get()
    if owner is not None:
        _OWNERS[task] = owner
    return task


def record_task_owners(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop`` record which test each new task belongs to (idempotent)."""
    if loop.get_task_factory() is not _task_with_its_owner:
        loop.set_task_factory(_task_with_its_owner)


@contextmanager
def owned_by(test: str) -> Iterator[None]:
    """Tasks created in this context, and in copies of it made meanwhile, are ``test``'s."""
    token = _TEST.set(test)
    try:
        yield
    finally:
        _TEST.reset(token)


def owner_of(task: asyncio.Task[Any]) -> str | None:
    return _OWNERS.get(task)


def pending_tasks_of(test: str) -> list[str]:
    """The tasks of ``test`` not done yet, each as its name and its coroutine's."""
    return sorted(
        f"{task.get_name()} ({getattr(task.get_coro(), '__qualname__', task.get_coro())})"
        for task, owner in list(_OWNERS.items())
        if owner == test and not task.done()
    )
