"""Ports for a sandbox's services and servers: below Linux's ephemeral range, never handed
out twice by one process, and a share of the range per process when one is set.

A port the kernel picks for ``bind(port 0)`` comes from the ephemeral range (32768-60999
by default), the same one it takes outgoing connections' source ports and every other
process's port-0 binds from. A service given such a port and then stopped for a while
could find it taken when it starts again: its PocketBase cannot bind, or the agent's
requests to it reach another process's server. Below that range nothing is handed out by
the kernel, and a cursor that only moves forward does not give a stopped service's port
to the next one.

The range is 20000-32767 unless the machine's ephemeral range
(``net.ipv4.ip_local_port_range``) reaches into it; then it is the wider free span below
or above that range (``ports_outside``).

``POCKESTRATOR_SANDBOX_PORTS=LOW-HIGH`` sets this process's share (the test suite gives
each of its parallel workers one of its own); without it the whole default range is used,
from a start spread by the process id.
"""

from __future__ import annotations

import os
import socket
import threading

PORTS_VARIABLE = "POCKESTRATOR_SANDBOX_PORTS"
PREFERRED_PORTS = (20000, 32768)  # [low, high): below the kernel's default ephemeral range
# A free span narrower than this is no use (the suite splits it between its workers).
SPAN_MIN = 4096
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


class PortRangeError(ValueError):
    """The share named by ``POCKESTRATOR_SANDBOX_PORTS`` is not LOW-HIGH within 1024-65535."""


def ports_outside(ephemeral: tuple[int, int]) -> tuple[int, int]:
    """[low, high) for the sandbox, given the kernel's ephemeral range (inclusive, as the
    kernel writes it): the preferred range when they do not meet; else the wider free span
    below or above it (at most as wide as the preferred); the preferred range when neither
    span is ``SPAN_MIN`` wide (then they share ports, as before)."""
    low, high = PREFERRED_PORTS
    first, last = ephemeral
    if last < low or first >= high:
        return PREFERRED_PORTS
    width = high - low
    below = (max(1024, first - width), first)
    above = (last + 1, min(65536, last + 1 + width))
    wider = max(below, above, key=lambda span: span[1] - span[0])
    return wider if wider[1] - wider[0] >= SPAN_MIN else PREFERRED_PORTS


def default_ports() -> tuple[int, int]:
    """The sandbox range on this machine (``ports_outside`` its ephemeral range)."""
    try:
        with open(EPHEMERAL_RANGE_FILE) as file:
            first, last = (int(part) for part in file.read().split())
    except (OSError, ValueError):
        return PREFERRED_PORTS
    return ports_outside((first, last))


def port_share(text: str | None) -> tuple[int, int]:
    """[low, high) from ``LOW-HIGH`` (inclusive HIGH, as people write ranges); the default
    range for None or empty."""
    if not text:
        return default_ports()
    low_text, dash, high_text = text.strip().partition("-")
    if not (dash and low_text.isdigit() and high_text.isdigit()):
        raise PortRangeError(f"{PORTS_VARIABLE} must be LOW-HIGH, not {text!r}")
    low, high = int(low_text), int(high_text)
    if not 1024 <= low <= high <= 65535:
        raise PortRangeError(f"{PORTS_VARIABLE} must lie within 1024-65535, low first: {text!r}")
    return low, high + 1


class PortCursor:
    """Hands out the ports of one share in turn, skipping any bound right now."""

    def __init__(self, low: int, high: int, start: int) -> None:
        self.low, self.high = low, high
        self._next = low + (start - low) % (high - low)
        self._lock = threading.Lock()

    def take(self, host: str = "127.0.0.1") -> int:
        with self._lock:
            for _ in range(self.high - self.low):
                port = self._next
                self._next = port + 1 if port + 1 < self.high else self.low
                if _bindable(host, port):
                    return port
        raise OSError(f"no free port left in {self.low}-{self.high - 1} on {host}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


_cursor: PortCursor | None = None
_cursor_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing is bound to right now, from this process's share (see above)."""
    global _cursor
    with _cursor_lock:
        if _cursor is None:
            low, high = port_share(os.environ.get(PORTS_VARIABLE))
            _cursor = PortCursor(low, high, low + os.getpid() * 7919)
        cursor = _cursor
    return cursor.take(host)
