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


def awaiting(task: asyncio.Task[object]) -> list[str]:
    """Where ``task`` waits, coroutine by coroutine down its chain of awaits, and what the
    last one awaits (``Task.print_stack`` shows only the outermost coroutine's line)."""
    lines = []
    awaited: object = task.get_coro()
    while hasattr(awaited, "cr_frame") or hasattr(awaited, "gi_frame"):
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    lines.append(f"  awaiting {awaited!r}")
    return lines


def task_stacks() -> str:
    """Where every task of the running loop but the caller's waits."""
    out = io.StringIO()
    current = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not current and not task.done():
            print(f"--- {task!r}", file=out)
            print("\n".join(awaiting(task)), file=out)
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
