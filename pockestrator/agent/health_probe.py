"""One ``GET /api/health`` on loopback, spoken directly over a socket: ``probe``, and the
prober's connections kept alive between rounds: ``ProbeConnections``.

The agent probes every instance every ``health_interval``; with 500 of them aiohttp's
client (a request object, a response object, header multidicts, a timer and a pooled
connection that had expired by the next probe anyway) was most of what a probe cost. The
question is tiny: one request line, one status line, a body of about 60 bytes. So a probe
opens a connection, sends a fixed request with ``Connection: close``, and an
``asyncio.Protocol`` reads the answer as it arrives, to a verdict: healthy when the status
is 200 and the body is complete within ``HEALTH_BODY_MAX`` bytes. An instance is hostile
(docs/security.md): more than the bound, or headers longer than ``HEADERS_MAX``, is
unhealthy at once and the connection is dropped, not drained.

A new connection per probe was still most of a probe's cost: the kernel's loopback
handshake and teardown, counted as the agent's CPU (263 us per probe against a real
PocketBase here, 52 us on a kept connection). The periodic prober keeps one connection per
port (PocketBase keeps an idle one for ten minutes; the interval is 30 s): a probe on a
kept connection that gets no byte of an answer before it closes (the instance closed it
meanwhile) is asked once more on a new one, within the same timeout; a connection whose
answer was not exactly one sized response, or that said ``Connection: close``, is not
kept. At most half the open-file limit is kept.
"""

from __future__ import annotations

import asyncio
import re
import resource

# PocketBase's answer is about 60 bytes; an instance is hostile and may send without end.
HEALTH_BODY_MAX = 4096
HEADERS_MAX = 8192
# An answer is read again from its start at each arrival, so both its size and the number
# of arrivals are bounded: a hostile instance sending a byte at a time costs at most this
# many reads of at most ANSWER_MAX bytes (PocketBase's answer comes in one or two).
ANSWER_MAX = HEADERS_MAX + 2 * HEALTH_BODY_MAX
READS_MAX = 64
# A chunk's size: hexadecimal digits only (``int(_, 16)`` would take a sign, spaces, 0x).
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")


class _Answer(asyncio.Protocol):
    """Reads HTTP/1.1 answers, one request at a time, into verdicts as their bytes arrive.

    ``ask`` sends a request and returns its verdict: True or False, or None when the
    connection closed before any byte of the answer came (a kept connection the instance
    had closed). After a verdict the connection is closed unless ``keep`` and the answer
    was exactly one sized 200 that did not ask to close.
    """

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.data = bytearray()
        self.done: asyncio.Future[bool | None] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reads = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    async def ask(self, request: bytes) -> bool | None:
        assert self.transport is not None
        self.data.clear()
        self.reads = 0
        self.done = asyncio.get_running_loop().create_future()
        if self.closed:
            return None
        self.transport.write(request)
        return await self.done

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.reads += 1
        if len(self.data) > ANSWER_MAX or self.reads > READS_MAX:
            self._decide(False, reusable=False)
            return
        verdict = answer_verdict(bytes(self.data), ended=False)
        if verdict is not None:
            self._decide(verdict, reusable=verdict and self.keep and _reusable(self.data))

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()

    def _ended(self) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_result(
                None if not self.data else bool(answer_verdict(bytes(self.data), ended=True))
            )
        self.close()

    def _decide(self, healthy: bool, *, reusable: bool) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(healthy)
        if not reusable:
            self.close()  # nothing more is read, whatever the instance sends

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _reusable(data: bytearray) -> bool:
    """Whether an answer was exactly one response with a length, not asking to close."""
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        fields[key.strip().lower()] = value.strip().lower()
    length = fields.get(b"content-length", b"")
    return length.isdigit() and len(body) == int(length) and fields.get(b"connection") != b"close"


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
        digits = size_line.split(b";")[0].strip()
        if not CHUNK_SIZE.fullmatch(digits):
            return False  # not a size: a sign would walk the parse backwards for ever
        size = int(digits, 16)
        received += size
        if received > HEALTH_BODY_MAX:
            return False
        if size == 0:
            return True
        at += len(size_line) + 2 + size + 2
        if at > len(body):
            return False if ended else None


def _request(port: int, *, keep: bool) -> bytes:
    close = b"" if keep else b"Connection: close\r\n"
    return (
        b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%bUser-Agent: pockestrator\r\n\r\n"
        % (port, close)
    )


async def _connect(port: int, *, keep: bool) -> _Answer:
    loop = asyncio.get_running_loop()
    _transport, answer = await loop.create_connection(lambda: _Answer(keep), "127.0.0.1", port)
    return answer


async def probe(port: int, timeout: float) -> bool:
    """True when PocketBase on ``port`` answers its health endpoint with 200 in time (on a
    connection of its own, closed after: a boot's probes, a one-off look)."""
    answer: _Answer | None = None
    try:
        async with asyncio.timeout(timeout):
            answer = await _connect(port, keep=False)
            return bool(await answer.ask(_request(port, keep=False)))
    except (TimeoutError, OSError):
        return False
    finally:
        if answer is not None:
            answer.close()


class ProbeConnections:
    """The periodic prober's connections, one kept alive per port between rounds."""

    def __init__(self, most: int | None = None) -> None:
        self.most = most if most is not None else resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2
        self._kept: dict[int, _Answer] = {}

    async def probe(self, port: int, timeout: float) -> bool:
        """``probe``, on the connection kept for ``port`` when there is one."""
        answer = self._kept.pop(port, None)
        healthy = False
        try:
            async with asyncio.timeout(timeout):
                verdict = None
                if answer is not None:
                    verdict = await answer.ask(_request(port, keep=True))
                if verdict is None:  # none kept, or closed by the instance meanwhile
                    if answer is not None:
                        answer.close()
                    answer = await _connect(port, keep=True)
                    verdict = await answer.ask(_request(port, keep=True))
                healthy = bool(verdict)
        except (TimeoutError, OSError):
            healthy = False
        finally:
            # Kept only after a whole sized 200 (anything else has closed it already); a
            # probe cancelled half-way (the agent stopping) closes its connection too.
            if answer is not None:
                if healthy and not answer.closed and len(self._kept) < self.most:
                    self._kept[port] = answer
                else:
                    answer.close()
        return healthy

    def retain(self, ports: set[int]) -> None:
        """Close the kept connections of every port not in ``ports`` (not probed now)."""
        for port in [port for port in self._kept if port not in ports]:
            self._kept.pop(port).close()

    def close(self) -> None:
        self.retain(set())

    def __len__(self) -> int:
        return len(self._kept)
