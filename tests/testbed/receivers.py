"""A local HTTP receiver for what the agent sends out (webhooks), on loopback.

The port is the kernel's choice (bound to 0, then read back), so two receivers started at
once can never be handed the same free port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def receiving(path: str, handler: Handler) -> AsyncIterator[str]:
    """A server answering POSTs to ``path`` with ``handler`` while the ``with`` lasts; its
    URL (``http://127.0.0.1:PORT/path``)."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}{path}"
    finally:
        await runner.cleanup()
