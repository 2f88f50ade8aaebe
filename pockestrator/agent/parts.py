"""What the reconciler and the runners it holds all reach for, bundled once.

The reconciler, its step runner, seeder, backup, deploy and move runners each need the
settings, the store, the controllers, the HTTP session, the clock and the metrics. They
share one ``Parts`` instead of each taking (and assigning) the same six arguments, and
since they share the object, the settings a SIGHUP brings (``Part.config = ...``) reach
every one of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import aiohttp

from pockestrator.agent.controllers import Controllers
from pockestrator.clock import SYSTEM_CLOCK, Clock
from pockestrator.config import AgentConfig
from pockestrator.specs.store import Store
from pockestrator.telemetry import AgentMetrics


@dataclass
class Parts:
    """The agent's pieces a reconcile uses; ``config`` is replaced whole on a SIGHUP."""

    config: AgentConfig
    store: Store
    controllers: Controllers
    session: aiohttp.ClientSession
    clock: Clock = SYSTEM_CLOCK
    metrics: AgentMetrics = field(default_factory=AgentMetrics)


class Part:
    """A holder of the shared ``Parts``: each of them but ``config`` under its own name."""

    store: Store
    controllers: Controllers
    session: aiohttp.ClientSession
    clock: Clock
    metrics: AgentMetrics

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        for shared in fields(Parts):
            if shared.name != "config":
                setattr(self, shared.name, getattr(parts, shared.name))

    @property
    def config(self) -> AgentConfig:
        """The current settings (every holder of these parts sees a replacement)."""
        return self.parts.config

    @config.setter
    def config(self, config: AgentConfig) -> None:
        self.parts.config = config
