"""``api.paging.older_page``: a newest-first page before a cursor, and the next one's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pockestrator.api.paging import older_page


@dataclass(frozen=True)
class Row:
    id: int


ROWS = [Row(i) for i in range(10, 0, -1)]  # newest first, as the store answers


def fetch(*, limit: int, before: int | None) -> Sequence[Row]:
    return [row for row in ROWS if before is None or row.id < before][:limit]


def test_the_first_page_is_the_newest_and_says_where_the_next_starts() -> None:
    page = older_page(fetch, 4, None)
    assert [row.id for row in page.rows] == [10, 9, 8, 7]
    assert (page.older, page.cursor) == (7, "7")


def test_a_cursor_pages_back_from_its_id() -> None:
    assert [row.id for row in older_page(fetch, 4, "7").rows] == [6, 5, 4, 3]


def test_a_cursor_wins_over_before() -> None:
    assert [row.id for row in older_page(fetch, 2, "5", before=9).rows] == [4, 3]
    assert [row.id for row in older_page(fetch, 2, None, before=9).rows] == [8, 7]


def test_a_full_last_page_says_there_is_nothing_older() -> None:
    page = older_page(fetch, 3, "4")
    assert [row.id for row in page.rows] == [3, 2, 1]
    assert (page.older, page.cursor) == (None, None)


def test_an_empty_store_is_one_empty_last_page() -> None:
    page = older_page(lambda *, limit, before: [], 5, None)
    assert (page.rows, page.cursor) == ([], None)
