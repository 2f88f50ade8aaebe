"""What the REST API may use of the running agent: a narrow, typed interface.

The agent starts the API and hands it an object with this shape; the API never drives
systemd jobs or writes host files itself. Writes go to the store and become reconciles
(``enqueue``); reads come from the store, systemd (``bus``) and the journal. Callers are
authenticated against the account store (``accounts``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pockestrator.accounts.store import AccountStore
from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy import CaddySites
from pockestrator.controllers.releases import ReleaseCache
from pockestrator.controllers.systemd_bus import SystemdBus
from pockestrator.specs.store import Store


class AgentContext(Protocol):
    @property
    def config(self) -> AgentConfig: ...

    @property
    def store(self) -> Store: ...

    @property
    def accounts(self) -> AccountStore: ...

    @property
    def bus(self) -> SystemdBus: ...

    @property
    def sites(self) -> CaddySites: ...

    @property
    def releases(self) -> ReleaseCache: ...

    @property
    def started_at(self) -> datetime:
        """When the agent started (UTC); uptime is measured from it."""
        ...

    def enqueue(self, name: str) -> None:
        """Ask for a reconcile of ``name`` (desired state changed)."""

    async def wait_reconciled(self, name: str, timeout: float) -> bool:
        """Wait until a reconcile of ``name`` that started after this call has finished."""
        ...

    async def restart_service(self, name: str) -> None:
        """A one-off restart (the desired state stays ``running``)."""

    def queue_depth(self) -> int:
        """Keys waiting to be reconciled now."""
        ...
