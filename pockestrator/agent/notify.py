"""systemd notifications for the agent itself (``Type=notify``, ``WatchdogSec=``).

``READY=1`` once the API listens and the first reconcile pass is queued; ``STATUS=`` a
one-line summary; ``RELOADING=1``/``READY=1`` around a SIGHUP config re-read; ``STOPPING=1``
on shutdown. ``WATCHDOG=1`` is sent every half ``WATCHDOG_USEC`` from the event loop, and
only while the workers make progress: a worker stuck on one service longer than
``stuck_after`` stops the pings, so systemd restarts an agent that has hung rather than
one that is merely busy.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import sdnotify
import structlog

log = structlog.get_logger("pockestrator.notify")


def watchdog_interval() -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, when systemd asked for pings (and for us)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None


class Notifier:
    """Sends sd_notify messages; silent when not started by systemd."""

    def __init__(self) -> None:
        self._enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self._enabled else None
        self.sent: list[str] = []  # the last messages, for the agent's own status page

    def send(self, message: str) -> None:
        self.sent = [*self.sent[-19:], message]
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self) -> None:
        self.send("READY=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text.replace(chr(10), ' ')}")

    def reloading(self) -> None:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    async def watchdog(self, making_progress: Callable[[], bool]) -> None:
        """Ping the watchdog at half its period while ``making_progress()`` holds."""
        interval = watchdog_interval()
        if interval is None:
            return
        log.info("watchdog enabled", ping_every=interval)
        while True:
            if making_progress():  # it logs which services are stuck when it says no
                self.send("WATCHDOG=1")
            await asyncio.sleep(interval)
