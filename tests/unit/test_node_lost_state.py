"""The state a service's answers show (api.views.service_state): node_lost wins over what
the status last recorded, and over sleeping; a service with no status yet is deploying."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pockestrator.api.views import service_state
from pockestrator.specs.store import ServiceStatus

ACTIVE = ServiceStatus(name="app", state="active")


@pytest.mark.parametrize(
    ("status", "asleep", "node_lost", "shown"),
    [
        (ACTIVE, False, False, "active"),
        (ACTIVE, True, False, "sleeping"),
        (ACTIVE, True, True, "node_lost"),
        (replace(ACTIVE, state="error"), False, True, "node_lost"),
        (None, False, False, "deploying"),
        (None, False, True, "node_lost"),
    ],
)
def test_a_lost_nodes_service_shows_node_lost_whatever_it_recorded(
    status: ServiceStatus | None, asleep: bool, node_lost: bool, shown: str
) -> None:
    assert service_state(status, asleep, node_lost) == shown
