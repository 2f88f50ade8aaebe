"""Bounded waits on real services, for tests (the product itself is event-driven)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp


async def http_get(url: str, host: str | None = None, timeout: float = 2.0) -> tuple[int, str]:
    """Status and body of one GET ((0, "") when nothing answers); ``host`` sets Host."""
    headers = {"Host": host} if host else {}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response,
        ):
            return response.status, await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return 0, ""


async def pocketbase_health(base_url: str, host: str | None = None) -> bool:
    """True when PocketBase itself answers ``/api/health`` (not Caddy's empty 200)."""
    status, body = await http_get(f"{base_url}/api/health", host)
    if status != 200:
        return False
    try:
        return bool(json.loads(body).get("code") == 200)
    except (ValueError, AttributeError):
        return False


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Re-check ``condition`` until it holds or ``timeout`` passes; returns the last answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await condition():
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(interval)


async def wait_for_pocketbase(
    base_url: str, host: str | None = None, timeout: float = 15.0
) -> bool:
    """Wait until a PocketBase answers ``/api/health`` at ``base_url`` (through ``host``)."""
    return await wait_until(lambda: pocketbase_health(base_url, host), timeout)


async def port_listens(port: int) -> bool:
    """Whether something accepts connections on ``127.0.0.1:port`` now."""
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True
