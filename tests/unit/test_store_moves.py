"""Moves and a node's loss in the store, on both backends: a move's record and its switch
in one transaction, the refusals, one unfinished move per service, and the news of a lost
node written once (whichever node looks) and cleared once when it renews."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pockestrator.clock import FakeClock
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.store import Conflict, NodeInfo, NotFound, Store
from tests.testbed.store_backends import StoreBackend

HOUR = timedelta(hours=1)


def spec(name: str, port: int) -> ServiceSpec:
    return parse_spec(
        {"project_name": name, "port": port, "pocketbase_version": "0.29.0", "node": "a"},
        "example.test",
    )


def node(name: str) -> NodeInfo:
    return NodeInfo(name, f"http://{name}.internal:8091", f"{name}.example.test", 8 << 30, 4)


def fleet(store_backend: StoreBackend) -> tuple[Store, Store]:
    if store_backend.name != "postgresql":
        pytest.skip("one host's store is one node: nowhere to move to")
    database = store_backend.open()
    on_a, on_b = Store(database, node="a"), Store(database, node="b")
    on_a.register_node(node("a"), HOUR)
    on_b.register_node(node("b"), HOUR)
    return on_a, on_b


def kinds(store: Store, service: str) -> list[str]:
    return [event.kind for event in reversed(store.list_events(service, limit=100))]


def test_a_move_is_recorded_then_switched_with_the_final_snapshot_as_the_seed(
    store_backend: StoreBackend,
) -> None:
    on_a, on_b = fleet(store_backend)
    on_a.create_service(spec("app", 9001))
    move = on_b.request_move("app", "b", from_backup=False, by="token:ops")
    assert (move.source, move.target, move.state, move.pending) == ("a", "b", "requested", True)
    staged = on_a.advance_move(move.id, "requested", "staged", snapshot="s1")
    assert staged is not None and staged.snapshot == "s1"
    assert on_a.advance_move(move.id, "requested", "staged") is None, "a step is recorded once"
    verified = on_b.advance_move(move.id, "staged", "verified")
    assert verified is not None
    on_a.update_status("app", state="active", health_ok=True)
    switched = on_a.switch_move(verified, "verified", "b", "s2", "switched")
    assert switched is not None and switched.final_snapshot == "s2"
    assert on_a.node_of("app") == "b"
    moved = on_b.get_service("app")
    assert moved is not None and moved.spec.node == "b", "the spec names its new node"
    seed = on_b.get_seed("app")
    assert seed is not None and seed.pending
    assert (seed.source.kind, seed.source.service, seed.source.snapshot) == (
        "snapshot",
        "app",
        "s2",
    )
    status = on_b.get_status("app")
    assert status is not None and status.state == "deploying" and status.health_ok is None
    assert on_b.local_service_names() == ["app"] and on_a.local_service_names() == []
    done = on_b.advance_move(move.id, "switched", "done")
    assert done is not None and not done.pending and on_b.current_move("app") is None


def test_a_move_is_refused_to_its_own_node_an_unknown_or_lost_node_a_taken_port_and_twice(
    store_backend: StoreBackend,
) -> None:
    on_a, on_b = fleet(store_backend)
    on_a.create_service(spec("app", 9001))
    with pytest.raises(Conflict) as same:
        on_a.request_move("app", "a", from_backup=False, by="t")
    assert same.value.issues[0].code == ErrorCode.ALREADY_ON_NODE
    with pytest.raises(NotFound):
        on_a.request_move("app", "zeta", from_backup=False, by="t")
    with pytest.raises(NotFound):
        on_a.request_move("nothing", "b", from_backup=False, by="t")
    taker = parse_spec(
        {"project_name": "taker", "port": 9001, "pocketbase_version": "0.29.0", "node": "b"},
        "example.test",
    )
    on_b.create_service(taker)
    with pytest.raises(Conflict) as port:
        on_a.request_move("app", "b", from_backup=False, by="t")
    assert (port.value.issues[0].field, port.value.issues[0].code) == (
        "port",
        ErrorCode.PORT_IN_USE,
    )
    on_b.delete_service("taker")
    on_b.renew_lease("b", timedelta(0))
    with pytest.raises(Conflict) as lost:
        on_a.request_move("app", "b", from_backup=False, by="t")
    assert (lost.value.issues[0].field, lost.value.issues[0].code) == ("to", ErrorCode.NODE_LOST)
    on_b.renew_lease("b", HOUR)
    on_a.request_move("app", "b", from_backup=False, by="t")
    with pytest.raises(Conflict) as twice:
        on_b.request_move("app", "b", from_backup=True, by="t")
    assert twice.value.issues[0].code == ErrorCode.MOVE_IN_PROGRESS
    assert [m.service for m in on_b.unfinished_moves()] == ["app"]


def test_a_failed_move_leaves_the_service_where_it_was_and_another_may_follow(
    store_backend: StoreBackend,
) -> None:
    on_a, on_b = fleet(store_backend)
    on_a.create_service(spec("app", 9001))
    move = on_a.request_move("app", "b", from_backup=False, by="t")
    failed = on_b.advance_move(move.id, "requested", "failed", error="no target")
    assert failed is not None and failed.error == "no target" and not failed.pending
    assert on_a.node_of("app") == "a" and on_a.get_seed("app") is None
    assert on_a.request_move("app", "b", from_backup=False, by="t").id != move.id


def test_a_lost_nodes_news_is_written_once_whoever_looks_and_cleared_when_it_renews(
    store_backend: StoreBackend,
) -> None:
    on_a, on_b = fleet(store_backend)
    on_a.create_service(spec("one", 9001))
    on_a.create_service(spec("two", 9002))
    on_a.renew_lease("a", timedelta(0))  # a's agent stopped renewing
    assert on_b.lost_nodes() == frozenset({"a"})
    assert on_b.note_lost_nodes("b") == {"a": ["one", "two"]}
    assert on_a.note_lost_nodes("a") == {} and on_b.note_lost_nodes("b") == {}, "once only"
    assert kinds(on_b, "one")[-2:] == ["node_lost", "alert_firing"]
    firing = on_b.list_events("two", limit=5)[0]
    assert firing.details["rule"] == "node_lost" and firing.details["noted_by"] == "b"
    on_a.renew_lease("a", HOUR)
    assert on_b.lost_nodes() == frozenset()
    assert on_a.note_return("a") == ["one", "two"]
    assert on_a.note_return("a") == [], "the return is told once"
    assert kinds(on_b, "one")[-2:] == ["node_returned", "alert_resolved"]


def test_one_hosts_store_has_no_lost_node_whatever_its_clock_says(
    store_backend: StoreBackend,
) -> None:
    if store_backend.name != "sqlite":
        pytest.skip("a fleet's nodes are judged by the server's clock")
    clock = FakeClock()
    store = Store(store_backend.open(), node="solo", clock=clock)
    store.register_node(node("solo"), HOUR)
    clock.advance(10 * 3600)
    assert store.lost_nodes() == frozenset()


def test_a_nodes_moves_are_its_unfinished_ones_and_those_finished_since_a_moment(
    store_backend: StoreBackend,
) -> None:
    on_a, on_b = fleet(store_backend)
    on_a.register_node(node("c"), HOUR)
    for name, port in (("done", 9001), ("open", 9002), ("other", 9003)):
        on_a.create_service(spec(name, port))
    finished = on_a.request_move("done", "b", from_backup=False, by="t")
    on_a.advance_move(finished.id, "requested", "failed", error="no target")
    unfinished = on_b.request_move("open", "b", from_backup=False, by="t")
    elsewhere = on_a.request_move("other", "c", from_backup=False, by="t")
    now = on_a.get_move(finished.id).updated_at  # type: ignore[union-attr]
    ids = [m.id for m in on_b.moves_of_node("b", now - HOUR)]
    assert ids == [finished.id, unfinished.id]
    assert [m.id for m in on_b.moves_of_node("b", now + HOUR)] == [unfinished.id]
    assert [m.id for m in on_a.moves_of_node("a", now + HOUR)] == [unfinished.id, elsewhere.id]
    assert [m.id for m in on_a.moves_of_node("c", now - HOUR)] == [elsewhere.id]


def test_a_targets_first_healthy_status_marks_its_switched_move_served_for_good(
    store_backend: StoreBackend,
) -> None:
    on_a, on_b = fleet(store_backend)
    on_a.create_service(spec("app", 9001))
    move = on_a.request_move("app", "b", from_backup=False, by="t")
    on_a.update_status("app", state="active", health_ok=True)  # the source, before: no mark
    on_a.advance_move(move.id, "requested", "staged", snapshot="s1")
    verified = on_b.advance_move(move.id, "staged", "verified")
    assert verified is not None
    switched = on_a.switch_move(verified, "verified", "b", "s2", "switched")
    assert switched is not None and switched.served_at is None
    on_a.update_status("app", state="active", health_ok=True)  # a late probe of the source
    assert on_b.get_move(move.id).served_at is None  # type: ignore[union-attr]
    on_b.update_status("app", state="active", health_ok=True)
    served = on_b.get_move(move.id)
    assert served is not None and served.served_at is not None and served.state == "switched"
    on_b.update_status("app", state="error", health_ok=False, last_error="settings")
    on_b.update_status("app", state="active", health_ok=True)
    again = on_b.get_move(move.id)
    assert again is not None and again.served_at == served.served_at, "sticky, set once"
