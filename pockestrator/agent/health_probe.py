"""One ``GET /api/health`` on loopback, spoken directly over a socket: ``probe``.

The agent probes every instance every ``health_interval``; with 500 of them aiohttp's
client (a request object, a response object, header multidicts, a timer and a pooled
connection that had expired by the next probe anyway) was most of what a probe cost. The
question is tiny: one request line, one status line, a body of about 60 bytes. So a probe
opens a connection, sends a fixed request with ``Connection: close``, and an
``asyncio.Protocol`` reads the answer as it arrives, to a verdict: healthy when the status
is 200 and the body is complete within ``HEALTH_BODY_MAX`` bytes. An instance is hostile
(docs/security.md): more than the bound, or headers longer than ``HEADERS_MAX``, is
unhealthy at once and the connection is dropped, not drained.
"""

from __future__ import annotations

import asyncio

# PocketBase's answer is about 60 bytes; an instance is hostile and may send without end.
HEALTH_BODY_MAX = 4096
HEADERS_MAX = 8192


class _Answer(asyncio.Protocol):
    """Reads one HTTP/1.1 answer into a verdict (``done``) as its bytes arrive."""

    def __init__(self, request: bytes, done: asyncio.Future[bool]) -> None:
        self.request = request
        self.done = done
        self.data = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.data += data
        verdict = answer_verdict(bytes(self.data), ended=False)
        if verdict is not None:
            self._decide(verdict)

    def eof_received(self) -> bool:
        verdict = answer_verdict(bytes(self.data), ended=True)
        self._decide(bool(verdict))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._decide(bool(answer_verdict(bytes(self.data), ended=True)))

    def _decide(self, healthy: bool) -> None:
        if not self.done.done():
            self.done.set_result(healthy)
        if self.transport is not None:
            self.transport.abort()  # nothing more is read, whatever the instance sends


def answer_verdict(data: bytes, *, ended: bool) -> bool | None:
    """Whether the answer so far says healthy: True or False once it can tell, None while
    it needs more bytes (``ended``: the instance closed, nothing more will come)."""
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False if ended or len(data) > HEADERS_MAX else None
    if len(head) > HEADERS_MAX:
        return False
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or parts[1] != b"200":
        return False
    fields = {}
    for line in lines[1:]:
        key, colon, value = line.partition(b":")
        if colon:
            fields[key.strip().lower()] = value.strip().lower()
    if fields.get(b"transfer-encoding", b"") == b"chunked":
        return _chunked_verdict(body, ended)
    length = fields.get(b"content-length")
    if length is not None:
        if not length.isdigit() or int(length) > HEALTH_BODY_MAX:
            return False
        if len(body) >= int(length):
            return True
        return False if ended else None
    if len(body) > HEALTH_BODY_MAX:
        return False
    return True if ended else None


def _chunked_verdict(body: bytes, ended: bool) -> bool | None:
    """A chunked body: healthy once its last chunk came within the bound."""
    received, at = 0, 0
    while True:
        size_line, found, _rest = body[at:].partition(b"\r\n")
        if not found:
            return False if ended or len(size_line) > 32 else None
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return False
        received += size
        if received > HEALTH_BODY_MAX:
            return False
        if size == 0:
            return True
        at += len(size_line) + 2 + size + 2
        if at > len(body):
            return False if ended else None


async def probe(port: int, timeout: float) -> bool:
    """True when PocketBase on ``port`` answers its health endpoint with 200 in time."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()
    request = (
        f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Connection: close\r\nUser-Agent: pockestrator\r\n\r\n"
    ).encode()
    transport: asyncio.Transport | None = None
    try:
        async with asyncio.timeout(timeout):
            connected, _protocol = await loop.create_connection(
                lambda: _Answer(request, done), "127.0.0.1", port
            )
            assert isinstance(connected, asyncio.Transport)
            transport = connected
            return await done
    except (TimeoutError, OSError):
        return False
    finally:
        if transport is not None:
            transport.abort()
