"""How the API tells who calls it: bearer tokens, and password checks off the event loop.

Two kinds of bearer token, both kept in the account store only as SHA-256 hashes
(``pockestrator.accounts``):
- API tokens (``pks_...``) for scripts and the CLI: long-lived, named, revocable; created
  with ``AccountStore.create_token`` (by ``pockestrator up``, the CLI or ``POST /tokens``).
- Sessions (``pkss_...``) for the dashboard: ``POST /auth/login`` with an admin's e-mail
  and password returns one that expires after ``SESSION_TTL``.

Failed logins are throttled per e-mail and client address, and per client address
(``accounts.throttle``): a refused attempt is answered 429 with ``Retry-After`` and its
password is not even checked; the server never sleeps on a request. The client address
is the TCP peer (``client_address``), or what a configured trusted proxy says it is.
Hashing (Argon2id, ``accounts.passwords``) runs in worker threads, at most
``HASH_CONCURRENCY`` at a time, so a burst of logins cannot pin the event loop or take all
the memory.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from pockestrator.accounts.passwords import (
    DEFAULT_HASHING,
    hash_password,
    needs_rehash,
    verify_password,
)
from pockestrator.config.agent import PasswordHashing

SESSION_TTL = timedelta(hours=12)
HASH_CONCURRENCY = 2

_BEARER = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}", re.ASCII)


@dataclass(frozen=True)
class Principal:
    """The caller of one request: an API token, an admin's dashboard session, or an
    operator on the local socket (``api.peers``; its ``bearer`` is empty)."""

    kind: Literal["token", "session", "local"]
    id: str
    name: str
    bearer: str = field(repr=False)


class PasswordChecks:
    """Hashing (with the configured parameters) and verifying in worker threads, at most
    ``concurrency`` at a time."""

    def __init__(
        self, concurrency: int = HASH_CONCURRENCY, hashing: PasswordHashing = DEFAULT_HASHING
    ) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self.hashing: PasswordHashing = hashing
        # Made now, once, so that no unknown account, not even the first, pays for it.
        self._dummy_hash = hash_password("no such account", hashing)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """``verify_password`` off the loop; an unknown account (None) costs the same
        check, against a hash of the same parameters, and is never right."""
        async with self._slots:
            if password_hash is None:
                await asyncio.to_thread(verify_password, self._dummy_hash, password)
                return False
            return await asyncio.to_thread(verify_password, password_hash, password)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(hash_password, password, self.hashing)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a stored hash was made otherwise than this API hashes now."""
        return needs_rehash(password_hash, self.hashing)


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client never retries too early."""
    return str(max(1, math.ceil(seconds)))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _BEARER.fullmatch(token):
        return None
    return token


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted_proxies: tuple[str, ...]
) -> str:
    """The address a login counts under: the TCP peer, unless it is a trusted proxy.

    From a trusted proxy, ``X-Forwarded-For`` is read from the right (each proxy appends
    the address it was reached from) past every trusted proxy: the first address that is
    not one is the client. Anything to its left was written by the client and proves
    nothing; an entry that is no address ends the walk at the proxy that passed it on.
    An IPv6 client counts by its /64, the block one host is usually given; an IPv4 client
    reached over IPv6 (``::ffff:a.b.c.d``) by its IPv4 address. A peer that is no IP
    address (none, on a Unix socket) counts as ``local``.
    """
    address = _ip(peer)
    if address is None:
        return "local"
    networks = _networks(trusted_proxies)
    if _within(address, networks):
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            parsed = _ip(hop)
            if parsed is None:
                break
            address = parsed
            if not _within(parsed, networks):
                break
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=8)
def _networks(trusted_proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """The configured networks, parsed once (``AgentConfig`` has checked them)."""
    return tuple(ipaddress.ip_network(entry) for entry in trusted_proxies)


def _within(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: tuple[IPNetwork, ...]
) -> bool:
    return any(address in network for network in networks)
