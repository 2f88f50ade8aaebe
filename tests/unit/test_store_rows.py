"""``record_of``: a stored row read into a record by each field's type."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest

from pockestrator.specs.store.rows import record_of


@dataclass(frozen=True)
class Sample:
    id: int
    name: str
    at: datetime
    ended_at: datetime | None
    purge: bool
    healthy: bool | None
    tags: tuple[str, ...]
    details: dict[str, Any]
    pid: int | None
    share: float


ROW: dict[str, Any] = {
    "id": 7,
    "name": "shop",
    "at": "2026-01-02T03:04:05Z",
    "ended_at": None,
    "purge": 1,
    "healthy": None,
    "tags": '["a", "b"]',
    "details": '{"k": 1}',
    "pid": None,
    "share": 0.5,
    "unrelated": "ignored",
}


def test_each_field_is_read_from_its_column_as_its_type_says() -> None:
    assert record_of(Sample, ROW) == Sample(
        id=7,
        name="shop",
        at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        ended_at=None,
        purge=True,
        healthy=None,
        tags=("a", "b"),
        details={"k": 1},
        pid=None,
        share=0.5,
    )


@pytest.mark.parametrize(
    ("column", "stored", "read"),
    [
        ("ended_at", "2026-01-02T03:04:05+00:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("purge", 0, False),
        ("healthy", 0, False),
        ("healthy", 1, True),
        ("id", "12", 12),
        ("pid", 42, 42),
    ],
)
def test_a_column_value_is_converted_by_the_field_type(column: str, stored: Any, read: Any) -> None:
    value = getattr(record_of(Sample, {**ROW, column: stored}), column)
    assert value == read
    assert type(value) is type(read)


def test_given_fields_are_not_read_from_the_row() -> None:
    row = {key: value for key, value in ROW.items() if key != "details"}
    assert record_of(Sample, row, details={"given": True}).details == {"given": True}


def test_a_prefix_reads_columns_joined_under_aliases() -> None:
    joined = {f"e_{key}": value for key, value in ROW.items()}
    assert record_of(Sample, joined, "e_", id=3) == record_of(Sample, {**ROW, "id": 3})


def test_a_missing_column_is_an_error_not_a_default() -> None:
    row = {key: value for key, value in ROW.items() if key != "name"}
    with pytest.raises(KeyError):
        record_of(Sample, row)


@dataclass(frozen=True)
class WithParts:
    name: str
    path: Path
    kind: Literal["a", "b"] | None
    extra: tuple[int, ...] | None


def test_a_field_of_a_type_no_column_holds_must_be_given() -> None:
    row = {"name": "shop", "path": "/srv/shop", "kind": "a", "extra": "[1]"}
    with pytest.raises(TypeError, match=r"WithParts\.path .* is not read from a row"):
        record_of(WithParts, row)
    with pytest.raises(TypeError, match=r"WithParts\.extra"):
        record_of(WithParts, row, path=Path("/srv/shop"))
    record = record_of(WithParts, row, path=Path("/srv/shop"), extra=(1,))
    assert record == WithParts("shop", Path("/srv/shop"), "a", (1,))
