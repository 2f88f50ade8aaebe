"""Name what a slow step waits on: after ``after`` seconds, every pending task's stack.

A module's agent once took more than pytest-timeout's 300 s to stop, and the timeout's dump
shows only threads, not the event loop's tasks; this prints those while it still waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from collections.abc import Awaitable


def task_stacks() -> str:
    """The stack of every task of the running loop but the caller's."""
    out = io.StringIO()
    current = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not current and not task.done():
            print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
            task.print_stack(file=out)
    return out.getvalue()


async def naming_what_it_waits_on(step: Awaitable[None], what: str, after: float = 120) -> None:
    """Await ``step``; if it is not done after ``after`` seconds, print the tasks' stacks
    (once) to stderr and go on waiting."""

    async def report() -> None:
        await asyncio.sleep(after)
        print(f"{what}: not done after {after:g} s; the tasks:\n{task_stacks()}", file=sys.stderr)

    reporter = asyncio.create_task(report())
    try:
        await step
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
