"""A service held down: its PocketBase killed and its port taken before systemd restarts it.

systemd waits ``RestartSec=`` (2 s in the test bed) before a restart; the port is bound as
soon as the killed process has let go of it, so every restart then fails to listen and the
service stays down (what the alert rules must notice) until the holder lets go.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.testbed.waiting import wait_until


@asynccontextmanager
async def killed_and_held(pid: int, port: int) -> AsyncIterator[socket.socket]:
    """SIGKILL ``pid``, then hold ``port`` (listening) for the body of the ``with``."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        os.kill(pid, signal.SIGKILL)
        assert await wait_until(lambda: _take(holder, port), 1.5, 0.01), (
            f"port {port} was not let go of within 1.5 s of the SIGKILL of {pid}"
        )
        holder.listen()
        yield holder
    finally:
        holder.close()


async def _take(holder: socket.socket, port: int) -> bool:
    try:
        holder.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True
