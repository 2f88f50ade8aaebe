"""One value made from another's attributes of the same names.

The API's views, the host view's answers and the snapshot manifest each turn a record
into a model or a dataclass whose fields mostly carry the record's own names; ``copied``
says that once, so each of them names only what it renames or computes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


def field_names(kind: type[Any]) -> tuple[str, ...]:
    """The fields a pydantic model or a dataclass is made with."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return tuple(kind.model_fields)
    if dataclasses.is_dataclass(kind):
        return tuple(f.name for f in dataclasses.fields(kind) if f.init)
    raise TypeError(f"{kind.__name__} is neither a pydantic model nor a dataclass")


def copied(kind: type[T], source: object, /, **given: Any) -> T:
    """A ``kind`` with ``given`` fields as given and every other one taken from
    ``source``'s attribute of that name (an attribute it lacks is an error, never a
    silent default: a renamed field must be given)."""
    values = {name: getattr(source, name) for name in field_names(kind) if name not in given}
    return kind(**values, **given)
