"""Waiting for the owning node: ``?wait=true`` on a write of a service another node runs.

The answer waits until that node's agent has reconciled the spec as written, which its
status in the shared store says (``observed_generation``): the receiving node's own
reconcile would say nothing of it. The owner's status writes reach this agent's change
feed as the store's notices (migration 12), so the wait is woken, never polls.
"""

from __future__ import annotations

import asyncio

from pockestrator.specs.store import ServiceRecord, Store


async def owner_reconciled(store: Store, record: ServiceRecord, timeout: float) -> bool:
    """True once the owner's reconcile of ``record``'s generation (or a later one) has
    finished, False after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with store.changes.subscribe() as waiter:  # before the first read: no change missed
        while True:
            status = await asyncio.to_thread(store.get_status, record.name)
            observed = status.observed_generation if status is not None else None
            if observed is not None and observed >= record.generation:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0 or not await waiter.wait(remaining):
                return False
