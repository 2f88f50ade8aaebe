"""Waiting for an event with a time limit, in loops that must end when they are cancelled.

On Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives in the same turn
of the event loop as the future it waits on completes: it returns that result instead.
A ``while True`` loop that waits for a wake-up so (the alert rules', the webhook outbox's,
the archive retention's) then ran on after the agent's stop had cancelled it, and the stop
waited for it for ever. ``asyncio.timeout`` raises only for its own deadline and lets every
other cancellation through, so ``woken`` is built on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


async def woken(event: asyncio.Event, timeout: float | None) -> bool:
    """True when ``event`` is set within ``timeout`` seconds (None: no limit), False when
    the time runs out; a cancellation always propagates."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def cancelled(tasks: Sequence[asyncio.Task[Any]], again_after: float = 1.0) -> None:
    """Cancel ``tasks`` and wait until each has ended, cancelling again every
    ``again_after`` seconds the ones still running: a ``wait_for`` anywhere in a loop's body
    can swallow one cancellation (above), and a stop must not wait on such a loop for ever."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=again_after)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # looked at: an error of a task that was stopping is not news
