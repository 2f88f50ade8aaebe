"""Fleet routing: keeping this node's Caddy serving the services other nodes run.

With ``fleet_routing`` on, every service of another node gets a route site here
(``controllers.caddy.routes``) proxying to its node's Caddy; with it off (the default),
none, and any left from when it was on are removed. Event-driven: the store's notices
of a change to another node's service (LISTEN/NOTIFY: a service created, changed, deleted
or moved) wake one sync, and so does (re-)listening and the periodic resync, the safety
net for what no notice tells (a node that registered a new public address). Changes that
arrive while a sync runs are gathered into the next one.

Each sync computes every route from the store (``wanted_routes``, pure) and hands them,
with the removals, to the sites' ``Wave``: unchanged routes cost nothing, and a route
Caddy refuses is put back and logged without holding up the others.

Moves decide some routes whether routing is on or off (``agent.mover_routes``): a source
forwards a service it moved away for a while after the move (a timed sync drops the
forward when it lapses), and the sites a move in progress holds are left to the mover.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from datetime import timedelta

import structlog

from pockestrator.agent.mover_routes import MOVED_FORWARD_SECONDS, in_place_forward, move_sites
from pockestrator.clock import SYSTEM_CLOCK, Clock
from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy import CaddySites, SiteSettings
from pockestrator.controllers.caddy.render import SNIPPET_SUFFIX
from pockestrator.controllers.caddy.routes import is_route_key, render_route, route_key
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.store import NodeRecord, ServiceRecord, Store

log = structlog.get_logger("pockestrator.fleet.routing")


def wanted_routes(
    services: Iterable[ServiceRecord],
    nodes: Mapping[str, NodeRecord],
    this_node: str,
    settings: SiteSettings,
) -> tuple[dict[str, str], dict[str, str]]:
    """The route sites this node should serve (key -> text), and why a service has none
    (name -> reason) when its node cannot be routed to."""
    routes: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for record in services:
        if record.node in ("", this_node):
            continue
        owner = nodes.get(record.node)
        if owner is None or not owner.public_address:
            skipped[record.name] = f"node {record.node!r} registered no public address"
            continue
        try:
            routes[route_key(record.name)] = render_route(
                record.spec, record.node, owner.public_address, settings
            )
        except GrammarError as exc:
            skipped[record.name] = f"node {record.node!r}: {exc.message}"
    return routes, skipped


def routing_wave(
    routes: Mapping[str, str], on_disk: set[str], held: Iterable[str], own_sites: set[str]
) -> dict[str, str | None]:
    """The sites' wave of one sync: the wanted ``routes`` (key -> text), the routes
    ``on_disk`` no longer wanted removed, and what a move ``held`` left alone. A service
    whose own site is still here (``own_sites``: a move to this node that failed, before
    the reconciler took the stale copy away) gives its site up in the wave that writes its
    route: both serve its domain, and Caddy would refuse the route beside it."""
    kept = {route_key(name) for name in held}
    wanted = {key: text for key, text in routes.items() if key not in kept}
    wave: dict[str, str | None] = {**dict.fromkeys(on_disk - wanted.keys() - kept), **wanted}
    for name in own_sites:
        if route_key(name) in wanted:
            wave[name] = None
    return wave


class FleetRouting:
    """One sync at a time of this node's route sites with the store."""

    def __init__(
        self, config: AgentConfig, store: Store, sites: CaddySites, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._config = config
        self._store = store
        self._sites = sites
        self._clock = clock
        self._wanted = asyncio.Event()
        self._next_lapse: float | None = None  # a moved service's forward lapses then
        self.syncs = 0  # finished syncs (the tests wait on a change of it)

    def poke(self) -> None:
        """Ask for a sync soon (from the loop: a notice, a resync)."""
        self._wanted.set()

    async def run(self) -> None:
        self.poke()  # at start: what the store says now, or clean up when switched off
        while True:
            with contextlib.suppress(TimeoutError):  # a forward lapsed: the sync drops it
                await asyncio.wait_for(self._wanted.wait(), self._next_lapse)
            self._wanted.clear()
            try:
                await self.sync()
            except Exception as exc:  # the store away (PostgreSQL restarting): next notice
                log.warning("fleet routing sync failed", error=str(exc))
            self.syncs += 1

    def _routes_on_disk(self) -> set[str]:
        try:
            entries = list(self._sites.sites_dir.iterdir())
        except FileNotFoundError:
            return set()
        stems = {e.name[: -len(SNIPPET_SUFFIX)] for e in entries if e.name.endswith(SNIPPET_SUFFIX)}
        return {stem for stem in stems if is_route_key(stem)}

    async def sync(self) -> None:
        here, now = self._config.node, self._clock.now()
        since = now - timedelta(seconds=MOVED_FORWARD_SECONDS)
        moves = await asyncio.to_thread(self._store.moves_of_node, here, since)
        decided = move_sites(moves, here, now)
        self._next_lapse = decided.next_lapse
        services: list[ServiceRecord] = []
        if self._config.fleet_routing or decided.forwarded:
            services, _total = await asyncio.to_thread(self._store.list_services)
        if not self._config.fleet_routing:
            services = [s for s in services if s.name in decided.forwarded]
        routes: dict[str, str] = {}
        if services:
            nodes = {n.name: n for n in await asyncio.to_thread(self._store.list_nodes)}
            settings = SiteSettings.of(self._config, self._sites.public_ports())
            routes, skipped = wanted_routes(services, nodes, here, settings)
            for name, why in skipped.items():
                log.warning("no fleet route", service=name, why=why)
        own = {s.name for s in services if self._sites.snippet_path(s.name).exists()}
        # A forward kept in the own site (its upstream file names the owner: a move over
        # plain HTTP, ``agent.mover_sites``) is left alone until it lapses: writing the
        # route instead would be a config load, which drops what arrives meanwhile.
        in_place = {
            s.name
            for s in services
            if s.name in decided.forwarded and in_place_forward(self._config, s, own)
        }
        wave = routing_wave(routes, self._routes_on_disk(), decided.held | in_place, own)
        if not wave:
            return
        result = await self._sites.apply(wave)
        for key, error in result.errors.items():
            log.warning("fleet route refused by caddy", route=key, error=error[:300])
