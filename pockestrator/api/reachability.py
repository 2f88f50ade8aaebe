"""Does a domain point at this host? The answer behind the ``DOMAIN_UNREACHABLE`` warning.

The name is resolved with a short timeout (an offline host or a slow resolver only costs
that long, and then simply warns), and each address it resolves to is tested by binding a
socket to it: only an address of one of this host's interfaces can be bound. A host behind
NAT, reached through a public address it does not hold, gets the warning too, which is why
it is a warning ("may not be reachable") and never an error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

RESOLVE_TIMEOUT = 1.5


def is_local_address(address: str) -> bool:
    """True when ``address`` belongs to this host (loopback, or bindable here)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if ip.is_unspecified or ip.is_multicast:
        return False
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


async def resolves_here(domain: str, timeout: float = RESOLVE_TIMEOUT) -> bool:
    """True when ``domain`` resolves (within ``timeout``) to an address of this host."""
    loop = asyncio.get_running_loop()
    try:
        answers = await asyncio.wait_for(
            loop.getaddrinfo(domain, None, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, TimeoutError, UnicodeError):
        return False
    return any(is_local_address(str(answer[4][0])) for answer in answers)
