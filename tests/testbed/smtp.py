"""A mail server for tests: takes every message and remembers what each client said.

Enough of SMTP (RFC 5321) for Go's ``net/smtp`` client, which PocketBase's mailer uses:
the greeting, ``EHLO`` (announcing ``AUTH PLAIN LOGIN`` and no ``STARTTLS``, so that the
conversation stays readable), ``AUTH PLAIN`` and ``AUTH LOGIN``, ``MAIL``, ``RCPT``,
``DATA`` and ``QUIT``. Go sends credentials without TLS only to a server on localhost, so
bind it to 127.0.0.1 and give PocketBase that address as its SMTP host.

``logins`` holds every (username, password) a client authenticated with, ``messages``
every message's text: a test can tell that the password PocketBase used is the one the
spec declared, which PocketBase itself never shows.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field


@dataclass
class MailSink:
    logins: list[tuple[str, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        async def hear() -> str:
            return (await reader.readline()).decode("utf-8", "replace").rstrip("\r\n")

        try:
            await say("220 sink.test ESMTP")
            while line := await hear():
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    await say("250-sink.test")
                    await say("250 AUTH PLAIN LOGIN")
                elif verb == "AUTH":
                    await self._auth(line.split(" ")[1:], say, hear)
                elif verb == "DATA":
                    await say("354 end with .")
                    lines = []
                    while (part := await hear()) != ".":
                        lines.append(part)
                    self.messages.append("\n".join(lines))
                    await say("250 queued")
                elif verb == "QUIT":
                    await say("221 bye")
                    break
                else:
                    await say("250 ok")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _auth(self, words: list[str], say, hear) -> None:  # type: ignore[no-untyped-def]
        mechanism = words[0].upper() if words else ""
        if mechanism == "PLAIN":
            if len(words) > 1:
                encoded = words[1]
            else:
                await say("334 ")
                encoded = await hear()
            _zone, user, password = base64.b64decode(encoded).decode().split("\0")
        elif mechanism == "LOGIN":
            await say("334 " + base64.b64encode(b"Username:").decode())
            user = base64.b64decode(await hear()).decode()
            await say("334 " + base64.b64encode(b"Password:").decode())
            password = base64.b64decode(await hear()).decode()
        else:
            await say("504 unknown mechanism")
            return
        self.logins.append((user, password))
        await say("235 2.7.0 authenticated")
