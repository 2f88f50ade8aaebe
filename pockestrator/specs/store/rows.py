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


# The readers by the field's type; any other type is the column's value as it comes.
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
            field.name: _READERS.get(hints[field.name], _raw) for field in dataclasses.fields(cls)
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
