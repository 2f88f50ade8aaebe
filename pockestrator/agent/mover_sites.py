"""The Caddy sites a move writes on its two nodes, so that a request held during the
switch is answered by the target (``agent.mover_routes`` says why and for how long).

- ``hold_here`` (the target, at the end of its health gate): the service's own site,
  holding requests (``proxy.hold_requests``) until its instance listens here; a fleet
  route this node had for it goes in the same wave, since both serve its domain.
- ``forward`` (the source, at the cutover's start, before the stop): its requests go to
  the target's Caddy, Host kept. On a fleet node over plain HTTP that is the service's
  upstream file rewritten (``controllers.caddy.upstreams``), with no Caddy config load:
  a load's old server closes, unanswered, a connection it had just accepted, so a
  forward loaded there dropped the requests arriving at that moment. The site stays (it
  is the forward until it lapses, ``agent.mover_routes``). With HTTPS between the nodes
  the site gives way to a route (``controllers.caddy.routes``) in one wave, so no
  request meets a domain with no site.
- ``serve_here`` (the source, when the cutover fails before the switch): the site back,
  its upstream this node's instance again.
- ``point_here``: a service that runs here has its upstream file name its own port
  (every reconcile: a rolled-back move leaves the source's file naming the target).
- ``let_go``: a service removed from this node takes its upstream file with it.

A wave Caddy refuses raises ``MoveFailed``, so a move never switches with the source's
requests going nowhere.
"""

from __future__ import annotations

from collections.abc import Callable

from pockestrator.agent.mover_routes import in_place_forward
from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy import CaddySites, SiteSettings, render_site
from pockestrator.controllers.caddy.routes import checked_upstream, render_route, route_key
from pockestrator.controllers.caddy.upstreams import (
    local_upstream,
    read_upstream,
    remove_upstream,
    upstream_dir,
    write_upstream,
)
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

    def point_here(self, record: ServiceRecord) -> bool:
        """The service's upstream file (a fleet node's) names its port here; whether it
        had to be rewritten."""
        directory = upstream_dir(self._config())
        if directory is None:
            return False
        return write_upstream(directory, record.name, local_upstream(record.spec.port))

    def undo_forward(self, record: ServiceRecord) -> bool:
        """At a reconcile's start: a file that names no instance here (a rolled-back move's
        forward, or no file yet) is pointed here. A new port is left to ``point_here``
        after the plan's start, so Caddy never dials it before the instance listens there
        (or while another one still does)."""
        directory = upstream_dir(self._config())
        if directory is None:
            return False
        current = read_upstream(directory, record.name)
        if current is not None and current.startswith("127.0.0.1:"):
            return False
        return self.point_here(record)

    def let_go(self, name: str) -> None:
        """A fleet node's upstream file of a service whose site is gone (removed here, or
        replaced by a route): nothing reads it now."""
        directory = upstream_dir(self._config())
        if directory is not None:
            remove_upstream(directory, name)

    async def hold_here(self, record: ServiceRecord) -> None:
        self.point_here(record)  # before the site that reads it
        wave = {record.name: self._own_site(record), route_key(record.name): None}
        await self._apply(record.name, wave, "holding site")

    async def serve_here(self, record: ServiceRecord) -> None:
        await self.hold_here(record)

    async def forward(self, record: ServiceRecord, target: str) -> None:
        node = self.store.get_node(target)
        if node is None or not node.public_address:
            raise MoveFailed(f"node {target} registered no public address to forward to")
        settings = self._settings()
        if self.forwards_in_place(record):
            assert settings.upstream_dir is not None
            host, port = checked_upstream(node.public_address)
            write_upstream(settings.upstream_dir, record.name, f"{host}:{port or 80}")
            return
        text = render_route(record.spec, target, node.public_address, settings)
        wave = {record.name: None, route_key(record.name): text}
        await self._apply(record.name, wave, "forward to " + target)

    def forwards_in_place(self, record: ServiceRecord) -> bool:
        """Whether this node forwards ``record`` by its upstream file, its site kept,
        rather than by a route (``mover_routes.in_place_forward``)."""
        own = {record.name} if self.sites.snippet_path(record.name).exists() else set()
        return in_place_forward(self._config(), record, own)
