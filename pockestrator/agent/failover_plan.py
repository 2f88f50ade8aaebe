"""Which services of lost nodes to bring up elsewhere now (``failover: auto``), and where:
a pure function of the fleet's nodes, its services and the moves under way.

A service fails over when its spec says ``failover: auto``, its node's lease ended at
least ``grace`` ago (a node that is only slow to renew is not failed over), and no move of
it is unfinished. It goes to the first live node, in name order, that does not hold its
port; the node deciding is tried first (it is alive: it is deciding). Several nodes may
decide the same at once: the store takes one move per service (a unique index under its
one writer), so one of them does it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class FailoverCandidate:
    name: str
    node: str
    port: int
    auto: bool


def failovers_due(
    services: Sequence[FailoverCandidate],
    lease_ended: Mapping[str, datetime],
    live: Sequence[str],
    here: str,
    grace: timedelta,
    now: datetime,
    moving: frozenset[str],
) -> list[tuple[str, str]]:
    """(service, target node) for every service to fail over now, in name order.

    ``lease_ended`` holds the lost nodes with when their lease ended; ``live`` the nodes
    whose lease runs."""
    ports = {(s.node, s.port) for s in services}
    order = [here, *sorted(n for n in live if n != here)] if here in live else sorted(live)
    due = []
    for service in sorted(services, key=lambda s: s.name):
        ended = lease_ended.get(service.node)
        if not service.auto or ended is None or service.name in moving:
            continue
        if now - ended < grace:
            continue
        target = next((n for n in order if (n, service.port) not in ports), None)
        if target is not None:
            due.append((service.name, target))
            ports.add((target, service.port))
    return due
