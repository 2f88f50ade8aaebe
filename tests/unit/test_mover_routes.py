"""Which sites a node's moves decide: the source's forward after a move, for how long, and
the sites a move in progress holds (agent.mover_routes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pockestrator.agent.fleet_routing import routing_wave
from pockestrator.agent.mover_routes import MOVED_FORWARD_SECONDS, MoveSites, move_sites
from pockestrator.specs.store import Move

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
KEEP = timedelta(seconds=MOVED_FORWARD_SECONDS)


def move(
    state: str,
    *,
    service: str = "app",
    source: str = "alpha",
    target: str = "beta",
    from_backup: bool = False,
    finished: timedelta | None = None,
) -> Move:
    """A move of ``service`` in ``state``, finished ``finished`` before NOW (if it is)."""
    return Move(
        id=1,
        service=service,
        source=source,
        target=target,
        from_backup=from_backup,
        state=state,  # type: ignore[arg-type]
        snapshot="s1",
        final_snapshot="s2",
        requested_at=NOW - timedelta(hours=30),
        requested_by="test",
        updated_at=NOW,
        finished_at=None if finished is None else NOW - finished,
        error=None,
    )


NOTHING = MoveSites(frozenset(), frozenset(), None)
FORWARDED = MoveSites(frozenset({"app"}), frozenset(), None)
HELD = MoveSites(frozenset(), frozenset({"app"}), None)


@pytest.mark.parametrize(
    ("moves", "here", "expected"),
    [
        # Before the cutover the source's site is its own; the target holds nothing yet.
        ([move("requested")], "alpha", NOTHING),
        ([move("requested")], "beta", NOTHING),
        # The target's health gate, then the cutover: the mover's sites, on both nodes.
        ([move("staged")], "beta", HELD),
        ([move("verified")], "beta", HELD),
        ([move("verified")], "alpha", HELD),
        # Switched: the source forwards while the target boots; the target runs it.
        ([move("switched")], "alpha", FORWARDED),
        ([move("switched")], "beta", NOTHING),
        # Done: forwarded for MOVED_FORWARD_SECONDS after, then not.
        (
            [move("done", finished=timedelta(hours=1))],
            "alpha",
            MoveSites(frozenset({"app"}), frozenset(), (KEEP - timedelta(hours=1)).total_seconds()),
        ),
        ([move("done", finished=KEEP)], "alpha", NOTHING),
        ([move("done", finished=KEEP + timedelta(seconds=1))], "alpha", NOTHING),
        # Nothing to forward when it never left, or when its source was lost.
        ([move("failed", finished=timedelta(0))], "alpha", NOTHING),
        ([move("rolled_back", finished=timedelta(0))], "alpha", NOTHING),
        ([move("done", from_backup=True, finished=timedelta(minutes=1))], "alpha", NOTHING),
        ([move("switched", from_backup=True)], "alpha", NOTHING),
        # A third node's move is none of this node's.
        ([move("switched", source="beta", target="gamma")], "alpha", NOTHING),
        # Moved away, then back: the move back holds the sites, not the old forward.
        (
            [
                move("done", finished=timedelta(hours=2)),
                move("verified", source="beta", target="alpha"),
            ],
            "alpha",
            MoveSites(frozenset(), frozenset({"app"}), (KEEP - timedelta(hours=2)).total_seconds()),
        ),
    ],
)
def test_a_nodes_moves_decide_its_forwards_and_held_sites(
    moves: list[Move], here: str, expected: MoveSites
) -> None:
    assert move_sites(moves, here, NOW) == expected


def test_the_soonest_lapse_is_when_the_next_sync_drops_a_forward() -> None:
    moves = [
        move("done", service="old", finished=timedelta(hours=20)),
        move("done", service="new", finished=timedelta(hours=1)),
    ]
    decided = move_sites(moves, "alpha", NOW)
    assert decided.forwarded == {"old", "new"}
    assert decided.next_lapse == timedelta(hours=4).total_seconds()


@pytest.mark.parametrize(
    ("routes", "on_disk", "held", "own", "wave"),
    [
        # Wanted routes written; one no longer wanted removed.
        ({"_route-a": "A"}, {"_route-old"}, set(), set(), {"_route-a": "A", "_route-old": None}),
        # A move's sites are the mover's: neither written nor removed here.
        ({"_route-a": "A"}, {"_route-b"}, {"a", "b"}, set(), {}),
        # A failed move's holding site gives way to the route, in the same wave.
        ({"_route-a": "A"}, set(), set(), {"a"}, {"_route-a": "A", "a": None}),
        # ... but a site with no route wanted (this node's own service) stays.
        ({}, set(), set(), {"a"}, {}),
        ({"_route-a": "A"}, set(), {"a"}, {"a"}, {}),
    ],
)
def test_a_routing_sync_writes_wanted_routes_and_leaves_a_moves_sites_alone(
    routes: dict[str, str],
    on_disk: set[str],
    held: set[str],
    own: set[str],
    wave: dict[str, str | None],
) -> None:
    assert routing_wave(routes, on_disk, held, own) == wave
