"""failover: auto, decided (agent.failover_plan): after the grace, the services that ask
for it, to a live node whose port is free, once per service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pockestrator.agent.failover_plan import FailoverCandidate, failovers_due

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
GRACE = timedelta(minutes=5)


def due(
    services: list[FailoverCandidate],
    ended_ago: timedelta = timedelta(minutes=6),
    live: tuple[str, ...] = ("a", "c"),
    moving: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    return failovers_due(services, {"b": NOW - ended_ago}, live, "c", GRACE, NOW, moving)


def test_a_lost_nodes_auto_services_go_to_the_deciding_node_after_the_grace() -> None:
    services = [
        FailoverCandidate("shop", "b", 9001, True),
        FailoverCandidate("blog", "b", 9002, False),  # failover: off
        FailoverCandidate("wiki", "a", 9003, True),  # its node is alive
    ]
    assert due(services) == [("shop", "c")]


def test_within_the_grace_nothing_fails_over() -> None:
    assert due([FailoverCandidate("shop", "b", 9001, True)], timedelta(minutes=4)) == []


def test_a_service_being_moved_is_left_to_its_move() -> None:
    services = [FailoverCandidate("shop", "b", 9001, True)]
    assert due(services, moving=frozenset({"shop"})) == []


def test_a_port_taken_on_the_deciding_node_sends_it_to_the_next_live_node() -> None:
    services = [
        FailoverCandidate("shop", "b", 9001, True),
        FailoverCandidate("local", "c", 9001, False),
        FailoverCandidate("other", "b", 9002, True),
        FailoverCandidate("same-port", "b", 9002, True),
    ]
    # other takes 9002 on c first (name order), so same-port goes to a.
    assert due(services) == [("other", "c"), ("same-port", "a"), ("shop", "a")]


def test_with_no_live_node_free_for_its_port_it_waits() -> None:
    services = [
        FailoverCandidate("shop", "b", 9001, True),
        FailoverCandidate("x", "a", 9001, False),
        FailoverCandidate("y", "c", 9001, False),
    ]
    assert due(services) == []
