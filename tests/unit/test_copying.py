"""``specs.copying.copied``: a value from another's attributes of the same names."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from pockestrator.specs.copying import copied, field_names


class Shown(BaseModel):
    id: int
    name: str
    revoked: bool = False


@dataclass(frozen=True)
class Kept:
    id: int
    name: str
    seen: int = field(default=0, init=False)


def test_a_model_takes_each_field_from_the_attribute_of_its_name() -> None:
    source = SimpleNamespace(id=7, name="a", revoked=True, other="not a field")
    assert copied(Shown, source) == Shown(id=7, name="a", revoked=True)


def test_a_given_field_wins_over_the_sources_attribute() -> None:
    source = SimpleNamespace(id=7, name="a", revoked=True)
    assert copied(Shown, source, revoked=False, name="b") == Shown(id=7, name="b")


def test_a_dataclass_is_made_from_its_init_fields_only() -> None:
    assert field_names(Kept) == ("id", "name")
    assert copied(Kept, SimpleNamespace(id=1, name="x")) == Kept(1, "x")


def test_a_field_the_source_lacks_is_an_error_not_its_default() -> None:
    with pytest.raises(AttributeError, match="revoked"):
        copied(Shown, SimpleNamespace(id=7, name="a"))


def test_a_kind_that_is_neither_model_nor_dataclass_is_refused() -> None:
    with pytest.raises(TypeError, match="neither"):
        field_names(dict)
