"""The Caddy sites a move writes on its two nodes, so that a request held during the
switch is answered by the target (``agent.mover_routes`` says why and for how long).

- ``hold_here`` (the target, at the end of its health gate): the service's own site,
  holding requests (``proxy.hold_requests``) until its instance listens here; a fleet
  route this node had for it goes in the same wave, since both serve its domain.
- ``forward`` (the source, at the cutover's start, before the stop): the site gives way
  to a route to the target's Caddy, Host kept, in one wave, so no request meets a
  domain with no site.
- ``serve_here`` (the source, when the cutover fails before the switch): the site back.

A wave Caddy refuses raises ``MoveFailed``, so a move never switches with the source's
requests going nowhere.
"""

from __future__ import annotations

from collections.abc import Callable

from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy import CaddySites, SiteSettings, render_site
from pockestrator.controllers.caddy.routes import render_route, route_key
from pockestrator.specs.store import ServiceRecord, Store


class MoveFailed(Exception):
    pass


class MoveSites:
    def __init__(self, config: Callable[[], AgentConfig], store: Store, sites: CaddySites) -> None:
        self._config = config
        self.store = store
        self.sites = sites

    def _settings(self) -> SiteSettings:
        return SiteSettings.of(self._config(), self.sites.public_ports())

    async def _apply(self, name: str, wave: dict[str, str | None], what: str) -> None:
        result = await self.sites.apply(wave)
        if not result.ok:
            errors = "; ".join(f"{key}: {error[:300]}" for key, error in result.errors.items())
            raise MoveFailed(f"Caddy refused {name}'s {what} on {self._config().node}: {errors}")

    def _own_site(self, record: ServiceRecord) -> str:
        running = record.desired_state == "running"
        return render_site(record.spec, self._settings(), running=running)

    async def hold_here(self, record: ServiceRecord) -> None:
        wave = {record.name: self._own_site(record), route_key(record.name): None}
        await self._apply(record.name, wave, "holding site")

    async def serve_here(self, record: ServiceRecord) -> None:
        await self.hold_here(record)

    async def forward(self, record: ServiceRecord, target: str) -> None:
        node = self.store.get_node(target)
        if node is None or not node.public_address:
            raise MoveFailed(f"node {target} registered no public address to forward to")
        text = render_route(record.spec, target, node.public_address, self._settings())
        wave = {record.name: None, route_key(record.name): text}
        await self._apply(record.name, wave, "forward to " + target)
