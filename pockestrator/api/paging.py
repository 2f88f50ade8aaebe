"""One pagination style for every list: ``limit``, a ``cursor``, ``next`` and ``Link``.

Each list answers ``next`` (null on the last page) and, when there is a next page, a
``Link: <...>; rel="next"`` header (RFC 8288) whose URL is this request's with ``cursor``
set to it, so a client follows pages without knowing how a cursor is made. A cursor is
opaque to clients; here it is where the next page starts (an offset, or for events the
id the next, older page comes before). ``/services`` keeps the reference's ``limit``,
``offset`` and ``total``; a ``cursor`` there wins over ``offset``. A ``limit`` above
``LIST_LIMIT_MAX`` is a 400 like any other bad value, not a smaller page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from aiohttp import web

Item = TypeVar("Item")


def next_link(request: web.Request, cursor: str) -> str:
    """The Link header of the page after this one: this URL, ``cursor`` replaced."""
    query = {key: value for key, value in request.query.items() if key not in ("cursor", "offset")}
    url = request.rel_url.with_query({**query, "cursor": cursor})
    return f'<{url}>; rel="next"'


def with_next(response: web.Response, request: web.Request, cursor: str | None) -> web.Response:
    if cursor is not None:
        response.headers["Link"] = next_link(request, cursor)
    return response


def page_of(items: Sequence[Item], limit: int, cursor: str | None) -> tuple[list[Item], str | None]:
    """One page of an in-memory list, and the cursor of the next (None on the last)."""
    start = int(cursor) if cursor is not None else 0
    chosen = list(items[start : start + limit])
    after = start + len(chosen)
    return chosen, (str(after) if after < len(items) and chosen else None)


class HasId(Protocol):
    """A row with an id that grows with time (events, deliveries)."""

    @property
    def id(self) -> int: ...


Row = TypeVar("Row", bound=HasId)
Fetched = TypeVar("Fetched", bound=HasId, covariant=True)


class FetchOlder(Protocol[Fetched]):
    """The store's newest-first read: at most ``limit`` rows, all older than ``before``."""

    def __call__(self, *, limit: int, before: int | None) -> Sequence[Fetched]: ...


@dataclass(frozen=True)
class OlderPage(Generic[Row]):
    """A newest-first page: its rows, and the id the next, older page comes before (None
    on the last), which as text is the ``cursor`` that asks for that page."""

    rows: list[Row]
    older: int | None

    @property
    def cursor(self) -> str | None:
        return str(self.older) if self.older is not None else None


def older_page(
    fetch: FetchOlder[Row],
    limit: int,
    cursor: str | None,
    before: int | None = None,
) -> OlderPage[Row]:
    """The page before ``cursor`` (else before ``before``; neither: the newest), fetched
    with one row more than ``limit`` so that a full last page says there is nothing older."""
    fetched = fetch(limit=limit + 1, before=int(cursor) if cursor is not None else before)
    rows = list(fetched[:limit])
    return OlderPage(rows, rows[-1].id if len(fetched) > limit else None)
