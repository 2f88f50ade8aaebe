"""An impostor at a node's address: a server on a loopback port that answers every call
as it is told, the way a tenant that took the owner's API port, or a host on the path,
would. The tests tell it what to answer and see what the calling node makes of that."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web

# What to answer a call with, from the call itself (whose nonce a forger may read).
Answering = Callable[[web.Request], web.StreamResponse]


class Impostor:
    """Answers every request with ``answering``, and counts the calls it took."""

    def __init__(self) -> None:
        self.calls = 0
        self.answering: Answering = lambda _request: web.Response(status=500)

    async def _any(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        await request.read()
        return self.answering(request)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Listen on a free loopback port; the address (http://127.0.0.1:PORT) is given."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()
