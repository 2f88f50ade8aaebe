"""Which plans send their unit's enable together with its start (``agent.apply``)."""

from __future__ import annotations

import pytest

from pockestrator.agent.apply import enables_then_starts
from pockestrator.agent.plan.model import Plan
from pockestrator.agent.steps import (
    CreateSuperuser,
    DisableUnit,
    EnableUnit,
    LoadNewUnit,
    RestartUnit,
    StartUnit,
    StopUnit,
    WriteSite,
    WriteUnit,
)

NEW = (WriteUnit("unit"), LoadNewUnit(), EnableUnit())


@pytest.mark.parametrize(
    ("plan", "together"),
    [
        # A new service: written, enabled, started (its superuser made between them).
        (Plan("a", prepare=NEW, run=(StartUnit(reset_failed=False),)), True),
        (Plan("a", prepare=(*NEW, CreateSuperuser("a@b.cd")), run=(StartUnit(),)), True),
        (Plan("a", prepare=(EnableUnit(),), run=(StartUnit(),), route=(WriteSite("s"),)), True),
        # Enabled while it runs: no start to send it with.
        (Plan("a", prepare=(EnableUnit(),)), False),
        (Plan("a", prepare=(EnableUnit(),), run=(RestartUnit("health"),)), False),
        # Started without an enable, or stopped and disabled.
        (Plan("a", run=(StartUnit(),)), False),
        (Plan("a", prepare=(DisableUnit(),), run=(StopUnit(),)), False),
    ],
)
def test_only_a_plan_that_enables_and_then_starts_sends_both_at_once(
    plan: Plan, together: bool
) -> None:
    assert enables_then_starts(plan) is together
