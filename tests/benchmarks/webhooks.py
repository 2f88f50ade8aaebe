"""``python -m tests.benchmarks.webhooks``: what the outbox and the delivery worker cost.

Two figures, each against a floor measured in the same run on the same machine:

- **recording an event**: ``Store.add_event`` with 10 webhooks that want it (the event and
  10 outbox rows in one transaction, then the worker woken) against ``add_event`` with
  none (the event alone, as before webhooks);
- **event to receiver**: from ``add_event`` returning to a local aiohttp receiver having
  the signed request (the worker is woken by the commit, claims, signs, sends), against
  the floor of the same receiver getting the same body from a plain ``session.post``.

The agent's parts are the real ones (the SQLite store in a temporary folder, the
``WebhookDispatcher``); no test bed is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from pockestrator.agent.sandbox import free_port
from pockestrator.agent.webhooks import WebhookDispatcher
from pockestrator.clock import SYSTEM_CLOCK
from pockestrator.config import AgentConfig
from pockestrator.specs.store import Store


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def record_cost(store: Store, events: int) -> float:
    """Median seconds of one ``add_event``."""
    samples = []
    for index in range(events):
        began = time.perf_counter()
        store.add_event("bench", "reconciled", f"event {index}", {"index": index})
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


async def measure(events: int) -> dict[str, float]:
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        arrived.put_nowait(time.perf_counter())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/in", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/in"
    folder = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    figures: dict[str, float] = {}
    try:
        # Recording: no webhook (the floor), then ten that want every event.
        bare = Store(folder / "bare.db")
        figures["record_floor_ms"] = round(record_cost(bare, events) * 1000, 3)
        bare.close()
        fanned = Store(folder / "fanned.db")
        for index in range(10):
            fanned.create_webhook(f"http://127.0.0.1:9/{index}", created_by="bench")
        figures["record_10_webhooks_ms"] = round(record_cost(fanned, events) * 1000, 3)
        fanned.close()

        # Delivery: a plain POST of the same body (the floor), then through the worker.
        store = Store(folder / "deliver.db")
        store.create_webhook(url, created_by="bench")
        body = json.dumps({"idempotency_key": "1", "event": {"id": 1}}).encode()
        floor = []
        async with aiohttp.ClientSession() as session:
            for _ in range(events):
                began = time.perf_counter()
                async with session.post(url, data=body) as response:
                    await response.read()
                floor.append(await arrived.get() - began)
        config = AgentConfig(webhook_concurrency=4)
        dispatcher = WebhookDispatcher(store, lambda: config, SYSTEM_CLOCK)
        worker = asyncio.create_task(dispatcher.run())
        await asyncio.sleep(0.2)
        delivered = []
        for index in range(events):
            began = time.perf_counter()
            store.add_event("bench", "reconciled", f"event {index}")
            delivered.append(await asyncio.wait_for(arrived.get(), 10) - began)
            await asyncio.sleep(0.01)  # let the worker record the answer before the next
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        store.close()
        figures["deliver_floor_ms"] = _median_ms(floor)
        figures["deliver_ms"] = _median_ms(delivered)
    finally:
        await runner.cleanup()
    figures["record_ratio"] = round(
        figures["record_10_webhooks_ms"] / figures["record_floor_ms"], 2
    )
    figures["deliver_ratio"] = round(figures["deliver_ms"] / figures["deliver_floor_ms"], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    # One log line per delivery would be measured too.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(json.dumps(asyncio.run(measure(args.events)), indent=2))


if __name__ == "__main__":
    main()
