"""The parts the reconciler's runners share: one settings replacement reaches them all."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from pockestrator.agent.parts import Part, Parts
from pockestrator.clock import SYSTEM_CLOCK
from pockestrator.config import AgentConfig


def _parts() -> Parts:
    placeholder = cast(Any, object())
    return Parts(AgentConfig(workers=2), placeholder, cast(Any, object()), placeholder)


def test_each_shared_part_but_the_settings_is_held_under_its_own_name() -> None:
    parts = _parts()
    held = Part(parts)
    assert held.store is parts.store
    assert held.controllers is parts.controllers
    assert held.session is parts.session
    assert held.clock is SYSTEM_CLOCK
    assert held.metrics is parts.metrics
    assert "config" not in vars(held)


def test_new_settings_given_to_one_holder_are_what_every_holder_reads() -> None:
    parts = _parts()
    reconciler, runner = Part(parts), Part(parts)
    replaced = AgentConfig(workers=3)
    reconciler.config = replaced
    assert runner.config is replaced
    assert parts.config is replaced


def test_every_shared_part_but_the_settings_is_declared_on_the_holder() -> None:
    shared = {part.name for part in dataclasses.fields(Parts)} - {"config"}
    assert set(Part.__annotations__) == shared
