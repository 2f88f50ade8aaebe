"""Which of a node's Caddy sites its services' moves decide (pure): the forward a source
keeps after a move, and the sites a move in progress holds.

A request for a moving service may reach the source's Caddy until DNS points at the
target. So the source's cutover points the service's site at the target's Caddy before it
stops the instance (Host kept: on a fleet node over plain HTTP by its upstream file, the
site kept and no config load; with HTTPS the site gives way to a route,
``_route-<name>``: ``controllers.caddy.routes``), and the target, at the end of its
health gate, has already written a site that holds requests (``proxy.hold_requests``)
until its instance listens. A request that
arrives during the switch is held by the target's Caddy and answered there, from the
final snapshot on. The source keeps the forward for ``MOVED_FORWARD_SECONDS`` after the
move is done, fleet routing or not, then drops it (DNS must point at the target by
then; a forward kept in the own site goes at the first reconcile after it lapsed).

A move from a backup has no forward: its source was lost, and a node that returns serves
nothing of a service that moved away.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy.upstreams import upstream_dir
from pockestrator.specs.public_url import tls_mode
from pockestrator.specs.store import Move, ServiceRecord

# How long a source's Caddy forwards a moved service's requests to its new node: a day,
# well beyond the TTL a domain is usually given, so DNS has moved before it lapses.
MOVED_FORWARD_SECONDS = 24 * 3600.0
# A move in these states has sites the mover wrote and fleet routing leaves alone: the
# target's holding site (its health gate, then the cutover) and the source's forward
# (written at the cutover's start, before the stop).
HELD_STATES = frozenset({"staged", "verified"})


@dataclass(frozen=True)
class MoveSites:
    forwarded: frozenset[str]  # services this node forwards to the node they moved to
    held: frozenset[str]  # services whose sites here a move in progress holds
    next_lapse: float | None  # seconds until a forward lapses (None: none will)


def move_sites(moves: Iterable[Move], here: str, now: datetime) -> MoveSites:
    """What ``moves`` (the unfinished ones, and those finished within the forward's time)
    decide of node ``here``'s sites at ``now``."""
    keep = timedelta(seconds=MOVED_FORWARD_SECONDS)
    forwarded: set[str] = set()
    held: set[str] = set()
    lapses: list[float] = []
    for move in moves:
        if here not in (move.source, move.target):
            continue
        if move.pending and move.state in HELD_STATES:
            held.add(move.service)
            continue
        if move.source != here or move.from_backup:
            continue
        if move.pending and move.state == "switched":
            forwarded.add(move.service)
        elif move.state == "done" and move.finished_at is not None:
            left = (move.finished_at + keep - now).total_seconds()
            if left > 0:
                forwarded.add(move.service)
                lapses.append(left)
    # A later move of the same service (back here) is its own: it holds or it does not.
    forwarded -= held
    return MoveSites(frozenset(forwarded), frozenset(held), min(lapses, default=None))


def in_place_forward(config: AgentConfig, record: ServiceRecord, own_sites: set[str]) -> bool:
    """Whether node ``config.node`` forwards ``record`` by its own site, kept, whose
    upstream file names the target (a fleet node, plain HTTP between the Caddies:
    ``agent.mover_sites``), rather than by a route; ``own_sites``: the sites it has."""
    if record.name not in own_sites or upstream_dir(config) is None:
        return False
    return tls_mode(record.spec, config.caddy_tls) == "off"
