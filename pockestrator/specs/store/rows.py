"""How a stored row becomes a record (``records``, and the parts' own dataclasses).

A record's fields are named after the columns they are read from, so one reader serves
them all: each field takes the column of its name, read as the field's type says (a time
parsed, a flag as a bool, a JSON list or mapping loaded, a count as an int), and what is
not a plain column (a spec, a state worked out from the row) is given by the caller. The
accounts store reads its rows with it too.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pockestrator.database import Row, parse_iso, parse_stored_time

Record = TypeVar("Record")


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _raw(value: Any) -> Any:
    return value


# The types whose column value is the field's value as it comes (None where NULL).
_PLAIN = (str, int, float)


def _plain(hint: Any) -> bool:
    """Text, a number or one of a Literal's words, or None beside one of them."""
    if typing.get_origin(hint) is typing.Literal:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return len(kinds) == 1 and _plain(kinds[0])
    return hint in _PLAIN


def _given_only(cls: type[Any], name: str, hint: Any) -> Callable[[Any], Any]:
    """A field no column holds as its type (a spec, a part's own class): the caller gives
    it, and reading it from a row is a mistake caught at once, not a string passed on."""

    def refuse(_value: Any) -> Any:
        raise TypeError(f"{cls.__name__}.{name} ({hint}) is not read from a row: give it")

    return refuse


# The readers by the field's type; other plain types are the column's value as it comes.
_READERS: dict[Any, Callable[[Any], Any]] = {
    datetime: parse_stored_time,
    datetime | None: parse_iso,
    bool: bool,
    bool | None: _flag,
    int: int,
    tuple[str, ...]: lambda value: tuple(json.loads(value)),
    dict[str, Any]: json.loads,
}


_BY_RECORD: dict[type[Any], dict[str, Callable[[Any], Any]]] = {}


def _readers(cls: type[Any]) -> dict[str, Callable[[Any], Any]]:
    """Each field's reader, worked out once per record type."""
    if cls not in _BY_RECORD:
        hints = typing.get_type_hints(cls)
        _BY_RECORD[cls] = {
            field.name: _READERS.get(
                hint := hints[field.name],
                _raw if _plain(hint) else _given_only(cls, field.name, hint),
            )
            for field in dataclasses.fields(cls)
        }
    return _BY_RECORD[cls]


def record_of(cls: type[Record], row: Row, prefix: str = "", **given: Any) -> Record:
    """``cls`` (a dataclass) from ``row``: each field not ``given`` from the column of its
    name (after ``prefix``, for a table joined under aliases), read as its type says."""
    read = {
        name: reader(row[prefix + name])
        for name, reader in _readers(cls).items()
        if name not in given
    }
    return cls(**read, **given)
